"""A tiny JSON API on the standard library only (no pip install at deploy time).

maestro-runtime detects it as `python app.py` and passes the port in $PORT.
"""

import json
import os
import platform
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()
NOTES: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server_version = "maestro-example-api/1.0"

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body, indent=2).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path in ("/", "/api"):
            self._send(200, {
                "service": os.environ.get("MAESTRO_SERVICE", "python-api"),
                "user": os.environ.get("USER"),
                "python": platform.python_version(),
                "uptime_s": round(time.time() - STARTED, 1),
                "endpoints": ["/health", "/api/notes (GET, POST)"],
            })
        elif self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/api/notes":
            self._send(200, {"notes": NOTES})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/api/notes":
            self._send(404, {"error": f"no route {self.path}"})
            return
        length = min(int(self.headers.get("Content-Length") or 0), 4096)
        NOTES.append(self.rfile.read(length).decode(errors="replace"))
        self._send(201, {"notes": NOTES})

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"python-api listening on :{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
