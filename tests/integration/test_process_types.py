"""Procfile process types (<service>-<type>) supervised like services, and a web service that ends
cleanly at once: real supervisord, real processes, a loopback webhook."""

from __future__ import annotations

import os
import signal
import time

from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import Webhook, services_file

TICKER = "import time\nwhile True:\n    print('tick', flush=True); time.sleep(0.5)\n"
FLAKY = "raise SystemExit(3)\n"


def test_process_types_restart_give_up_alert_and_follow_their_service(maestro):
    hook = Webhook()
    try:
        spec = services_file(maestro, [{"name": "shop", "max_restarts": 2, "backoff": {"initial": "200ms"}}])
        source = maestro.root / "sources" / "shop"
        (source / "worker.py").write_text(TICKER)
        (source / "flaky.py").write_text(FLAKY)
        (source / "Procfile").write_text("web: python3 -m http.server $PORT\nworker: python3 worker.py\n"
                                         "flaky: python3 flaky.py\n")
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url)
        first = maestro.wait_running(["shop", "shop-worker"])
        # A crashing process type backs off, gives up after max_restarts and says so once.
        fatal = wait_for(lambda: (s := maestro.services())["shop-flaky"]["status"] == "FATAL" and s, 30,
                         what="shop-flaky FATAL")
        flaky = fatal["shop-flaky"]
        assert flaky["restarts"] == 2 and flaky["last_exit"] == "exit 3", flaky
        assert "gave up after 2 restarts" in flaky["error"], flaky
        wait_for(lambda: hook.named("gave_up", "shop-flaky"), 10, what="the give-up event")
        time.sleep(0.5)
        assert len(hook.named("gave_up", "shop-flaky")) == 1 and not hook.named("gave_up", "shop")
        # A killed one is restarted by the controller, its signal recorded.
        os.kill(first["shop-worker"]["pid"], signal.SIGKILL)
        back = wait_for(lambda: (w := maestro.services()["shop-worker"])["status"] == "RUNNING"
                        and w["pid"] != first["shop-worker"]["pid"] and w, 20, what="shop-worker restarted")
        assert back["restarts"] == 1 and back["last_exit"] == "killed by SIGKILL", back
        assert maestro.services()["shop"]["pid"] == first["shop"]["pid"]  # its service untouched
        # maestro stop/start/restart of the service act on its process types too.
        assert "shop: stopped (with shop-flaky, shop-worker)" in maestro.run("maestro", "stop", "shop").stdout
        rows = maestro.services()
        for name in ("shop", "shop-worker"):
            assert rows[name]["status"] == "STOPPED" and rows[name]["operator_stopped"] is True, rows[name]
        time.sleep(2)  # the controller must not bring the worker back
        assert maestro.services()["shop-worker"]["status"] == "STOPPED"
        assert "shop: started" in maestro.run("maestro", "start", "shop").stdout
        started = maestro.wait_running(["shop", "shop-worker"])
        assert "shop: restarted" in maestro.run("maestro", "restart", "shop").stdout
        again = maestro.wait_running(["shop", "shop-worker"])
        assert again["shop-worker"]["pid"] != started["shop-worker"]["pid"]
        assert again["shop"]["pid"] != started["shop"]["pid"]
    finally:
        hook.close()


def test_a_web_service_that_exits_0_at_once_is_fatal_with_a_reason(maestro):
    """Default restart (always) and on-failure alike: no silent restarts, no EXITED that looks fine."""
    hook = Webhook()
    try:
        spec = services_file(maestro, [
            {"name": "steady", "cmd": "python3 -m http.server $PORT"},
            {"name": "daemonish", "cmd": "python3 app.py", "app": "print('started in the background')\n"},
            {"name": "oneshot", "cmd": "python3 app.py", "app": "print('done')\n", "restart": "on-failure"},
            {"name": "once", "cmd": "python3 app.py", "app": "print('done')\n", "restart": "never"},
        ])
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url)
        rows = wait_for(lambda: (s := maestro.services())["daemonish"]["status"] == "FATAL"
                        and s["oneshot"]["status"] == "FATAL" and s["once"]["status"] == "EXITED" and s, 30,
                        what="FATAL, FATAL and EXITED")
        for name in ("daemonish", "oneshot"):
            row = rows[name]
            assert row["restarts"] == 0 and row["last_exit"] == "exit 0", row
            assert row["error"].startswith("exited with status 0 right after it started: a service must keep "
                                           "running"), row
            wait_for(lambda n=name: hook.named("gave_up", n), 10, what=f"{name}'s give-up event")
        assert rows["once"]["error"] is None  # restart: never says it may end
        table = maestro.run("list-services").stdout
        assert "! daemonish: exited with status 0 right after it started" in table
        time.sleep(2)
        assert maestro.services()["daemonish"]["restarts"] == 0  # not restarted behind the user's back
        # the snapshot above may have caught it in STARTING (services now start as each is ready)
        wait_for(lambda: maestro.services()["steady"]["status"] == "RUNNING", 10, what="steady RUNNING")
        assert len(hook.named("gave_up", "daemonish")) == 1
    finally:
        hook.close()
