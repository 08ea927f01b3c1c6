"""The metrics endpoint under idle clients: real prometheus_client WSGI app, real HTTP over loopback.

Anyone who reaches MAESTRO_METRICS_ADDR (a service, when it is on loopback) could hold connections
open; prometheus_client's own server gave each a thread for ever, so a few hundred idle sockets
grew the controller past the container's pids limit and no process anywhere could fork.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from maestro_runtime.control import metrics


def _snapshot() -> dict:
    return {"version": "t", "services": [{"name": "web", "status": "RUNNING"}]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_idle_clients_cost_a_bounded_number_of_threads_and_are_dropped(monkeypatch, capfd):
    monkeypatch.setattr(metrics, "TIMEOUT", 1.0)
    port = _free_port()
    before = threading.active_count()
    server = metrics.serve(("127.0.0.1", port), _snapshot)
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        time.sleep(0.5)
        # the server's own thread, and at most MAX_CLIENTS served at once (was: one per socket, 200)
        assert threading.active_count() - before <= metrics.MAX_CLIENTS + 1, threading.active_count()
        deadline = time.monotonic() + 10
        while threading.active_count() - before > 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # the silent ones time out
        assert threading.active_count() - before <= 1
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'maestro_service_up{service="web"} 1.0' in text
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err  # a timed-out client is no traceback in the log
