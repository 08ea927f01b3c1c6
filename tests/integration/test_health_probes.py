"""Health probes in the controller: unhealthy after retries, liveness restart, events, HEALTHCHECK."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import Webhook, services_file

HEALTHCHECK = Path(__file__).resolve().parents[2] / "healthcheck" / "healthcheck.py"
APP = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        with open(os.environ['SEEN'], 'a') as f: f.write(self.headers.get('User-Agent', '') + '\\n')\n"
    "        bad = os.path.exists(os.environ['FLAG'])\n"
    "        self.send_response(503 if bad else 200); self.end_headers(); self.wfile.write(b'x')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)
FAST = {"http": "/", "interval": "300ms", "timeout": "1s", "retries": 3, "start_period": "0s"}


def healthcheck(maestro) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", str(HEALTHCHECK)], capture_output=True, text=True,
                          env={**maestro.env, "HEALTHCHECK_START_PERIOD": "0"}, timeout=10)


def test_unhealthy_restart_events_and_healthcheck_reads_the_states(maestro):
    flags = maestro.root / "flags"
    flags.mkdir(mode=0o777)
    flags.chmod(0o777)
    hook = Webhook()
    try:
        spec = services_file(maestro, [
            {"name": name, "cmd": "python3 app.py", "app": APP, "health": FAST,
             "env": {"FLAG": str(flags / name), "SEEN": str(flags / f"{name}.seen")}, **extra}
            for name, extra in (("api", {"restart_on_unhealthy": True}), ("watch", {}))
        ])
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url)
        maestro.wait_running(["api", "watch"])
        wait_for(lambda: all(s["health"] == "healthy" for s in maestro.services().values()), 20, what="healthy")
        assert healthcheck(maestro).returncode == 0
        # The HEALTHCHECK did not probe: only the controller's probes reached the services.
        agents = set((flags / "api.seen").read_text().split()) | set((flags / "watch.seen").read_text().split())
        assert agents == {"maestro-probe"}, agents

        # watch turns bad: unhealthy after `retries` probes, not restarted; HEALTHCHECK says so.
        pid = maestro.services()["watch"]["pid"]
        (flags / "watch").touch()
        began = time.monotonic()
        row = wait_for(lambda: (r := maestro.services()["watch"])["health"] == "unhealthy" and r, 20, what="bad")
        assert time.monotonic() - began >= 0.6  # three failures 300 ms apart, not one
        assert row["pid"] == pid and row["health_detail"] == "HTTP 503"
        check = healthcheck(maestro)
        assert check.returncode == 1 and check.stdout.startswith("unhealthy: watch (HTTP 503"), check.stdout
        (flags / "watch").unlink()
        wait_for(lambda: maestro.services()["watch"]["health"] == "healthy", 20, what="watch recovered")
        assert healthcheck(maestro).returncode == 0

        # api turns bad: restarted (restart_on_unhealthy), then recovers.
        pid = maestro.services()["api"]["pid"]
        (flags / "api").touch()
        wait_for(lambda: maestro.services()["api"]["pid"] not in (None, pid), 30, what="api restarted")
        (flags / "api").unlink()
        wait_for(lambda: maestro.services()["api"]["health"] == "healthy", 30, what="api recovered")
        wait_for(lambda: hook.named("recovered", "api") and hook.named("recovered", "watch"), 10, what="events")
        time.sleep(1)
        for name in ("api", "watch"):
            assert len(hook.named("unhealthy", name)) == 1, hook.events
            assert len(hook.named("recovered", name)) == 1, hook.events
        assert maestro.services()["api"]["restarts"] >= 1 and maestro.services()["watch"]["restarts"] == 0
        assert "maestro-healthcheck" not in (flags / "api.seen").read_text()
    finally:
        hook.close()


def test_healthcheck_probes_itself_without_the_controller(maestro):
    maestro.preseed("solo")
    maestro.boot()
    pid = maestro.wait_running(["solo"])["solo"]["pid"]
    wait_for(lambda: maestro.services()["solo"]["health"] == "healthy", 30, what="probed")
    maestro.run("supervisorctl", "-c", str(maestro.root / "run" / "supervisord.conf"), "stop", "maestro-controller")
    status = maestro.root / "state" / "runstate" / "status.json"
    data = json.loads(status.read_text())
    data["updated"] = 0  # the heartbeat of a controller long gone
    status.write_text(json.dumps(data))
    # The saved state says healthy, but the service no longer answers: only a probe of its own can tell.
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    try:
        check = subprocess.run([sys.executable, "-I", "-S", str(HEALTHCHECK)], capture_output=True, text=True,
                               env={**maestro.env, "HEALTHCHECK_START_PERIOD": "0", "HEALTHCHECK_BUDGET": "2"})
        assert check.returncode == 1 and check.stdout.startswith("unhealthy: solo ("), check.stdout
    finally:
        subprocess.run(["kill", "-CONT", str(pid)], check=True)
    assert healthcheck(maestro).returncode == 0


def test_exec_probe_runs_as_the_service_user(maestro):
    flags = maestro.root / "flags"
    flags.mkdir()
    flags.chmod(0o777)
    probe = f"sh -c 'id -u > {flags}/uid; test ! -e {flags}/bad'"
    spec = services_file(maestro, [{"name": "db", "cmd": "python3 -m http.server $PORT",
                                    "health": {"exec": probe, "interval": "300ms", "retries": 2,
                                               "start_period": "0s"}}])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running(["db"])
    wait_for(lambda: maestro.services()["db"]["health"] == "healthy", 20, what="exec probe healthy")
    uid = int((flags / "uid").read_text())
    assert uid != 0 and uid == (maestro.root / "home" / "svc_db").stat().st_uid
    (flags / "bad").touch()
    row = wait_for(lambda: (r := maestro.services()["db"])["health"] == "unhealthy" and r, 20, what="unhealthy")
    assert row["health_detail"] == "exit 1"


def test_unhealthy_restarts_back_off_and_give_up(maestro):
    """A service that never becomes healthy is not restarted every few seconds forever: each
    restart waits its backoff, and max_restarts of them end FATAL with one gave_up event."""
    flags = maestro.root / "flags"
    flags.mkdir(mode=0o777)
    flags.chmod(0o777)
    (flags / "sick").touch()  # answers 503 from the start
    hook = Webhook()
    try:
        spec = services_file(maestro, [{
            "name": "sick", "cmd": "python3 app.py", "app": APP, "health": FAST, "restart_on_unhealthy": True,
            "max_restarts": 2, "backoff": {"initial": "2s", "factor": 2, "max": "10s"},
            "env": {"FLAG": str(flags / "sick"), "SEEN": str(flags / "sick.seen")}}])
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url)
        began = time.monotonic()
        row = wait_for(lambda: (r := maestro.services()["sick"])["status"] == "FATAL" and r, 60, what="FATAL")
        # Two restarts after 2 s and 4 s of backoff (+-10%), each after three failed probes.
        assert time.monotonic() - began >= 5.4
        assert row["restarts"] == 2 and "gave up after 2 restarts (unhealthy: HTTP 503" in row["error"], row
        wait_for(lambda: hook.named("gave_up", "sick"), 10, what="gave_up event")
        assert "stopped, restart in" in maestro.log()
        time.sleep(2)
        assert maestro.services()["sick"]["status"] == "FATAL" and maestro.services()["sick"]["pid"] in (None, 0)
    finally:
        hook.close()
