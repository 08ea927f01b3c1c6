"""Early start: the double-start race of the reverted early start (336b212), pinned.

Real supervisord, real useradd, real HTTP over loopback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from maestro_runtime.engine.supervisord import ProgramOptions, Supervisor, render_program, write_program
from maestro_runtime.entrypoint import prepare_runtime
from maestro_runtime.settings import Settings
from tests.integration.conftest import wait_for

# Like a service under bubblewrap: TERM ends the supervised process (the wrapper), while the server,
# in its own session, lets go of its port only a moment later. Each start leaves a file: its pid,
# or "in-use-<pid>" when the port was still held by an earlier copy.
LINGERING = r"""
import os, socket, sys, time
port, spawns = int(sys.argv[1]), sys.argv[2]
if os.fork():
    os.wait()
    sys.exit(0)
os.setsid()
sock = socket.socket()
try:
    sock.bind(("127.0.0.1", port))
except OSError:
    open(os.path.join(spawns, f"in-use-{os.getpid()}"), "x").close()
    sys.exit(1)
open(os.path.join(spawns, str(os.getpid())), "x").close()
sock.listen()
wrapper = os.getppid()
while os.getppid() == wrapper:
    time.sleep(0.05)
time.sleep(3)
"""


def spawn_folder(root: Path) -> Path:
    folder = root / "spawns"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o1777)  # every service user leaves its files here
    return folder


# ---------------------------------------------------------------- the race, pinned


def _supervisord_running_a_program_it_read_at_start_up(maestro):
    """supervisord started with one program file already there (written in the ~0.3-1 s between
    Popen and its reading of the include folder): supervisord starts that program itself. Then the
    file changes (a failed provisioning falling back to the previous version rewrites it)."""
    settings = Settings.from_env(maestro.env)
    prepare_runtime(settings)
    folder = spawn_folder(maestro.root)
    script = maestro.root / "lingering.py"
    script.write_text(LINGERING)
    launch = maestro.root / "launch.sh"
    port = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0])
    launch.write_text(f"exec {sys.executable} {script} {port} {folder}\n")

    def program(revision: str) -> None:
        write_program(settings.supervisor_conf_dir, "early",
                      render_program("early", launch, ProgramOptions(), revision=revision))

    program("1")
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-n", "-c",
                               str(settings.supervisord_conf)], stdout=subprocess.DEVNULL)
    supervisor = Supervisor(settings.supervisor_socket)
    wait_for(supervisor.available, 30, 0.05, what="supervisord to answer")
    first = wait_for(lambda: [p for p in folder.iterdir()], 20, 0.05, what="supervisord to start it")
    assert [p.name for p in first] == [p.name for p in folder.iterdir()]
    program("2")
    return settings, daemon, supervisor, folder


def _stop(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    daemon.wait(30)
    time.sleep(3.5)  # the lingering server goes too


def test_update_during_boot_runs_a_program_twice(maestro):
    """The mechanism behind the reverted early start (336b212): ``update()`` (reloadConfig, then
    stop + remove + add of each group it calls changed) while supervisord runs a program it started
    itself stops the wrapper, adds the group again and starts a second copy while the first still
    holds the port: the second dies with 'Address already in use'. This is what the racy design did."""
    _settings, daemon, supervisor, folder = _supervisord_running_a_program_it_read_at_start_up(maestro)
    try:
        _added, changed, _removed = supervisor.update()
        assert changed == ["early"]
        wait_for(lambda: any(p.name.startswith("in-use") for p in folder.iterdir()), 20, 0.05,
                 what="a second copy to meet the first one's port")
    finally:
        _stop(daemon)
