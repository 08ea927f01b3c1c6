"""The launch plan (engine/spawn.py): what supervisord's child performs instead of the launch script.

The plan is read from the script the renderer writes, and performed for real in a forked child:
hostile values arrive byte for byte, exactly as through the script's shell, and the drop to the
service's user is the one setpriv makes (ids, no groups, no_new_privs), entering the folder as
that user. Anything that is not a whole plan in the launch folder leaves the script to run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from maestro_runtime.engine.launch import render_launch_script, service_environment
from maestro_runtime.engine.spawn import PLAN_PREFIX, ROOT_ENVIRONMENT, exec_plan, read_plan, script_of

from .test_render import HOSTILE, _record

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges: needs root")


def _perform(script: Path) -> int:
    """The plan of ``script``, performed in a forked child as supervisord's does; its exit code."""
    plan = read_plan(str(script))
    assert plan is not None
    pid = os.fork()
    if pid == 0:
        try:
            exec_plan(plan)
        finally:
            os._exit(127)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@root_only
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_reach_the_service_as_through_the_script(tmp_path, value):
    by_plan, by_script = tmp_path / "plan", tmp_path / "script"
    for out in (by_plan, by_script):
        record = _record(tmp_path, command=f'printf "%s|%s|%s" "$HOSTILE" "$PORT" "$HOME" > {out}',
                         env={"HOSTILE": value, "PORT": "1", "HOME": "/nope"})
        script = tmp_path / f"{out.name}.sh"
        script.write_text(render_launch_script(record))
        if out is by_plan:
            assert _perform(script) == 0
        else:
            subprocess.run(["/bin/sh", str(script)], check=True, timeout=10)
    assert by_plan.read_text() == by_script.read_text() == f"{value}|8080|{tmp_path}"


@root_only
def test_the_service_runs_as_its_user_without_groups_or_new_privileges_in_its_folder():
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="maestro-spawn-"))  # traversable by nobody
    try:
        folder.chmod(0o755)
        out = folder / "out"
        out.touch(mode=0o666)
        out.chmod(0o666)
        record = _record(folder, uid=65534, gid=65534, user="nobody", env={"A": "b"},
                         command=f"sh -c 'id -u; id -g; id -G; grep NoNewPrivs /proc/self/status; pwd; env' > {out}")
        script = folder / "launch.sh"
        script.write_text(render_launch_script(record))
        assert _perform(script) == 0
        uid, gid, groups, nnp, cwd, *env = out.read_text().splitlines()
        assert (uid, gid, groups) == ("65534", "65534", "65534")
        assert nnp.split() == ["NoNewPrivs:", "1"] and cwd == str(folder)
        assert dict(line.split("=", 1) for line in env if "=" in line and line.split("=", 1)[0] != "PWD") \
            == service_environment(record)
    finally:
        shutil.rmtree(folder)


def test_the_plan_is_the_scripts_launch(tmp_path):
    record = _record(tmp_path, command="python3 -m http.server $PORT", env={"A": "1"})
    wrapper = ["/usr/bin/bwrap", "--die-with-parent", "--"]
    script = tmp_path / "web.sh"
    script.write_text(render_launch_script(record, wrapper=wrapper, cgroup_procs=["/sys/x/cgroup.procs"]))
    plan = read_plan(str(script))
    assert plan["argv"] == ["python3", "-m", "http.server", "8080"] and plan["env"] == service_environment(record)
    assert plan["cgroup_procs"] == ["/sys/x/cgroup.procs"] and plan["directory"] == str(tmp_path)
    exec_line = script.read_text().splitlines()[-1]
    # The script's chain minus its first exec (env -i with the root environment, which the child sets itself).
    root_env = [f"{k}={v}" for k, v in ROOT_ENVIRONMENT.items()]
    assert shlex.split(exec_line) == ["exec", "/usr/bin/env", "-i", *root_env, *plan["root_argv"]]
    script.write_text(render_launch_script(record))
    assert read_plan(str(script))["root_argv"] is None  # no sandbox: the child drops privileges itself


@pytest.mark.parametrize("line", [
    None, "#!/bin/sh", PLAN_PREFIX + "{not json", PLAN_PREFIX + "[]",
    PLAN_PREFIX + json.dumps({"argv": [], "env": {}, "cgroup_procs": [], "directory": "/", "uid": 1, "gid": 1}),
    PLAN_PREFIX + json.dumps({"argv": ["x"], "env": {}, "cgroup_procs": [], "directory": "/", "uid": "1", "gid": 1}),
    PLAN_PREFIX + json.dumps({"argv": ["x"], "env": {}, "cgroup_procs": [], "directory": "/", "uid": 1, "gid": 1,
                              "root_argv": "bwrap"}),
])
def test_anything_but_a_whole_plan_leaves_the_script_to_run(tmp_path, line):
    script = tmp_path / "web.sh"
    script.write_text("#!/bin/sh\n" + (line + "\n" if line else "") + "exec true\n")
    assert read_plan(str(script)) is None
    assert read_plan(str(tmp_path / "missing.sh")) is None


def test_only_scripts_of_the_launch_folder_are_performed():
    assert script_of(["/bin/sh", "/run/maestro/launch/web.sh", "abc"], "/run/maestro/launch") \
        == "/run/maestro/launch/web.sh"
    for argv in (["/bin/sh", "/elsewhere/web.sh"], ["/bin/bash", "/run/maestro/launch/web.sh"],
                 ["/bin/sh", "/run/maestro/launch/web.conf"], ["/bin/sh"],
                 ["/bin/sh", "/run/maestro/launch/sub/web.sh"]):
        assert script_of(argv, "/run/maestro/launch") is None, argv


@root_only
def test_a_command_not_found_is_said_so(tmp_path):
    record = _record(tmp_path, command="no-such-program --flag")
    script = tmp_path / "web.sh"
    script.write_text(render_launch_script(record))
    plan = read_plan(str(script))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # as supervisord's child: the error is what it writes to the service's stderr
        try:
            exec_plan(plan)
        except OSError as exc:
            os.write(write, str(exc).encode())
        finally:
            os._exit(127)
    os.close(write)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 127
    with os.fdopen(read) as said:
        assert said.read() == "no-such-program: command not found"


@root_only
def test_a_cgroup_that_cannot_be_joined_is_said_and_the_service_still_starts(tmp_path):
    out = tmp_path / "out"
    record = _record(tmp_path, command=f"touch {out}")
    script = tmp_path / "web.sh"
    script.write_text(render_launch_script(record, cgroup_procs=[str(tmp_path / "gone" / "cgroup.procs")]))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(write, 2)
        try:
            exec_plan(read_plan(str(script)))
        finally:
            os._exit(127)
    os.close(write)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 and out.exists()
    gone = tmp_path / "gone" / "cgroup.procs"
    with os.fdopen(read) as said:
        assert said.read() == f"maestro: cannot join the cgroup {gone}: No such file or directory\n"


@root_only
def test_in_degraded_mode_the_service_is_root_without_any_capability(tmp_path):
    """uid 0 (an identity capability is missing): what capabilities the container has left
    never reach the service, by the plan and by the script alike."""
    for how in ("plan", "script"):
        out = tmp_path / f"{how}.out"
        show = 'id -u; grep -E "^(CapPrm|CapEff|CapAmb|NoNewPrivs)" /proc/self/status'
        record = _record(tmp_path, uid=0, gid=0, user="root", command=f"sh -c '{show}' > {out}")
        script = tmp_path / f"{how}.sh"
        script.write_text(render_launch_script(record))
        if how == "plan":
            assert _perform(script) == 0
        else:
            subprocess.run(["/bin/sh", str(script)], check=True, timeout=10)
        uid, *status = out.read_text().splitlines()
        assert uid == "0"
        assert dict(line.split(":") for line in status) == {
            "CapPrm": "\t0000000000000000", "CapEff": "\t0000000000000000", "CapAmb": "\t0000000000000000",
            "NoNewPrivs": "\t1"}, how


def test_root_keeps_no_capability_where_the_bounding_set_can_be_emptied():
    from maestro_runtime.engine.launch import root_caps_options

    with_setpcap = "CapEff:\t00000000a80425fb\n"  # Docker's default set
    without = "CapEff:\t00000000a80424fb\n"
    assert root_caps_options(with_setpcap) == ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]
    assert root_caps_options(without) == ["--inh-caps=-all", "--ambient-caps=-all"]
