"""The egress proxy's connection handling, for real over loopback (no sandbox needed).

npm up to 9 opens one CONNECT tunnel per request, dozens at once: the proxy must resolve each
name once for all of them (the resolver below is the real one, slowed down like a container's
resolver that drops replies), must not keep a failed lookup, and a tunnel must carry a client's
keep-alive requests (npm 10+, pip) without a new connection each."""

import concurrent.futures
import http.client
import http.server
import socket
import threading
import time

import pytest

from maestro_runtime.sandbox.proxy import ProxyThread, Resolver

SLOW = 0.3


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self):
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class CountingResolver:
    """The system's getaddrinfo, counted and slowed down; ``fail_first`` fails the first call."""

    def __init__(self, fail_first: bool = False):
        self.calls = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, host, port, *rest):
        with self.lock:
            self.calls.append(host)
            fail = self.fail_first and len(self.calls) == 1
        time.sleep(SLOW)
        if fail:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        # "localhost" only: /etc/hosts answers, no query leaves the machine
        return socket.getaddrinfo(host, port, *rest)


def _proxy(resolve, allowed=lambda host, port: True, local_names=None):
    listener = socket.create_server(("127.0.0.1", 0))
    return (ProxyThread(listener, allowed, "test", Resolver(resolve), local_names=local_names).start(),
            listener.getsockname()[1])


def _through_tunnel(proxy_port: int, port: int, paths=("/",)) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.set_tunnel("localhost", port)
    try:
        bodies = []
        for path in paths:
            conn.request("GET", path)
            bodies.append(conn.getresponse().read().decode())
        return bodies
    finally:
        conn.close()


def test_parallel_tunnels_share_one_lookup(upstream):
    resolve = CountingResolver()
    proxy, proxy_port = _proxy(resolve)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        bodies = list(pool.map(lambda i: _through_tunnel(proxy_port, upstream, (f"/{i}",))[0], range(12)))
    proxy.stop()
    assert bodies == [f"hello /{i}" for i in range(12)]
    # all twelve asked while the first lookup was still running: they waited for it
    assert resolve.calls == ["localhost"], "one lookup for the twelve tunnels"
    assert sum(proxy.stats.connections.values()) == 12


def test_a_failed_lookup_is_not_kept(upstream):
    resolve = CountingResolver(fail_first=True)
    proxy, proxy_port = _proxy(resolve)
    with pytest.raises(OSError, match="502"):
        _through_tunnel(proxy_port, upstream)
    assert _through_tunnel(proxy_port, upstream) == ["hello /"]
    proxy.stop()
    assert resolve.calls == ["localhost", "localhost"]
    assert dict(proxy.stats.failed) == {f"localhost:{upstream}": 1}


def test_the_cache_expires():
    resolve = CountingResolver()
    resolver = Resolver(resolve, ttl=0.0)
    import asyncio

    async def twice():
        loop = asyncio.get_running_loop()
        await resolver.lookup(loop, "localhost", 80, 0, socket.SOCK_STREAM, 0, 0)
        await resolver.lookup(loop, "localhost", 80, 0, socket.SOCK_STREAM, 0, 0)

    asyncio.run(twice())
    assert resolve.calls == ["localhost", "localhost"]


def test_a_tunnel_carries_keep_alive_requests(upstream):
    proxy, proxy_port = _proxy(CountingResolver())
    assert _through_tunnel(proxy_port, upstream, ("/a", "/b", "/c")) == ["hello /a", "hello /b", "hello /c"]
    proxy.stop()
    assert dict(proxy.stats.connections) == {f"localhost:{upstream}": 1}


def test_refused_names_are_never_resolved(upstream):
    resolve = CountingResolver()
    proxy, proxy_port = _proxy(resolve, allowed=lambda host, port: False)
    with pytest.raises(OSError, match="403"):
        _through_tunnel(proxy_port, upstream)
    proxy.stop()
    assert resolve.calls == []


def test_expired_entries_are_dropped_past_the_limit():
    import asyncio

    from maestro_runtime.sandbox import proxy

    # a stand-in resolver: this checks the cache's bookkeeping, not name resolution
    resolver = Resolver(lambda host, *rest: [host], ttl=0.0)

    async def many():
        loop = asyncio.get_running_loop()
        for i in range(proxy.CACHE_LIMIT + 10):
            assert await resolver.lookup(loop, f"n{i}.example.test", 443, 0, 0, 0, 0) == [f"n{i}.example.test"]

    asyncio.run(many())
    assert len(resolver._entries) <= 11


def test_an_allowed_name_that_resolves_to_loopback_is_refused(upstream):
    """A stand-in resolver (no outside name may be resolved in tests) answers like a hostile or
    rebinding DNS for an allowlisted name: 127.0.0.1, where the container's own services listen."""
    calls = []

    def hostile_dns(host, port, *rest):
        calls.append(host)
        return socket.getaddrinfo("127.0.0.1", port, *rest)

    # /etc/hosts names stay the operator's say (tests/integration/test_egress_proxy_real.py maps one).
    proxy, proxy_port = _proxy(hostile_dns, allowed=lambda host, port: host == "pkgs.example.com",
                               local_names=frozenset({"allowed.maestro.test"}))
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.set_tunnel("pkgs.example.com", upstream)
    try:
        with pytest.raises(OSError, match="502"):
            conn.request("GET", "/")
    finally:
        conn.close()
    proxy.stop()
    assert calls == ["pkgs.example.com"] and dict(proxy.stats.failed) == {f"pkgs.example.com:{upstream}": 1}


def test_inward_addresses():
    from maestro_runtime.sandbox.netpolicy import hosts_file_names, inward, named_inward

    assert all(inward(a) for a in ("127.0.0.1", "127.8.9.1", "::1", "169.254.169.254", "fe80::1%eth0", "0.0.0.0",
                                   "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1"))
    assert not any(inward(a) for a in ("93.184.216.34", "10.0.0.5", "2606:2800:220:1::1"))
    assert named_inward("localhost") and named_inward("127.0.0.1") and named_inward("[::1]")
    assert not named_inward("registry.npmjs.org")
    local = hosts_file_names("127.0.0.1 localhost\n# 10.0.0.1 gone.test\n127.0.0.1 Mirror.Test. other.test # x\n")
    assert local == {"localhost", "mirror.test", "other.test"}
    assert named_inward("mirror.test", local) and not named_inward("gone.test", local)


def test_a_tunnel_to_port_80_is_refused_before_any_lookup():
    """Through a CONNECT tunnel to an allowed name's port 80, a raw request could name any Host
    that server (a CDN, a virtual host) routes to: plain HTTP must come as a checked request."""
    resolve = CountingResolver()
    proxy, proxy_port = _proxy(resolve, allowed=lambda host, port: host == "localhost")  # no outside DNS
    with socket.create_connection(("127.0.0.1", proxy_port), 10) as s:
        s.sendall(b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n")
        reply = s.recv(4096).split(b"\r\n")[0]
    proxy.stop()
    assert reply.startswith(b"HTTP/1.1 400") and resolve.calls == []
