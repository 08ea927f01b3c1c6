"""The allowlist proxy for real (bubblewrap, the sandbox's own network namespace, loopback servers):
CONNECT only to an allowed host on an allowed port, and a plain-HTTP request only to the host its
Host header names."""

import os
from pathlib import Path

import pytest

from .test_sandbox_real import _cli, _env, _policy, _server, users  # noqa: F401 (users is a fixture)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap"),
              pytest.mark.skipif(not os.environ.get("MAESTRO_TEST_ISOLATED"), reason="needs the private /etc")]

# Speaks to the proxy directly (no client library second-guessing): prints each status line.
ASK = r"""
import socket, sys
def ask(head):
    s = socket.create_connection(("127.0.0.1", 3128), 10)
    s.sendall(head.encode())
    print(s.recv(4096).split(b"\r\n")[0].decode(), flush=True)
    s.close()
port, other = sys.argv[1], sys.argv[2]
ask(f"CONNECT allowed.maestro.test:{port} HTTP/1.1\r\nHost: allowed.maestro.test:{port}\r\n\r\n")
ask(f"CONNECT allowed.maestro.test:{other} HTTP/1.1\r\nHost: allowed.maestro.test:{other}\r\n\r\n")
ask(f"GET http://allowed.maestro.test:{port}/ HTTP/1.1\r\nHost: allowed.maestro.test:{port}\r\n\r\n")
ask(f"GET http://allowed.maestro.test:{port}/ HTTP/1.1\r\nHost: other.maestro.test:{port}\r\n\r\n")
ask(f"GET http://other.maestro.test:{port}/ HTTP/1.1\r\nHost: allowed.maestro.test:{port}\r\n\r\n")
ask(f"CONNECT allowed.maestro.test:{other} HTTP/1.1\r\nHost: allowed.maestro.test:{other}\r\n\r\n")
"""


def test_proxy_checks_port_and_host_header(tmp_path, users):  # noqa: F811
    hosts = Path("/etc/hosts")
    saved = hosts.read_text()
    hosts.write_text(saved + "\n127.0.0.1 allowed.maestro.test other.maestro.test\n")
    try:
        allowed, elsewhere = _server(), _server()
        port, other = allowed.getsockname()[1], elsewhere.getsockname()[1]
        policy = _policy(tmp_path, f"ALLOW_HOST_NETWORK=1\nallowed.maestro.test:{port}\n")
        env = _env(tmp_path, MAESTRO_SANDBOX_NET_ALLOW_FILE=str(policy))
        proc = _cli(tmp_path, users[0], ["--net", "allow", "--", "python3", "-c", ASK, str(port), str(other)],
                    env=env)
        allowed.close()
        elsewhere.close()
    finally:
        hosts.write_text(saved)
    assert proc.returncode == 0, proc.stderr
    connect_ok, connect_other_port, get_ok, get_other_host, get_other_target, again = proc.stdout.splitlines()
    assert connect_ok == "HTTP/1.1 200 Connection established"
    assert connect_other_port.startswith("HTTP/1.1 403"), "CONNECT to an allowed name on another port"
    assert get_ok == "HTTP/1.1 200 OK"
    assert get_other_host.startswith("HTTP/1.1 400"), "a Host header naming another host was forwarded"
    assert get_other_target.startswith(("HTTP/1.1 400", "HTTP/1.1 403"))  # refused either way
    assert again.startswith("HTTP/1.1 403")
    # the build log: the refused host named once, then one summary line for the whole command
    egress = [line for line in proc.stderr.splitlines() if "egress" in line]
    assert egress == [
        f"maestro-sandbox: egress refused: host allowed.maestro.test port {other} is not in the allowlist "
        f"of {users[0].pw_name}",  # whose command it is: the prefix already says maestro-sandbox
        f"maestro-sandbox: egress: 2 connections to 1 host via proxy (allowed.maestro.test:{port} x2), "
        f"2 refused (allowed.maestro.test:{other})",
    ], proc.stderr
