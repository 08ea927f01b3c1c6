"""The allowlisting HTTP/CONNECT egress proxy of a sandbox (stdlib asyncio).

Hand-written on purpose: the maintained proxies (mitmproxy, proxy.py, tinyproxy,
squid) are either whole applications with their own config languages or pull in
large dependency trees, while what we need is ~150 lines: read one request
head, check the host against the allowlist, then splice bytes. It runs in the
``maestro-sandbox`` process (outside the sandbox, in the host's network) on a
listening socket that was created *inside* the sandbox's network namespace,
so it is reachable from that sandbox only, and nothing runs inside the
sandbox to bridge it.

Pure: :func:`parse_head`. Shell: :func:`handle`, :class:`ProxyThread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("maestro.egress")

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
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
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version[:20]!r}")
    if method == "CONNECT":
        host, port = _host_port(target, 443)
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 allowed: Callable[[str, int], bool], label: str, counts: Counter | None = None) -> None:
    upstream_writer = None
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            request = parse_head(head[:-4])
        except (BadRequest, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            writer.write(_reply("400 Bad Request", f"{exc}\n"))
            return
        if not allowed(request.host, request.port):
            log.warning("egress refused: host %s port %d is not in the allowlist of %s",
                        request.host, request.port, label)
            writer.write(_reply("403 Forbidden", f"maestro: {request.host}:{request.port} is not in the allowlist "
                                                 "(an entry without :port allows 80 and 443)\n"))
            return
        try:
            up_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(request.host, request.port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            writer.write(_reply("502 Bad Gateway", f"maestro: {request.host}:{request.port}: {exc}\n"))
            return
        # one line per connection only at debug: a build makes dozens; the summary comes at stop()
        log.debug("egress %s %s:%d for %s", request.method, request.host, request.port, label)
        if counts is not None:
            counts[f"{request.host}:{request.port}"] += 1
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

    def __init__(self, listener: socket.socket, allowed: Callable[[str, int], bool], label: str):
        self.listener = listener
        self.allowed = allowed
        self.label = label
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="maestro-egress-proxy", daemon=True)
        self._ready = threading.Event()
        self.counts: Counter = Counter()  # host:port -> connections, for one summary line

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def client(reader, writer):
            await handle(reader, writer, allowed=self.allowed, label=self.label, counts=self.counts)

        async def main():
            server = await asyncio.start_server(client, sock=self.listener, limit=HEAD_LIMIT)
            self._ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(main())

    def start(self) -> ProxyThread:
        self.thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        def cancel_all():
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(cancel_all)
        self.thread.join(5)
        if self.counts:
            hosts = ", ".join(f"{k} x{n}" for k, n in sorted(self.counts.items()))
            log.info("egress for %s: %d connection(s): %s", self.label, sum(self.counts.values()), hosts)
