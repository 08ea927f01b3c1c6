"""The XML-RPC client against sockets that are not (yet) a working supervisord."""

from __future__ import annotations

import socket
import threading

import pytest

from maestro_runtime.engine.supervisord import Supervisor


def _serve(path, answer: bytes | None) -> socket.socket:
    """A UNIX socket that reads one request per connection and answers ``answer`` (None: nothing)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if answer:
                    conn.sendall(answer)

    threading.Thread(target=loop, daemon=True).start()
    return server


def test_stale_socket_file_is_unavailable_every_time(tmp_path):
    """A socket file left by a killed supervisord: refused, and refused again (not CannotSendRequest)."""
    path = tmp_path / "supervisor.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    client = Supervisor(path, timeout=2)
    assert [client.available() for _ in range(3)] == [False, False, False]


@pytest.mark.parametrize("answer", [
    None,
    b"garbage\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n<?xml",
    b"HTTP/1.0 500 Oops\r\nContent-Length: 0\r\n\r\n",
])
def test_a_broken_answer_is_unavailable_and_the_next_call_starts_afresh(tmp_path, answer):
    path = tmp_path / "supervisor.sock"
    server = _serve(path, answer)
    try:
        client = Supervisor(path, timeout=2)
        assert [client.available() for _ in range(3)] == [False, False, False]
    finally:
        server.close()
