"""One summary line per sandboxed build instead of one line per egress connection; a refused
host named once however often the build asks for it. Real proxy, real HTTP over loopback."""

import logging
import socket
import threading
import urllib.error
import urllib.request

import pytest

from maestro_runtime.sandbox.proxy import EgressStats, ProxyThread, summary


def _upstream(replies: int) -> int:
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(replies):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            conn.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def test_connections_and_refusals_are_summarised_once_at_stop(caplog):
    port = _upstream(3)
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = ProxyThread(listener, lambda host, p: p == port, "build of web").start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(
        {"http": f"http://127.0.0.1:{listener.getsockname()[1]}"}))
    with caplog.at_level(logging.INFO, logger="maestro"):
        for _ in range(3):
            assert opener.open(f"http://127.0.0.1:{port}/", timeout=5).read() == b"ok"
        for _ in range(4):
            with pytest.raises(urllib.error.HTTPError, match="403"):
                opener.open(f"http://127.0.0.1:{port + 1}/", timeout=5)
        proxy.stop()
    lines = [r.getMessage() for r in caplog.records if "egress" in r.getMessage()]
    assert lines == [
        f"egress refused: host 127.0.0.1 port {port + 1} is not in the allowlist of build of web",
        f"egress: 3 connections to 1 host via proxy (127.0.0.1:{port} x3), 4 refused (127.0.0.1:{port + 1})",
    ]
    assert not proxy.thread.is_alive()


def test_summary_wording():
    assert summary(EgressStats()) is None  # a build that reached nothing says nothing
    stats = EgressStats()
    stats.connections.update({"a.test:443": 74, "b.test:443": 1})
    assert summary(stats) == "egress: 75 connections to 2 hosts via proxy (a.test:443 x74, b.test:443 x1), 0 refused"
    stats = EgressStats()
    stats.refused["c.test:443"] = 2
    stats.failed["d.test:443"] = 1
    assert summary(stats) == "egress: 0 connections to 0 hosts via proxy, 2 refused (c.test:443), 1 failed (d.test:443)"
