"""One summary line per sandboxed build instead of one line per egress connection."""

import logging
import socket
import threading
import urllib.request

from maestro_runtime.sandbox.proxy import ProxyThread


def test_connections_are_summarised_once_at_stop(caplog):
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]

    def serve():
        for _ in range(3):
            conn, _ = upstream.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = ProxyThread(listener, lambda host, p: True, "build of web").start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(
        {"http": f"http://127.0.0.1:{listener.getsockname()[1]}"}))
    with caplog.at_level(logging.INFO, logger="maestro"):
        for _ in range(3):
            assert opener.open(f"http://127.0.0.1:{port}/", timeout=5).read() == b"ok"
        proxy.stop()
    lines = [r.getMessage() for r in caplog.records if "egress" in r.getMessage()]
    assert lines == [f"egress for build of web: 3 connection(s): 127.0.0.1:{port} x3"]
