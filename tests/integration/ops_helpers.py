"""Helpers for the operations tests: a loopback webhook receiver and a services file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Webhook:
    """Records every POST (headers, raw body) on 127.0.0.1."""

    def __init__(self, delay: float = 0.0):
        self.events: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if delay:
                    threading.Event().wait(delay)
                outer.events.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def named(self, event: str, service: str | None = None) -> list[tuple[dict[str, str], dict]]:
        out = []
        for headers, body in self.events:
            data = json.loads(body)
            if data["event"] == event and (service is None or data["service"] == service):
                out.append((headers, data))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def services_file(maestro, entries: list[dict]) -> Path:
    """Write a services file; each entry's ``app`` (Python source) becomes app.py in its own source folder."""
    services = []
    for entry in entries:
        entry = dict(entry)
        source = maestro.root / "sources" / entry["name"]
        source.mkdir(parents=True, exist_ok=True)
        (source / "app.py").write_text(entry.pop("app", "print('hi')\n"))
        (source / "index.html").write_text("ok")
        services.append({"repo": str(source), **entry})
    path = maestro.root / "services.yml"
    path.write_text(json.dumps({"services": services}))
    return path


HTTP_APP = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        bad = os.path.exists(os.environ['FLAG'])\n"
    "        self.send_response(503 if bad else 200); self.end_headers(); self.wfile.write(b'x')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)
