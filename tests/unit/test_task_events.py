"""Task events reach the alert webhook, signed: a real HTTP server on loopback receives them."""

from __future__ import annotations

import http.server
import json
import threading
import time

from maestro_runtime.control.alerts import SIGNATURE_HEADER, Alerts, verify
from maestro_runtime.tasks.runner import alert_hook


def test_task_failed_goes_to_the_webhook_signed():
    received: list[tuple[dict, bytes, dict]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body, json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        emit = alert_hook(Alerts(f"http://127.0.0.1:{server.server_port}/hook", "s3cret"))
        emit("task.failed", "nightly", {"exit_code": 3, "duration": 1.5, "reason": "exit 3"})
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        headers, body, event = received[0]
        assert verify("s3cret", body, headers[SIGNATURE_HEADER])
        assert event["event"] == "task_failed" and event["service"] == "nightly" and "exit 3" in json.dumps(event)
    finally:
        server.shutdown()


def test_task_events_are_logged_as_a_line_an_operator_reads(caplog):
    # It logged "migrate task.succeeded exit_code=0 duration=3.0961177349090576 reason=None".
    from maestro_runtime.tasks.runner import log_event

    with caplog.at_level("INFO", logger="maestro.tasks"):
        log_event("task.succeeded", "migrate", {"exit_code": 0, "duration": 3.0961177349090576, "reason": None})
        log_event("task.failed", "nightly", {"exit_code": 3, "duration": 1.25, "reason": None})
        log_event("task.cancelled", "slow", {"exit_code": None, "duration": 3.0, "reason": "stopped"})
        log_event("service.blocked", "web", {"reason": "dependency migrate failed (exit 1)"})
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "migrate: task.succeeded (exit 0, 3.1s)"),
        ("WARNING", "nightly: task.failed (exit 3, 1.2s)"),
        ("WARNING", "slow: task.cancelled (3.0s): stopped"),
        ("WARNING", "web: service.blocked: dependency migrate failed (exit 1)"),
    ]
