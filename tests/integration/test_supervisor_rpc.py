"""maestro.processStates in a real supervisord, and the fallback to getAllProcessInfo (list-services,
the controller and the HEALTHCHECK) when a supervisord runs without it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maestro_runtime.control.rpc import fetch, process_states
from maestro_runtime.engine.supervisord import Supervisor, SupervisorUnavailable

from .conftest import wait_for

pytestmark = pytest.mark.integration
HEALTHCHECK = Path(__file__).resolve().parents[2] / "healthcheck" / "healthcheck.py"
PLUGIN = ("[rpcinterface:maestro]\nsupervisor.rpcinterface_factory = maestro_runtime.control.rpc:make_interface\n"
          "programs = {programs}\n")


def _supervisord(root: Path, with_plugin: bool, programs: Path = Path("/nonexistent")) -> subprocess.Popen:
    control = root / "run" / "control"
    control.mkdir(parents=True)
    (root / "state").mkdir()
    conf = root / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={control}/supervisor.sock\nchmod=0700\n"
        f"[supervisord]\nnodaemon=true\nlogfile=/dev/null\npidfile={root}/s.pid\n"
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        + (PLUGIN.format(programs=programs) if with_plugin else "")
        + "[program:sleeper]\ncommand=sleep 600\nautorestart=false\nstartsecs=0\n")
    binary = shutil.which("supervisord") or str(Path(sys.executable).parent / "supervisord")
    return subprocess.Popen([binary, "-n", "-c", str(conf)], env={**os.environ}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("with_plugin", [True, False])
def test_process_states_with_and_without_the_plugin(tmp_path, with_plugin):
    proc = _supervisord(tmp_path, with_plugin)
    try:
        supervisor = Supervisor(tmp_path / "run" / "control" / "supervisor.sock", timeout=5)
        rows = wait_for(lambda: (p := _states(supervisor)) and p["sleeper"]["statename"] == "RUNNING" and p, 20,
                        what="sleeper RUNNING")
        assert (fetch(supervisor.socket, 5) is not None) is with_plugin
        full = supervisor.processes()["sleeper"]
        for key in ("statename", "pid", "start", "exitstatus", "spawnerr"):
            assert rows["sleeper"][key] == full[key]
        # The HEALTHCHECK asks for the compact table and falls back to getAllProcessInfo.
        env = {"MAESTRO_STATE_DIR": str(tmp_path / "state"), "MAESTRO_RUNTIME_DIR": str(tmp_path / "run"),
               "PATH": os.environ["PATH"]}
        check = subprocess.run([sys.executable, "-I", "-S", str(HEALTHCHECK)], env=env, capture_output=True,
                               text=True, timeout=10)
        assert check.returncode == 0 and check.stdout.startswith("healthy"), check.stdout
        os.kill(rows["sleeper"]["pid"], signal.SIGKILL)
        ended = wait_for(lambda: (p := _states(supervisor))["sleeper"]["statename"] == "EXITED" and p, 20,
                         what="sleeper EXITED")["sleeper"]
        assert ended["exitstatus"] == -1
        assert ended.get("signal") == ("SIGKILL" if with_plugin else None)
        check = subprocess.run([sys.executable, "-I", "-S", str(HEALTHCHECK)], env=env, capture_output=True,
                               text=True, timeout=10)
        assert check.returncode == 1 and "sleeper (EXITED)" in check.stdout, check.stdout
    finally:
        proc.terminate()
        proc.wait(20)


def _states(supervisor: Supervisor) -> dict:
    try:
        return process_states(supervisor)
    except SupervisorUnavailable:  # not up yet
        time.sleep(0.1)
        return {}


@pytest.mark.parametrize("with_plugin", [True, False])
def test_add_programs_in_one_request(tmp_path, with_plugin):
    """maestro.addProgram for several names in one multicall: added, already there, no file;
    a supervisord without our interface answers UNKNOWN_METHOD for each (the boot then adds
    them at hand-over)."""
    programs = tmp_path / "programs"
    programs.mkdir()
    for name in ("one", "two"):
        (programs / f"{name}.conf").write_text(f"[program:{name}]\ncommand=sleep 600\nautorestart=false\n")
    daemon = _supervisord(tmp_path, with_plugin, programs)
    try:
        supervisor = Supervisor(tmp_path / "run" / "control" / "supervisor.sock")
        wait_for(supervisor.available, 30, 0.05, what="supervisord to answer")
        results = supervisor.add_programs(["one", "missing", "one", "two"])
        if not with_plugin:
            assert all(isinstance(r, str) and "UNKNOWN_METHOD" in r for r in results), results
            return
        assert results == [True, None, False, True]
        wait_for(lambda: {i["name"]: i["statename"] for i in supervisor.processes().values()}
                 == {"sleeper": "RUNNING", "one": "RUNNING", "two": "RUNNING"}, 20, 0.1, what="both started")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
