"""A service whose health endpoint answers with one endless line (no newline, 1 MiB): the
controller's HTTP probe judges it like any wrong answer. Before, asyncio's readline raised
ValueError past the probe, the probe task died (a traceback in the log), its next time was never
set, so it ran again every tick and the service never turned unhealthy.
Real boot, real supervisord, real probe over loopback."""

from __future__ import annotations

import pytest

from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import services_file

pytestmark = pytest.mark.integration

ENDLESS = (
    "import os, socket\n"
    "srv = socket.create_server(('0.0.0.0', int(os.environ['PORT'])))\n"
    "while True:\n"
    "    conn, _ = srv.accept()\n"
    "    try:\n"
    "        conn.recv(4096); conn.sendall(b'HTTP/1.0 200 OK' + b'x' * (1 << 20))\n"
    "    except OSError:\n"
    "        pass\n"
    "    conn.close()\n"
)
FAST = {"http": "/", "interval": "300ms", "timeout": "2s", "retries": 2, "start_period": "0s"}


def test_an_endless_status_line_makes_the_service_unhealthy_without_a_traceback(maestro):
    spec = services_file(maestro, [{"name": "endless", "cmd": "python3 app.py", "app": ENDLESS, "health": FAST}])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running(["endless"])
    row = wait_for(lambda: (r := maestro.services()["endless"])["health"] == "unhealthy" and r, 30,
                   what="endless unhealthy")
    assert "no HTTP answer" in row["health_detail"], row
    log = maestro.log()
    assert "Traceback" not in log and "exception was never retrieved" not in log, log[-3000:]
