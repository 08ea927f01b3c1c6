"""maestro start|stop|restart, kept across container restarts; maestro logs; rich status."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import http_get, wait_for
from tests.integration.ops_helpers import Webhook, services_file

BUSY = "import os, time\nprint('busy ▲ up', flush=True)\nwhile True:\n    pass\n"
TICKER = "import time\ni = 0\nwhile True:\n    print(f'tick {i} ✓', flush=True); i += 1; time.sleep(0.2)\n"


def test_stop_survives_a_container_restart_and_restart_touches_nothing_else(maestro):
    maestro.preseed("api")
    maestro.preseed("web")
    maestro.boot()
    before = maestro.wait_running(["api", "web"])
    out = maestro.run("maestro", "stop", "api").stdout
    assert "api: stopped" in out
    services = maestro.services()
    assert services["api"]["status"] == "STOPPED" and services["api"]["operator_stopped"] is True
    assert services["web"]["pid"] == before["web"]["pid"]
    time.sleep(2)  # the controller must not bring it back
    assert maestro.services()["api"]["status"] == "STOPPED"
    # Container restart: same state dir.
    assert maestro.stop() == 0
    maestro.boot()
    maestro.wait_running(["web"])
    time.sleep(1.5)
    assert maestro.services()["api"]["status"] == "STOPPED"
    assert "api: started" in maestro.run("maestro", "start", "api").stdout
    after = maestro.wait_running(["api", "web"])
    assert http_get(after["api"]["port"]).startswith("<h1>api")
    restarted = maestro.run("maestro", "restart", "api").stdout
    assert "api: restarted" in restarted
    final = maestro.wait_running(["api", "web"])
    assert final["api"]["pid"] != after["api"]["pid"] and final["web"]["pid"] == after["web"]["pid"]
    assert maestro.run("maestro", "stop", "nosuch", check=False).returncode == 1


def test_logs_follow_exited_and_failed_build(maestro):
    spec = services_file(maestro, [
        {"name": "ticker", "cmd": "python3 app.py", "app": TICKER},
        {"name": "once", "cmd": "python3 app.py", "app": "print('said once ✓')\n", "restart": "never"},
        {"name": "broken", "cmd": "python3 app.py"},
    ])
    # A requirements file that cannot install: the build fails and its log is kept.
    (maestro.root / "sources" / "broken" / "requirements.txt").write_text("no-such-package-maestro-test==0.0.0\n")
    hook = Webhook()
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec), PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0",
                 MAESTRO_ALERT_WEBHOOK=hook.url)
    wait_for(lambda: maestro.services()["broken"]["status"] == "FAILED", 120, what="broken build FAILED")
    try:
        event = wait_for(lambda: hook.named("build_failed", "broken"), 15, what="the build_failed event")
        assert "python build failed" in event[0][1]["detail"] and not hook.named("build_failed", "ticker")
    finally:
        hook.close()
    wait_for(lambda: maestro.services()["once"]["status"] == "EXITED", 30, what="once EXITED")
    # After the exit: the listener has written its line (events may trail the exit by a moment).
    wait_for(lambda: "said once ✓" in maestro.run("maestro", "logs", "once").stdout, 10, what="once's output")
    build = maestro.run("maestro", "logs", "broken", "--build")
    assert "no-such-package-maestro-test" in build.stdout
    follow = subprocess.Popen(["maestro", "logs", "ticker", "-f", "-n", "0"], env=maestro.env,
                              stdout=subprocess.PIPE, text=True)
    try:
        lines = [follow.stdout.readline() for _ in range(3)]
    finally:
        follow.kill()
        follow.wait()
    numbers = [int(line.split("tick ")[1].split()[0]) for line in lines]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3, lines
    recent = maestro.run("maestro", "logs", "ticker", "-n", "2", "--since", "1m").stdout.splitlines()
    assert len(recent) == 2 and all("tick" in line for line in recent)


def test_busy_service_shows_cpu_and_rss_in_status_and_metrics(maestro):
    with socket.socket() as probe:  # a free loopback port for the metrics endpoint
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = services_file(maestro, [{"name": "busy", "cmd": "python3 app.py", "app": BUSY},
                                   {"name": "idle", "cmd": "python3 -m http.server $PORT"}])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_METRICS_ADDR=f"127.0.0.1:{port}")
    maestro.wait_running(["busy", "idle"])

    seen = []

    def sampled():
        row = maestro.services()["busy"]
        seen.append(row["cpu_percent"])
        return row if row["cpu_percent"] is not None and row["cpu_percent"] > 50 else None

    row = wait_for(sampled, 60, what=f"a CPU sample over 50% (load {os.getloadavg()})")
    assert seen, seen
    assert row["memory_rss"] > 1_000_000 and row["schema"] == 2 and row["restarts"] == 0
    assert row["last_activity"] is not None
    table = maestro.run("list-services").stdout
    assert "busy" in table and "%" in table

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    listed = maestro.services()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    for name in ("busy", "idle"):
        key = (("service", name),)
        assert samples[("maestro_service_up", key)] == 1
        assert samples[("maestro_service_state", (("service", name), ("state", "RUNNING")))] == 1
        # The same sample (or the next one, 5 s later) as list-services shows.
        assert abs(samples[("maestro_service_memory_rss_bytes", key)] - listed[name]["memory_rss"]) \
            <= 0.2 * listed[name]["memory_rss"]
        assert abs(samples[("maestro_service_cpu_seconds_total", key)] - listed[name]["cpu_seconds"]) <= 6
        assert samples[("maestro_service_restarts_total", key)] == 0
    assert samples[("maestro_service_cpu_seconds_total", (("service", "busy"),))] > 1


def test_shutdown_lines_reach_the_log(maestro):
    """The log listener stops last: what a service prints while it stops is kept."""
    app = ("import signal, sys, time\n"
           "def bye(*_):\n    print('bye ✓ clean shutdown', flush=True); sys.exit(0)\n"
           "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\nwhile True: time.sleep(1)\n")
    spec = services_file(maestro, [{"name": f"w{i}", "cmd": "python3 app.py", "app": app} for i in range(3)])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running([f"w{i}" for i in range(3)])
    wait_for(lambda: maestro.log().count("] up") == 3, 10, what="three services up")
    assert maestro.stop() == 0
    for i in range(3):
        assert f"[w{i}] bye ✓ clean shutdown" in maestro.log()
        assert "bye ✓ clean shutdown" in maestro.run("maestro", "logs", f"w{i}").stdout
