"""The allowlisting HTTP/CONNECT egress proxy of a sandbox (stdlib asyncio).

Hand-written on purpose: the maintained proxies (mitmproxy, proxy.py, tinyproxy,
squid) are either whole applications with their own config languages or pull in
large dependency trees, while what we need is ~150 lines: read one request
head, check the host against the allowlist, then splice bytes. It runs in the
``maestro-sandbox`` process (outside the sandbox, in the host's network) on a
listening socket that was created *inside* the sandbox's network namespace,
so it is reachable from that sandbox only, and nothing runs inside the
sandbox to bridge it.

Every connection of a sandbox is resolved through one per-proxy cache (:class:`Resolver`):
npm (up to 9, the image's) opens a new CONNECT tunnel per request, ~100 for one install,
and a getaddrinfo per tunnel, many at once, met the container resolver's dropped replies
(5 s retries) while npm outside the sandbox resolves each name once.

Pure: :func:`parse_head`, :func:`summary`. Shell: :class:`Resolver`, :func:`handle`, :class:`ProxyThread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from maestro_runtime.sandbox import netpolicy
from maestro_runtime.sandbox.netpolicy import inward, named_inward

log = logging.getLogger("maestro.egress")

HEAD_LIMIT = 64 * 1024
RELAY_CHUNK = 256 * 1024  # bytes per read when splicing (tarballs are large)
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
DNS_TTL = 60.0  # seconds a name's addresses are reused: one lookup per name per minute of a build
CACHE_LIMIT = 1024  # entries before the expired ones are dropped
HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305: an address family that hangs (IPv6 without a route) is not waited for
_HOP_BY_HOP = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    host: str
    port: int
    upstream_head: bytes | None  # what to send upstream first (None for CONNECT: a raw tunnel)


def _host_port(authority: str, default: int) -> tuple[str, int]:
    parsed = urlsplit(f"//{authority}")
    try:
        port = parsed.port or default
    except ValueError as exc:
        raise BadRequest(f"bad port in {authority[:80]!r}") from exc
    if not parsed.hostname:
        raise BadRequest(f"no host in {authority[:80]!r}")
    return parsed.hostname, port


def parse_head(head: bytes) -> Request:
    """One proxy request head (up to the blank line) -> where to go and what to send there."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError as exc:
        raise BadRequest("malformed request line") from exc
    if any("\n" in line or "\r" in line for line in (request_line, *header_lines)):
        # A bare LF ends a line for many servers, not here: "X: a\nHost: other" would reach the
        # upstream as a Host header the check below never saw.
        raise BadRequest("a bare CR or LF in the request head")
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version[:20]!r}")
    if method == "CONNECT":
        host, port = _host_port(target, 443)
        if port == 80:
            # A tunnel is opaque: plain HTTP inside it could name any Host on the allowed server
            # (virtual hosts, CDNs), the very thing the Host check below stops. HTTP clients send
            # http:// through a proxy as requests, not tunnels.
            raise BadRequest("no CONNECT to port 80: send http:// requests to the proxy as requests")
        return Request(method, host, port, None)
    url = urlsplit(target)
    if url.scheme != "http" or not url.netloc:
        raise BadRequest("a proxy request needs an absolute http:// URL (use CONNECT for https)")
    if url.username is not None or url.password is not None:
        raise BadRequest("credentials in a proxy request URL are refused")
    host, port = _host_port(url.netloc, 80)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = [h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    # The upstream server routes on Host: one naming another host than the checked target would
    # reach a host the allowlist never saw (same IP, virtual hosts, CDNs).
    named = [h.split(":", 1)[1].strip() for h in headers if h.split(":", 1)[0].strip().lower() == "host"]
    if len(named) > 1:
        raise BadRequest("more than one Host header")
    if named:
        # Names only: the connection goes to the target's port whatever the header says.
        if _host_port(named[0], port)[0] != host:
            raise BadRequest(f"Host header {named[0][:80]!r} does not match the request target {host}")
    else:
        headers.append(f"Host: {url.netloc}")
    # One request per upstream connection: the next request may name another host.
    upstream = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
    return Request(method, host, port, upstream.encode("latin-1"))


def _reply(status: str, body: str = "") -> bytes:
    data = body.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n").encode() + data


@dataclass
class EgressStats:
    """What one proxy did, for the build log's summary line (mutated by the proxy's loop only)."""

    connections: Counter = field(default_factory=Counter)  # host:port -> tunnels/requests opened
    refused: Counter = field(default_factory=Counter)  # host:port -> requests refused by the allowlist
    failed: Counter = field(default_factory=Counter)  # host:port -> allowed but unreachable (502)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(stats: EgressStats) -> str | None:
    """One line for a whole sandboxed command (its own log's), or None when it made no request."""
    if not (stats.connections or stats.refused or stats.failed):
        return None
    hosts = ", ".join(f"{k} x{n}" for k, n in sorted(stats.connections.items()))
    line = (f"egress: {_plural(sum(stats.connections.values()), 'connection')} to "
            f"{_plural(len(stats.connections), 'host')} via proxy{f' ({hosts})' if hosts else ''}, "
            f"{sum(stats.refused.values())} refused")
    if stats.refused:
        line += f" ({', '.join(sorted(stats.refused))})"
    if stats.failed:
        line += f", {sum(stats.failed.values())} failed ({', '.join(sorted(stats.failed))})"
    return line


class Resolver:
    """getaddrinfo through a cache shared by every connection of one proxy: one lookup per name
    (and port) per :data:`DNS_TTL`, and concurrent connections to a name wait for the same lookup.
    A failed lookup is not kept: the next connection asks again."""

    def __init__(self, resolve: Callable = socket.getaddrinfo, ttl: float = DNS_TTL):
        self.resolve = resolve
        self.ttl = ttl
        self._entries: dict[tuple, tuple[float, asyncio.Future]] = {}

    async def lookup(self, loop: asyncio.AbstractEventLoop, *key) -> list:
        entry = self._entries.get(key)
        if entry is None or not _usable(*entry):
            if len(self._entries) >= CACHE_LIMIT:  # a build may ask for endless names below a *.domain
                self._entries = {k: e for k, e in self._entries.items() if _usable(*e)}
            future = loop.run_in_executor(None, self.resolve, *key)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if no one waits
            entry = self._entries[key] = (time.monotonic() + self.ttl, future)
        # shield: one waiter's timeout must not cancel the lookup the others share
        return await asyncio.shield(entry[1])


def _usable(expires: float, future: asyncio.Future) -> bool:
    if expires < time.monotonic():
        return False
    return not (future.done() and (future.cancelled() or future.exception() is not None))


class _Loop(asyncio.SelectorEventLoop):
    """The proxy's own loop: asyncio's connect (happy eyeballs included) resolves through it.

    The proxy runs in the container's network, where loopback is the container's own (its
    services' ports) and link-local is the cloud's metadata service. A name on the allowlist
    whose DNS answers with such an address (a wildcard over names anyone can point anywhere,
    a rebinding domain) must not lead there: the addresses connected to are the ones checked."""

    def __init__(self, resolver: Resolver, local: frozenset[str]):
        super().__init__()
        self.resolver = resolver
        self.local = local

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        infos = await self.resolver.lookup(self, host, port, family, type, proto, flags)
        if named_inward(str(host), self.local):
            return infos
        kept = [info for info in infos if not inward(str(info[4][0]))]
        if not kept:
            raise OSError(f"{host} resolves to {', '.join(sorted({str(i[4][0]) for i in infos}))}: "
                          "an address inside the machine (loopback, link-local), refused")
        return kept


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 allowed: Callable[[str, int], bool], label: str, stats: EgressStats | None = None) -> None:
    stats = stats if stats is not None else EgressStats()
    upstream_writer = None
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            request = parse_head(head[:-4])
        except (BadRequest, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            writer.write(_reply("400 Bad Request", f"{exc}\n"))
            return
        endpoint = f"{request.host}:{request.port}"
        if not allowed(request.host, request.port):
            if not stats.refused[endpoint]:  # named once per host; the summary counts the rest
                log.warning("egress refused: host %s port %d is not in the allowlist of %s",
                            request.host, request.port, label)
            stats.refused[endpoint] += 1
            writer.write(_reply("403 Forbidden", f"maestro: {endpoint} is not in the allowlist "
                                                 "(an entry without :port allows 80 and 443)\n"))
            return
        try:
            up_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(request.host, request.port, limit=RELAY_CHUNK,
                                        happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            if not stats.failed[endpoint]:
                log.warning("egress to %s failed for %s: %s", endpoint, label, exc or "timed out")
            stats.failed[endpoint] += 1
            writer.write(_reply("502 Bad Gateway", f"maestro: {endpoint}: {exc}\n"))
            return
        # one line per connection only at debug: a build makes dozens; the summary comes at stop()
        log.debug("egress %s %s for %s", request.method, endpoint, label)
        stats.connections[endpoint] += 1
        if request.upstream_head is None:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream_writer.write(request.upstream_head)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(up_reader, writer))
    finally:
        for w in (writer, upstream_writer):
            if w is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    w.close()


class ProxyThread:
    """Serves the proxy on an already listening socket, in a daemon thread with its own loop."""

    def __init__(self, listener: socket.socket, allowed: Callable[[str, int], bool], label: str,
                 resolver: Resolver | None = None, local_names: frozenset[str] | None = None):
        self.listener = listener
        self.allowed = allowed
        self.label = label
        self.resolver = resolver or Resolver()
        self.loop = _Loop(self.resolver, netpolicy.local_names() if local_names is None else local_names)
        self.thread = threading.Thread(target=self._run, name="maestro-egress-proxy", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.stats = EgressStats()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def client(reader, writer):
            await handle(reader, writer, allowed=self.allowed, label=self.label, stats=self.stats)

        async def main():
            self._stop = asyncio.Event()
            server = await asyncio.start_server(client, sock=self.listener, limit=HEAD_LIMIT)
            self._ready.set()
            await self._stop.wait()
            server.close()
            # The command has ended: its connections go too, and are awaited, so none is left pending.
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()

    def start(self) -> ProxyThread:
        self.thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._stop is not None and self.thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)
        line = summary(self.stats)
        if line:
            log.info("%s", line)
