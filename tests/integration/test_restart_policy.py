"""Restart policy with backoff, give-up, webhook and essential services, with real supervisord."""

from __future__ import annotations

import itertools
import json
import time

from maestro_runtime.control.alerts import SIGNATURE_HEADER, verify
from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import Webhook, services_file

SECRET = "s3cret-for-the-test"


def _starts(maestro, name: str) -> list[float]:
    """Every start of ``name`` as the service itself recorded it (one line per run)."""
    path = maestro.root / "home" / f"svc_{name}" / "starts"
    return [float(x) for x in path.read_text().split()] if path.exists() else []


CRASH = ("import os, sys, time\nopen(os.path.join(os.environ['HOME'], 'starts'), 'a').write(f'{time.time()}\\n')\n"
         "print('starting', flush=True)\nprint('RuntimeError: database unreachable', file=sys.stderr, flush=True)\n"
         "print('shutting down', flush=True)\nraise SystemExit(3)\n")


def test_crash_loop_backs_off_gives_up_once_and_essential_stops_the_container(maestro):
    hook = Webhook()
    try:
        spec = services_file(maestro, [
            {"name": "steady", "cmd": "python3 -m http.server $PORT"},
            {"name": "looper", "cmd": "python3 app.py", "app": CRASH, "essential": True,
             "backoff": {"initial": "1s", "factor": 2, "max": "5m"}, "max_restarts": 3},
        ])
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url, MAESTRO_ALERT_SECRET=SECRET)
        # The container stops by itself, non-zero, once the essential service gives up.
        code = maestro.proc.wait(60)
        assert code == 1, maestro.log()[-3000:]
        starts = _starts(maestro, "looper")
        assert len(starts) == 4, starts  # the first run and max_restarts = 3 restarts
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        for gap, delay in zip(gaps, (1.0, 2.0, 4.0), strict=True):
            # jitter is +-10%; the controller polls every 0.5 s and the start itself takes a moment
            assert delay * 0.9 <= gap <= delay * 1.1 + 1.2, gaps
        assert gaps[0] < gaps[1] < gaps[2], gaps
        wait_for(lambda: hook.named("gave_up"), 10, what="the give-up event")
        time.sleep(0.5)
        gave_up = hook.named("gave_up")
        assert len(gave_up) == 1, gave_up
        headers, data = gave_up[0]
        raw = next(body for h, body in hook.events if json.loads(body)["event"] == "gave_up")
        assert verify(SECRET, raw, headers[SIGNATURE_HEADER])
        assert not verify("another secret", raw, headers[SIGNATURE_HEADER])
        assert data["service"] == "looper" and data["essential"] is True and data["restarts"] == 3
        assert "gave up" in maestro.log()
    finally:
        hook.close()


def test_gave_up_service_is_fatal_and_others_keep_running(maestro):
    spec = services_file(maestro, [
        {"name": "steady", "cmd": "python3 -m http.server $PORT"},
        {"name": "looper", "cmd": "python3 app.py", "app": CRASH, "max_restarts": 2,
         "backoff": {"initial": "200ms"}},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    steady = maestro.wait_running(["steady"])["steady"]
    try:
        fatal = wait_for(lambda: (s := maestro.services())["looper"]["status"] == "FATAL" and s, 30, what="FATAL")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{maestro.services()['looper']}\n{maestro.log()[-3000:]}") from None
    looper = fatal["looper"]
    assert looper["restarts"] == 2 and looper["last_exit_code"] == 3 and looper["last_exit"] == "exit 3"
    # Why, in list-services itself: its last stderr line, not only "gave up after 2 restarts".
    assert "; last output: RuntimeError: database unreachable" in looper["error"], looper["error"]
    assert fatal["steady"]["pid"] == steady["pid"] and fatal["steady"]["restarts"] == 0
    assert maestro.proc.poll() is None  # not essential: the container stays up
    # The counts survive a container restart.
    assert maestro.stop() == 0
    maestro.boot()
    # The boot starts it afresh: two more restarts in a row before it gives up again, added to the two.
    try:
        again = wait_for(lambda: (s := maestro.services())["looper"]["status"] == "FATAL"
                         and s["looper"]["restarts"] == 4 and s, 30, what="FATAL again, counted across the boot")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{maestro.services()['looper']}\n{maestro.log()[-3000:]}") from None
    assert again["looper"]["last_exit_code"] == 3


def _controller_pid(maestro) -> int | None:
    import psutil

    for proc in psutil.process_iter(["cmdline", "environ"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if "-m maestro_runtime.control" in cmd and \
                (proc.info["environ"] or {}).get("MAESTRO_STATE_DIR") == str(maestro.root / "state"):
            return proc.pid
    return None


def test_a_killed_controller_comes_back_and_no_service_notices(maestro):
    import os
    import signal

    spec = services_file(maestro, [
        {"name": "steady", "cmd": "python3 -m http.server $PORT"},
        {"name": "looper", "cmd": "python3 app.py", "app": CRASH, "max_restarts": 0,
         "backoff": {"initial": "300ms", "max": "300ms"}},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    steady = maestro.wait_running(["steady"])["steady"]
    wait_for(lambda: maestro.services()["looper"]["restarts"] >= 2, 30, what="looper restarting")
    first = _controller_pid(maestro)
    assert first
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (pid := _controller_pid(maestro)) not in (None, first) and pid, 20,
                      what="the controller back")
    before = maestro.services()["looper"]["restarts"]
    wait_for(lambda: maestro.services()["looper"]["restarts"] >= before + 2, 30, what="supervision resumed")
    after = maestro.services()["steady"]
    assert after["pid"] == steady["pid"] and after["status"] == "RUNNING" and after["restarts"] == 0
    assert second != first


def test_a_run_killed_by_a_signal_is_recorded_by_name_across_a_container_restart(maestro):
    """supervisord reports exit status -1 for a killed run; maestro.processStates keeps the signal's name."""
    import os
    import signal

    spec = services_file(maestro, [
        {"name": "victim", "cmd": "python3 -m http.server $PORT", "backoff": {"initial": "30s"}},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    pid = maestro.wait_running(["victim"])["victim"]["pid"]
    os.kill(pid, signal.SIGKILL)  # a real process, killed for real: supervisord reaps it
    row = wait_for(lambda: (v := maestro.services()["victim"])["last_exit_signal"] and v, 20, what="the exit seen")
    assert row["last_exit_signal"] == "SIGKILL" and row["last_exit"] == "killed by SIGKILL"
    assert row["last_exit_code"] == -1 and row["status"] == "BACKOFF" and row["schema"] == 2
    table = maestro.run("list-services").stdout
    assert "killed by SIGKILL" in next(line for line in table.splitlines() if line.startswith("victim"))
    # Kept across a container restart (the boot starts it afresh; its last exit stays until the next one).
    assert maestro.stop() == 0
    maestro.boot()
    again = maestro.wait_running(["victim"])["victim"]
    assert again["last_exit_signal"] == "SIGKILL" and again["last_exit"] == "killed by SIGKILL", again


def test_an_exit_is_said_once_not_with_supervisords_bad_exit_code(maestro):
    # supervisord's own "Bad exit code 3" restated the exit status everywhere: the log and the alert
    # said "exit 3: Bad exit code 3", list-services "! looper: Bad exit code 3" while it backed off
    # and "...; last output: ... (Bad exit code 3)" once it gave up.
    hook = Webhook()
    try:
        spec = services_file(maestro, [
            {"name": "looper", "cmd": "python3 app.py", "app": CRASH,
             "backoff": {"initial": "2s", "factor": 1, "max": "2s"}, "max_restarts": 1},
        ])
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url)
        backing_off = wait_for(lambda: (s := maestro.services()["looper"])["status"] == "BACKOFF" and s, 20,
                               interval=0.1, what="looper BACKOFF")
        assert backing_off["error"] is None and backing_off["last_exit"] == "exit 3", backing_off
        fatal = wait_for(lambda: (s := maestro.services()["looper"])["status"] == "FATAL" and s, 20,
                         what="looper FATAL")
        assert fatal["error"].endswith("last output: RuntimeError: database unreachable"), fatal["error"]
        exited = wait_for(lambda: hook.named("exited"), 10, what="the exited event")
        assert exited[0][1]["detail"] == "exit 3"
        assert "Bad exit code" not in maestro.log() + maestro.run("list-services").stdout
    finally:
        hook.close()
