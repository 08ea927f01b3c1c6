"""Early start: each service starts as soon as it is provisioned, exactly once; builds run in parallel.

Real supervisord, real useradd, real HTTP over loopback.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from maestro_runtime.engine.supervisord import ProgramOptions, Supervisor, render_program, write_program
from maestro_runtime.entrypoint import EarlyStart, hand_over, prepare_runtime
from maestro_runtime.settings import Settings
from tests.integration.conftest import http_get, wait_for

# Leaves a file "<service> <pid>" in a shared folder each time the service's process starts, then serves.
SPAWN_LOGGING = (
    "import http.server, os, sys\n"
    "open(os.path.join(sys.argv[1], os.environ['MAESTRO_SERVICE'] + ' ' + str(os.getpid())), 'x').close()\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler)"
    ".serve_forever()\n"
)

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


def spawns(folder: Path) -> collections.Counter:
    return collections.Counter(path.name.split()[0] for path in folder.iterdir())


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


def test_early_start_never_starts_a_program_supervisord_runs(maestro):
    """The same moment with the boot's own steps (EarlyStart after each service, then hand_over):
    the program supervisord started itself keeps running, once; nothing is stopped or re-added."""
    settings, daemon, supervisor, folder = _supervisord_running_a_program_it_read_at_start_up(maestro)
    try:
        pid = supervisor.processes()["early"]["pid"]
        early = EarlyStart(settings, daemon)
        early(["early"])
        hand_over(settings, daemon, early)
        time.sleep(2)
        info = supervisor.processes()["early"]
        assert (info["statename"], info["pid"]) == ("RUNNING", pid)
        assert len(list(folder.iterdir())) == 1, sorted(p.name for p in folder.iterdir())
    finally:
        _stop(daemon)


# ---------------------------------------------------------------- boots


def services_spec(maestro, entries: list[dict]) -> str:
    path = maestro.root / "services.yml"
    path.write_text(json.dumps({"services": entries}))
    return str(path)


def source(maestro, name: str, app: str | None = None) -> Path:
    folder = maestro.root / "sources" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(f"<h1>{name}</h1>")
    if app:
        (folder / "app.py").write_text(app)
    return folder


def test_many_services_each_started_exactly_once(maestro):
    n = int(os.environ.get("MAESTRO_TEST_EARLY_N", "40"))
    folder = spawn_folder(maestro.root)
    names = [f"s{i:03d}" for i in range(n)]
    spec = services_spec(maestro, [{"name": name, "repo": str(source(maestro, name, SPAWN_LOGGING)),
                                    "cmd": f"python3 app.py {folder}"} for name in names])
    maestro.boot(MAESTRO_SERVICES_FILE=spec)
    try:
        services = maestro.wait_running(names, timeout=180)
    except AssertionError:
        states = {k: (v["status"], v["error"]) for k, v in maestro.services().items() if v["status"] != "RUNNING"}
        raise AssertionError(f"not RUNNING: {states}\n{maestro.log()[-4000:]}") from None
    wait_for(lambda: len(spawns(folder)) == n, 60, what="every service to leave its start")
    time.sleep(3)  # a second start would come late (a restart after the first copy's end)
    doubled = {k: v for k, v in spawns(folder).items() if v != 1}
    assert not doubled, f"started more than once: {doubled}\n{maestro.log()[-4000:]}"
    log = maestro.log()
    for name in names:  # supervisord's own account: one spawn each
        assert log.count(f"spawned: '{name}' ") == 1, name
    assert "Address already in use" not in log
    assert http_get(services["s000"]["port"]) and http_get(services[names[-1]]["port"])


def _log_time(log: str, pattern: str) -> float:
    match = re.search(r"^(\S+Z) .*" + pattern, log, re.M)
    assert match, f"no line matching {pattern!r}:\n{log[-3000:]}"
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()


def test_a_fast_service_answers_while_a_slow_one_still_builds(maestro):
    marks = spawn_folder(maestro.root)
    slow_release = f"sleep 15 && touch {marks}/slow-released"
    spec = services_spec(maestro, [
        {"name": "slow", "repo": str(source(maestro, "slow")), "cmd": "python3 -m http.server $PORT",
         "release": slow_release},
        {"name": "fast", "repo": str(source(maestro, "fast")), "cmd": "python3 -m http.server $PORT"},
    ])
    maestro.boot(wait=False, MAESTRO_SERVICES_FILE=spec, MAESTRO_BUILD_JOBS="2")
    port = wait_for(lambda: _port_of(maestro, "fast"), 60, 0.05, what="fast's port in the ledger")
    wait_for(lambda: http_get(port, timeout=0.5), 60, 0.05, what="fast to answer")
    answered = time.time()
    assert not (marks / "slow-released").exists(), "fast answered only after slow's build"
    provisioned = _log_time(maestro.log(), r"\[maestro\]\[info\] service fast: user ")
    # its own provisioning + its start (a Python interpreter on a loaded machine) + 2 s
    assert answered - provisioned < 5.0, (answered - provisioned, maestro.log()[-3000:])
    # Meanwhile list-services shows slow as PROVISIONING (not missing), with its user and port.
    rows = {row["name"]: row for row in json.loads(maestro.list_json())}
    assert rows["slow"]["status"] == "PROVISIONING", rows
    assert rows["slow"]["user"] and rows["slow"]["port"], rows["slow"]
    assert rows["slow"]["step"] == f"release: /bin/sh -c '{slow_release}'", rows["slow"]  # what it is doing
    assert "PROVISIONING" in maestro.run("list-services").stdout
    maestro.wait_running(["slow", "fast"], timeout=90)
    assert not (Path(maestro.env["MAESTRO_RUNTIME_DIR"]) / "provisioning.json").exists()


def _port_of(maestro, name: str) -> int | None:
    ledger = Path(maestro.env["MAESTRO_STATE_DIR"]) / "ports.json"
    record = Path(maestro.env["MAESTRO_STATE_DIR"]) / "services" / f"{name}.json"
    if not (ledger.exists() and record.exists()):
        return None
    return json.loads(ledger.read_text()).get(name)


@pytest.mark.parametrize("jobs", [2])
def test_builds_run_in_parallel_bounded_by_build_jobs(maestro, jobs):
    """Six services whose release step lasts 2 s, MAESTRO_BUILD_JOBS=2: the steps' own timestamps
    show two at a time, never three."""
    marks = spawn_folder(maestro.root)
    entries = []
    for i in range(6):
        name = f"b{i}"
        step = (f"python3 -c \"import time; open('{marks}/{name}.start', 'w').write(repr(time.time())); "
                f"time.sleep(2); open('{marks}/{name}.end', 'w').write(repr(time.time()))\"")
        entries.append({"name": name, "repo": str(source(maestro, name)), "cmd": "python3 -m http.server $PORT",
                        "release": step})
    maestro.boot(MAESTRO_SERVICES_FILE=services_spec(maestro, entries), MAESTRO_BUILD_JOBS=str(jobs))
    services = maestro.wait_running([e["name"] for e in entries], timeout=120)
    spans = [(float((marks / f"{e['name']}.start").read_text()), float((marks / f"{e['name']}.end").read_text()))
             for e in entries]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == jobs, (peak, spans)
    # ports in input order, whatever order the builds ended in
    ports = [services[e["name"]]["port"] for e in entries]
    assert ports == sorted(ports) and len(set(ports)) == len(ports)


def test_sigterm_while_builds_run_in_parallel_ends_everything(maestro):
    """docker stop during boot with two builds running at once: the entrypoint exits soon, the
    third service never starts building, and no process is left (the fixture checks)."""
    marks = spawn_folder(maestro.root)
    entries = [{"name": f"w{i}", "repo": str(source(maestro, f"w{i}")), "cmd": "python3 -m http.server $PORT",
                "release": f"touch {marks}/w{i} && sleep 120"} for i in range(3)]
    maestro.boot(wait=False, MAESTRO_SERVICES_FILE=services_spec(maestro, entries), MAESTRO_BUILD_JOBS="2")
    wait_for(lambda: len(list(marks.iterdir())) == 2, 60, 0.05, what="two release steps running")
    started = time.monotonic()
    code = maestro.stop(timeout=30)
    assert code == 128 + 15, maestro.log()[-2000:]
    assert time.monotonic() - started < 15
    assert len(list(marks.iterdir())) == 2  # the third never began


# ---------------------------------------------------------------- hand-over


def test_hand_over_rereads_only_when_supervisord_and_the_files_differ(maestro):
    """The full reread at hand-over is skipped when supervisord runs exactly the program files there
    are; a file it lacks is added, and a group whose file is gone (its service failed after
    supervisord read it at start-up) is removed, as before."""
    from maestro_runtime.entrypoint import nothing_to_reread

    settings = Settings.from_env(maestro.env)
    prepare_runtime(settings)
    launch = maestro.root / "sleep.sh"
    launch.write_text("exec sleep 600\n")

    def program(name: str) -> None:
        write_program(settings.supervisor_conf_dir, name, render_program(name, launch, ProgramOptions(), revision="1"))

    program("kept")
    program("gone")
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-n", "-c",
                               str(settings.supervisord_conf)], stdout=subprocess.DEVNULL)
    supervisor = Supervisor(settings.supervisor_socket)
    try:
        wait_for(supervisor.available, 30, 0.05, what="supervisord to answer")
        assert nothing_to_reread(settings, supervisor)
        (settings.supervisor_conf_dir / "gone.conf").unlink()
        assert not nothing_to_reread(settings, supervisor)
        program("late")  # provisioned, but never handed to EarlyStart
        early = EarlyStart(settings, daemon)
        early(["kept"])
        hand_over(settings, daemon, early)
        groups = {info["group"] for info in supervisor.processes().values()}
        assert {"kept", "late"} <= groups and "gone" not in groups
        assert nothing_to_reread(settings, supervisor)
    finally:
        daemon.terminate()
        daemon.wait(30)
