"""Supervisor event listener that prints every service's output, line by line,
prefixed with the service name: ``[web] GET / 200``.

Supervisor has no per-line prefix option, and a prefixing pipe per service
would cost a process each; one listener for all services costs one. It is
written by hand because the only published listener for this
(supervisor-stdout) is unmaintained and Python-2 only. stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import BinaryIO

MAX_PARTIAL = 64 * 1024


def _open_parent_stream(fd: int, fallback: BinaryIO) -> BinaryIO:
    """supervisord's own stdout/stderr (the container's), so lines skip a second hop."""
    try:
        # Append: when that is a file, "wb" would truncate it and write over older lines.
        return open(f"/proc/{os.getppid()}/fd/{fd}", "ab", buffering=0)
    except OSError:
        return fallback


def parse_headers(line: bytes) -> dict[str, str]:
    return dict(token.split(":", 1) for token in line.decode().split() if ":" in token)


def split_payload(payload: bytes) -> tuple[dict[str, str], bytes]:
    head, _, data = payload.partition(b"\n")
    return parse_headers(head), data


class LinePrefixer:
    """Buffers partial lines per (service, channel) and emits whole, prefixed lines."""

    def __init__(self) -> None:
        self.partial: dict[tuple[str, str], bytes] = {}

    def feed(self, name: str, channel: str, data: bytes) -> bytes:
        key = (name, channel)
        buffered = self.partial.pop(key, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_PARTIAL:
            lines.append(rest)
            rest = b""
        if rest:
            self.partial[key] = rest
        prefix = f"[{name}] ".encode()
        return b"".join(prefix + line + b"\n" for line in lines)


def main() -> None:
    stdin, protocol = sys.stdin.buffer, sys.stdout.buffer
    streams = {
        "stdout": _open_parent_stream(1, sys.stderr.buffer),
        "stderr": _open_parent_stream(2, sys.stderr.buffer),
    }
    prefixer = LinePrefixer()
    while True:
        protocol.write(b"READY\n")
        protocol.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        headers = parse_headers(header_line)
        payload = stdin.read(int(headers.get("len", "0")))
        if headers.get("eventname", "").startswith("PROCESS_LOG"):
            meta, data = split_payload(payload)
            channel = meta.get("channel", "stdout")
            out = prefixer.feed(meta.get("processname", "?"), channel, data)
            if out:
                # A closed stdout must not stall supervisord's event queue.
                with contextlib.suppress(OSError):
                    streams.get(channel, streams["stdout"]).write(out)
        protocol.write(b"RESULT 2\nOK")
        protocol.flush()


if __name__ == "__main__":
    main()
