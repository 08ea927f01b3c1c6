"""Supervisor event listener that prints every service's output, line by line,
prefixed with a UTC timestamp and the service name:
``2026-01-02T03:04:05.678Z [web] GET / 200``, and also appends each line to
``<logs dir>/<service>.log`` (size-rotated), which ``maestro logs`` reads.

Supervisor has no per-line prefix option, and a prefixing pipe per service
would cost a process each; one listener for all services costs one. It is
written by hand because the only published listener for this
(supervisor-stdout) is unmaintained and Python-2 only. stdlib only (and log_format).

Supervisor's envelope gives ``len`` in *characters* of the UTF-8 text it sends,
not bytes: the protocol is read through a UTF-8 text reader, else the first
non-ASCII character (``▲``, ``✓``) desynchronises the stream and supervisord marks
the listener UNKNOWN, losing every service's output from then on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging.handlers
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from maestro_runtime.log_format import terminal_safe

MAX_PARTIAL = 64 * 1024
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")


def _open_parent_stream(fd: int, fallback: BinaryIO) -> BinaryIO:
    """supervisord's own stdout/stderr (the container's), so lines skip a second hop."""
    try:
        # Append: when that is a file, "wb" would truncate it and write over older lines.
        return open(f"/proc/{os.getppid()}/fd/{fd}", "ab", buffering=0)
    except OSError:
        return fallback


def parse_headers(line: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def split_payload(payload: str) -> tuple[dict[str, str], str]:
    head, _, data = payload.partition("\n")
    return parse_headers(head), data


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LinePrefixer:
    """Buffers partial lines per (service, channel) and returns whole lines."""

    def __init__(self) -> None:
        self.partial: dict[tuple[str, str], str] = {}

    def feed(self, name: str, channel: str, data: str) -> list[str]:
        key = (name, channel)
        buffered = self.partial.pop(key, "") + data
        *lines, rest = buffered.split("\n")
        if len(rest) > MAX_PARTIAL:
            lines.append(rest)
            rest = ""
        if rest:
            self.partial[key] = rest
        return lines


class _ServiceFile(logging.handlers.RotatingFileHandler):
    """A service's log file. A write that fails (a full state disk) is said once, in one line, and
    never as logging's traceback: the container's stream goes on regardless."""

    warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.warned:
            self.warned = True
            sys.stderr.write(f"[maestro-logs] cannot write {self.baseFilename}: {sys.exc_info()[1]}\n")


class ServiceLogs:
    """One size-rotated file per service (``RotatingFileHandler``: stdlib, already battle-tested)."""

    def __init__(self, folder: Path | None, max_bytes: int, backups: int):
        self.folder, self.max_bytes, self.backups = folder, max_bytes, max(1, backups)
        self.handlers: dict[str, _ServiceFile | None] = {}

    def _handler(self, name: str) -> _ServiceFile | None:
        if name not in self.handlers:
            handler = None
            if self.folder is not None and _NAME_RE.match(name):
                try:
                    self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                    handler = _ServiceFile(
                        self.folder / f"{name}.log", maxBytes=self.max_bytes, backupCount=self.backups,
                        encoding="utf-8")
                    handler.setFormatter(logging.Formatter("%(message)s"))
                    os.chmod(self.folder / f"{name}.log", 0o600)  # output may carry secrets
                except OSError:
                    handler = None
            self.handlers[name] = handler
        return self.handlers[name]

    def write(self, name: str, channel: str, stamp: str, lines: list[str]) -> None:
        handler = self._handler(name)
        if handler is None:
            return
        tag = "err" if channel == "stderr" else "out"
        for line in lines:
            record = logging.LogRecord(name, logging.INFO, "", 0, f"{stamp} {tag} {line}", None, None)
            with contextlib.suppress(Exception):  # a full disk must not stall supervisord's events
                handler.emit(record)


def serve(stdin: TextIO, protocol: TextIO, streams: dict[str, BinaryIO], files: ServiceLogs) -> None:
    prefixer = LinePrefixer()
    while True:
        protocol.write("READY\n")
        protocol.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        headers = parse_headers(header_line)
        payload = stdin.read(int(headers.get("len", "0")))
        if headers.get("eventname", "").startswith("PROCESS_LOG"):
            meta, data = split_payload(payload)
            channel = meta.get("channel", "stdout")
            name = meta.get("processname", "?")
            lines = prefixer.feed(name, channel, data)
            if lines:
                stamp = timestamp()
                # The stream shows control characters escaped (a \r would move back over the prefix and
                # forge another service's line); the service's own file keeps its bytes as they were.
                out = "".join(f"{stamp} [{name}] {terminal_safe(line)}\n" for line in lines).encode(
                    "utf-8", "replace")
                # A closed stdout must not stall supervisord's event queue.
                with contextlib.suppress(OSError):
                    streams.get(channel, streams["stdout"]).write(out)
                files.write(name, channel, stamp, lines)
        protocol.write("RESULT 2\nOK")
        protocol.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="maestro-logs")
    parser.add_argument("--dir", type=Path, default=None, help="one <service>.log per service here")
    parser.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--backups", type=int, default=3)
    args = parser.parse_args(argv)
    # newline="\n": the payload may hold a lone \r, which must not end a line nor be translated.
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline="\n")
    protocol = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
    streams = {
        "stdout": _open_parent_stream(1, sys.stderr.buffer),
        "stderr": _open_parent_stream(2, sys.stderr.buffer),
    }
    serve(stdin, protocol, streams, ServiceLogs(args.dir, args.max_bytes, args.backups))


if __name__ == "__main__":
    main()
