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
