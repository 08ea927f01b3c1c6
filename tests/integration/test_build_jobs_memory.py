"""Builds at once follow the container's memory limit, read from a real cgroup (sandbox/cgroups.py).

A process is put in a real memory cgroup with a 1 GiB limit, as ``--memory 1g`` does to a
container, and loads the settings there: one build at a time (MAESTRO_BUILD_JOBS unset), the
setting when given. Two Node builds at once beside running services overflowed that container.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maestro_runtime.sandbox import cgroups
from maestro_runtime.settings.parts import default_build_jobs

pytestmark = pytest.mark.integration

PRINT_JOBS = "from maestro_runtime.settings import Settings; import os; print(Settings.from_env(os.environ).build_jobs)"


def _memory_group(name: str):
    layout = cgroups.detect()
    if layout.v2 is not None and "memory" in layout.v2_controllers:
        return layout.v2 / name, "memory.max"
    if "memory" in layout.v1:
        return layout.v1["memory"] / name, "memory.limit_in_bytes"
    pytest.skip(f"no writable memory cgroup here: {layout.notes}")


def test_one_build_at_a_time_in_a_one_gib_container():
    folder, limit_file = _memory_group(f"build-jobs-{os.getpid()}")
    folder.mkdir()
    try:
        (folder / limit_file).write_text(str(1 << 30))

        def enter() -> None:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

        env = {k: v for k, v in os.environ.items() if k != "MAESTRO_BUILD_JOBS"}
        run = [sys.executable, "-c", PRINT_JOBS]
        inside = subprocess.run(run, env=env, preexec_fn=enter, capture_output=True, text=True, check=True)
        assert inside.stdout.strip() == "1", inside.stderr
        given = subprocess.run(run, env={**env, "MAESTRO_BUILD_JOBS": "3"}, preexec_fn=enter, capture_output=True,
                               text=True, check=True)
        assert given.stdout.strip() == "3"
        outside = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
        assert outside.stdout.strip() == str(default_build_jobs(os.cpu_count() or 1, cgroups.memory_limit()))
    finally:
        folder.rmdir()
