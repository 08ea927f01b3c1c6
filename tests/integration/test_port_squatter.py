"""A service that binds another service's port while that one is down is stopped before the
owner starts again (control/portowners.py), with real supervisord, users and sockets."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import Webhook, services_file

# Serves its own $PORT like any service, and keeps trying to bind TARGET, the other service's
# port once the owner is up, answering "impostor" there once it has it: it waits for the owner to go down.
SQUATTER = (
    "import http.server, os, socket, threading, time\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'impostor')\n"
    "    def log_message(self, *a): pass\n"
    "mine = http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H)\n"
    "threading.Thread(target=mine.serve_forever, daemon=True).start()\n"
    "if os.environ.get('ESCAPE') and os.fork():  # the squat from a child out of the program's group\n"
    "    while True: time.sleep(1)\n"
    "if os.environ.get('ESCAPE'): os.setsid()\n"
    "while socket.socket().connect_ex(('127.0.0.1', int(os.environ['TARGET']))):\n"
    "    time.sleep(0.05)  # the owner is up: from now on, wait for it to go down\n"
    "while True:\n"
    "    try:\n"
    "        http.server.HTTPServer(('0.0.0.0', int(os.environ['TARGET'])), H).serve_forever()\n"
    "    except OSError:\n"
    "        time.sleep(0.02)\n"
)


def _answer(port: int) -> str | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    except OSError:
        return None


# In bubblewrap too: the services keep the container's network namespace, and the table's uids are theirs.
# Escaped: the listener runs in a setsid child that stopping the program leaves running (review16).
@pytest.mark.parametrize(("sandbox", "escape"), [("off", ""), ("require", ""), ("off", "1")])
def test_a_service_on_another_services_port_is_stopped_before_the_owner_restarts(maestro, sandbox, escape):
    hook = Webhook()
    try:
        port = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0]) + 50
        spec = services_file(maestro, [
            {"name": "owner", "cmd": "python3 -m http.server $PORT", "port": port,
             "backoff": {"initial": "1s"}},
            {"name": "squatter", "cmd": "python3 app.py", "app": SQUATTER,
             "env": {"TARGET": str(port), "ESCAPE": escape}},
        ])
        maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_ALERT_WEBHOOK=hook.url, MAESTRO_SANDBOX_MODE=sandbox)
        try:
            owner = maestro.wait_running(["owner", "squatter"])["owner"]
        except AssertionError:
            raise AssertionError(maestro.list_json() + maestro.log()[-4000:]) from None
        wait_for(lambda: _answer(port) == "ok", 20, what="the owner's page")
        os.kill(owner["pid"], signal.SIGKILL)  # a crash: the squatter takes the port at once
        # Seen answering, or already stopped for it: the guard's tick may beat this poll (sock_diag sees
        # the squatter's socket from its bind, before its listen).
        wait_for(lambda: _answer(port) == "impostor" or maestro.services()["squatter"]["status"] == "FATAL", 10,
                 what="the squatter on the owner's port")
        # The owner's restart (1 s backoff) finds the port taken, stops the squatter first, and starts.
        wait_for(lambda: _answer(port) == "ok", 20, what="the owner back on its port")
        try:
            rows = wait_for(lambda: (s := maestro.services())["owner"]["status"] == "RUNNING"
                            and s["squatter"]["status"] == "FATAL" and s, 20, what="owner RUNNING, squatter FATAL")
        except AssertionError:
            raise AssertionError(maestro.list_json()[-1500:] + maestro.log()[-3000:]) from None
        assert f"listened on port {port} of service owner" in rows["squatter"]["error"], rows["squatter"]
        assert rows["owner"]["pid"] != owner["pid"]
        wait_for(lambda: hook.named("port_taken", "squatter"), 10, what="the port_taken alert")
        assert f"service squatter: port taken: listened on port {port} of service owner" in maestro.log()
        # It stays down (restart: always notwithstanding): it would only take the port again.
        wait_for(lambda: maestro.services()["squatter"]["status"] == "FATAL", 3)
        assert _answer(port) == "ok"
    finally:
        hook.close()


def test_a_squatter_is_stopped_while_the_owner_stays_down(maestro):
    # An owner that is not restarted (restart: never, or given up, or stopped) left its port to the
    # squatter for good: it is now stopped at the tick that sees it, and the port stays free.
    port = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0]) + 50
    spec = services_file(maestro, [
        {"name": "owner", "cmd": "python3 -m http.server $PORT", "port": port, "restart": "never"},
        {"name": "squatter", "cmd": "python3 app.py", "app": SQUATTER, "env": {"TARGET": str(port)}},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    owner = maestro.wait_running(["owner", "squatter"])["owner"]
    wait_for(lambda: _answer(port) == "ok", 20, what="the owner's page")
    os.kill(owner["pid"], signal.SIGKILL)
    rows = wait_for(lambda: (s := maestro.services())["squatter"]["status"] == "FATAL" and s, 20,
                    what="the squatter stopped")
    assert rows["owner"]["status"] == "EXITED" and "of service owner" in rows["squatter"]["error"]
    assert _answer(port) is None  # nobody answers for the owner now


def test_a_squatter_that_cannot_be_ended_is_said_once(maestro):
    # Its account is shared with another service (the operator's `user:`): the port's owner can only be
    # told by uid, so both are stopped, but the escaped listener is left alone (ending every process of
    # a shared user is for remove-service). Each is said once, not at every tick.
    port = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0]) + 50
    spec = services_file(maestro, [
        {"name": "owner", "cmd": "python3 -m http.server $PORT", "port": port, "restart": "never"},
        {"name": "squatter", "cmd": "python3 app.py", "app": SQUATTER, "user": "svc_shared",
         "env": {"TARGET": str(port), "ESCAPE": "1"}},
        {"name": "buddy", "cmd": "python3 -m http.server $PORT", "user": "svc_shared"},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    owner = maestro.wait_running(["owner", "squatter", "buddy"])["owner"]
    wait_for(lambda: _answer(port) == "ok", 20, what="the owner's page")
    os.kill(owner["pid"], signal.SIGKILL)
    wait_for(lambda: maestro.services()["squatter"]["status"] == "FATAL", 20, what="the squatter stopped")
    time.sleep(4)  # 4-8 controller ticks with the port still held by the escaped listener
    log = maestro.log()
    assert log.count("service squatter: port taken:") == 1 and log.count("service buddy: port taken:") == 1, log
    assert maestro.services()["buddy"]["status"] == "FATAL"
    assert _answer(port) == "impostor"  # the escaped listener of the shared account: named, not ended


# Holds the owner's port without listening on it (review16b): a socket bound and never listened on
# is in no /proc/net/tcp line, yet the owner's bind() fails (EADDRINUSE) until it gives up.
BINDER = (
    "import http.server, os, socket, threading, time\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'binder')\n"
    "    def log_message(self, *a): pass\n"
    "mine = http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H)\n"
    "threading.Thread(target=mine.serve_forever, daemon=True).start()\n"
    "while socket.socket().connect_ex(('127.0.0.1', int(os.environ['TARGET']))):\n"
    "    time.sleep(0.05)\n"
    "held = socket.socket()\n"
    "while True:\n"
    "    try:\n"
    "        held.bind(('0.0.0.0', int(os.environ['TARGET'])))\n"
    "        break\n"
    "    except OSError:\n"
    "        time.sleep(0.02)\n"
    "print('holding', flush=True)\n"
    "while True: time.sleep(1)\n"
)


def _accepting(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_service_that_binds_another_services_port_without_listening_is_stopped_too(maestro):
    port = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0]) + 51
    spec = services_file(maestro, [
        {"name": "owner", "cmd": "python3 -m http.server $PORT", "port": port, "backoff": {"initial": "1s"}},
        {"name": "binder", "cmd": "python3 app.py", "app": BINDER, "env": {"TARGET": str(port)}},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_SANDBOX_MODE="off")
    owner = maestro.wait_running(["owner", "binder"])["owner"]
    # No HTTP request yet: the owner would close it first and leave a TIME_WAIT on its port, which
    # refuses the binder's bind (no SO_REUSEADDR) and not the owner's. A connection we close ourselves.
    wait_for(lambda: _accepting(port), 20, what="the owner listening")
    os.kill(owner["pid"], signal.SIGKILL)
    out = Path(maestro.env["MAESTRO_STATE_DIR"]) / "logs" / "binder.log"
    try:
        wait_for(lambda: "holding" in out.read_text(), 10, what="the binder holding the owner's port")
        wait_for(lambda: _answer(port) == "ok", 20, what="the owner back on its port")
        rows = wait_for(lambda: (s := maestro.services())["owner"]["status"] == "RUNNING"
                        and s["binder"]["status"] == "FATAL" and s, 20, what="owner RUNNING, binder FATAL")
    except AssertionError:
        raise AssertionError(maestro.list_json()[-1500:] + maestro.log()[-3000:]) from None
    assert f"listened on port {port} of service owner" in rows["binder"]["error"], rows["binder"]


# A task (kind: task) squats instead: tasks belong to the task runner, not to the controller's services,
# and the squatter search looked only among services, naming the task's uid "no service" (review16b).
TASK_SQUATTER = (
    "import http.server, socket, time, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'impostor')\n"
    "    def log_message(self, *a): pass\n"
    "while socket.socket().connect_ex(('127.0.0.1', int(os.environ['TARGET']))):\n"
    "    time.sleep(0.05)\n"
    "while True:\n"
    "    try:\n"
    "        http.server.HTTPServer(('0.0.0.0', int(os.environ['TARGET'])), H).serve_forever()\n"
    "    except OSError:\n"
    "        time.sleep(0.02)\n"
)


def test_a_task_on_a_services_port_is_ended_before_the_owner_restarts(maestro):
    port = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0]) + 52
    spec = services_file(maestro, [
        {"name": "owner", "cmd": "python3 -m http.server $PORT", "port": port, "backoff": {"initial": "1s"}},
        {"name": "grabber", "kind": "task", "cmd": "python3 app.py", "app": TASK_SQUATTER,
         "env": {"TARGET": str(port)}},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_SANDBOX_MODE="off")
    owner = maestro.wait_running(["owner"])["owner"]
    wait_for(lambda: maestro.services()["grabber"]["status"] == "running", 20, what="the task running")
    wait_for(lambda: _accepting(port), 20, what="the owner listening")
    os.kill(owner["pid"], signal.SIGKILL)
    try:
        # The task may be ended at the first tick after it binds, before a poll here sees it answer.
        wait_for(lambda: "held another service's port: its processes ended" in maestro.log(), 20,
                 what="the task's user ended")
        wait_for(lambda: _answer(port) == "ok", 20, what="the owner back on its port")
        wait_for(lambda: maestro.services()["owner"]["status"] == "RUNNING", 20, what="owner RUNNING")
    except AssertionError:
        raise AssertionError(maestro.list_json()[-2500:] + maestro.log()[-3000:]) from None
