"""Builds at once follow the container's memory limit, read from a real cgroup (sandbox/cgroups.py).

A process is put in a real memory cgroup with a 1 GiB limit, as ``--memory 1g`` does to a
container, and loads the settings there: one Node build at a time (MAESTRO_BUILD_JOBS unset),
the setting when given. Two Node builds at once beside running services overflowed that container.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maestro_runtime.sandbox import cgroups
from maestro_runtime.settings.parts import default_build_jobs

pytestmark = pytest.mark.integration

PRINT_JOBS = ("from maestro_runtime.settings import Settings; import os; s = Settings.from_env(os.environ); "
              "print(s.build_jobs, s.node_build_jobs)")
CORES = os.cpu_count() or 1


def _memory_group(name: str):
    layout = cgroups.detect()
    if layout.v2 is not None and "memory" in layout.v2_controllers:
        return layout.v2 / name, "memory.max"
    if "memory" in layout.v1:
        return layout.v1["memory"] / name, "memory.limit_in_bytes"
    pytest.skip(f"no writable memory cgroup here: {layout.notes}")


def test_one_node_build_at_a_time_in_a_one_gib_container():
    folder, limit_file = _memory_group(f"build-jobs-{os.getpid()}")
    folder.mkdir()
    try:
        (folder / limit_file).write_text(str(1 << 30))

        def enter() -> None:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

        env = {k: v for k, v in os.environ.items() if k != "MAESTRO_BUILD_JOBS"}
        run = [sys.executable, "-c", PRINT_JOBS]
        inside = subprocess.run(run, env=env, preexec_fn=enter, capture_output=True, text=True, check=True)
        assert inside.stdout.strip() == f"{CORES} 1", inside.stderr
        given = subprocess.run(run, env={**env, "MAESTRO_BUILD_JOBS": "3"}, preexec_fn=enter, capture_output=True,
                               text=True, check=True)
        assert given.stdout.strip() == "3 3"
        outside = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
        assert outside.stdout.strip().split() == [str(n) for n in default_build_jobs(CORES, cgroups.memory_limit())]
    finally:
        folder.rmdir()


# A build that takes 150 MiB (and says which oom_score_adj it runs at), then makes its server.
HOG = """\
import pathlib, time
adj = pathlib.Path("/proc/self/oom_score_adj").read_text().strip()
print("oom_score_adj", adj, flush=True)
hold = b"x" * (150 << 20)
time.sleep(2)
pathlib.Path("built.txt").write_text("built at adj " + adj)
"""


def test_a_build_killed_for_memory_beside_another_runs_again_alone(maestro):
    """Two builds of 150 MiB each at once in a 300 MiB container: the kernel kills one (builds go
    first: oom_score_adj 1000), which then builds again alone; both services answer."""
    from fixtures import paas
    from integration.conftest import http_get, wait_for

    folder, limit_file = _memory_group(f"build-oom-{os.getpid()}")
    folder.mkdir()
    try:
        (folder / limit_file).write_text(str(300 << 20))
        names = ("hog-a", "hog-b")
        for name in names:
            paas.write(maestro.root / "sources" / name, {
                "hog.py": HOG,
                "server.py": paas.PY_SERVER.format(name=name, extra='open("built.txt").read()'),
                "railway.toml": '[build]\nbuildCommand = "python3 hog.py"\n'
                                '[deploy]\nstartCommand = "python3 server.py"\n'})
        services = "; ".join(f"{maestro.root / 'sources' / name}|||{name}" for name in names)
        # The boot's provisioning runs in the small cgroup, and sees it as the container's: its
        # folder is where cgroups are mounted (Docker on cgroup v1), or MAESTRO_CGROUP_ROOT (v2).
        enter, boot = f'echo $$ > {folder / "cgroup.procs"}', "exec maestro-entrypoint --prepare-only"
        if limit_file == "memory.max":
            argv, extra = ["sh", "-c", f"{enter} && {boot}"], {"MAESTRO_CGROUP_ROOT": str(folder)}
        else:
            mount = f"mount --bind {folder} {folder.parent.parent}"  # over the memory hierarchy's mount
            argv, extra = ["unshare", "-m", "sh", "-c", f"{enter} && {mount} && {boot}"], {}
        prepared = maestro.run(*argv, check=False, SERVICES=services, MAESTRO_BUILD_JOBS="2", **extra)
        output = prepared.stdout + prepared.stderr
        assert prepared.returncode == 0, output
        assert "killed (exit" in output and "building again with no other build beside it" in output, output
        maestro.boot(SERVICES=services)
        ready = maestro.wait_running(list(names), timeout=60)
        for name in names:
            answer = wait_for(lambda n=name: http_get(ready[n]["port"]), 30, what=f"{name} answers")
            assert answer == f"{name} built at adj 1000\n"
    finally:
        maestro.stop()
        for group in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):  # the builds' own
            group.rmdir()
        folder.rmdir()
