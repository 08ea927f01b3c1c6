"""A build's log on disk, bounded: the start of the output and its end, one marker line between.

A build prints what it likes (a dependency's compiler warnings, a bundler's progress, a hostile
``yes``); its log is root's file, so without a bound a build fills the disk through it. The
build's output reaches root through a pipe (sources/buildrun.py) and only root writes the file,
through :class:`CappedLog`: the first :attr:`Layout.head` bytes stay as written; past them
the file grows to :attr:`Layout.cap`, then is cut back to its head, one marker line saying how
many bytes were left out, and its last :attr:`Layout.keep` bytes (from a line's start when one
is near), and grows again. So the log holds the first error and the last lines (what a failed
build's error quotes and ``maestro logs --build`` shows), never more than ``cap`` plus one read.

A cut writes a new file and renames it over the log: a reader sees the old file or the new one,
never half of one; ``maestro logs --build --follow`` reads the old one to its end, then goes on
in the new one after the last line it printed (:func:`after_cut`), or from the marker when
those were left out.

Pure: :class:`Layout`, :func:`marker`, :func:`placeholder`, :func:`parse_at_head`,
:func:`after_cut`, :func:`line_start`. Shell: :class:`CappedLog`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("maestro.builds")

MiB = 1024 * 1024
LINE_WINDOW = 4096  # a cut starts after the first newline this near its start (else mid-line)


@dataclass(frozen=True)
class Layout:
    cap: int = 8 * MiB  # the most the log holds (plus one read from the pipe)
    head: int = 1 * MiB  # the start of the log, kept as written
    keep: int = 2 * MiB  # what a cut keeps of the end

    def __post_init__(self) -> None:
        if not (self.head > 0 and self.keep > LINE_WINDOW and self.head + self.keep + LINE_WINDOW <= self.cap):
            raise ValueError(f"a build log's layout needs head + keep + {LINE_WINDOW} <= cap: {self}")


LAYOUT = Layout()


def placeholder(layout: Layout) -> bytes:
    """Root's line at offset ``head`` once the log is longer: what comes after may be cut."""
    return (f"\n[maestro: the build log keeps the first {layout.head} bytes above and its end; "
            f"what comes between is left out past {layout.cap} bytes]\n").encode()


def marker(dropped: int) -> bytes:
    """Root's line at offset ``head`` after a cut."""
    return f"\n[maestro: {dropped} bytes of this build log left out here (it keeps its start and its end)]\n".encode()


_AT_HEAD = re.compile(rb"\n\[maestro: (?:(\d{1,20}) bytes of this build log left out here|the build log keeps)[^\n]*\n")


def parse_at_head(data: bytes) -> tuple[int, int]:
    """(bytes left out so far, length of root's line) from what the log holds at offset ``head``:
    :func:`marker` or :func:`placeholder` (0 left out), else (0, 0). Only root writes there:
    the build's own output never reaches that offset without root's line before it."""
    found = _AT_HEAD.match(data)
    if found is None:
        return 0, 0
    return int(found.group(1) or 0), found.end()


def after_cut(pos: int, before: tuple[int, int], after: tuple[int, int], head: int) -> int | None:
    """Where a reader of the log that had read up to ``pos`` goes on in the file a cut made:
    the same bytes' offset now, or the marker line's when they were left out meanwhile; None
    when the log was not cut (a new build wrote it anew: read it from its start).
    ``before`` and ``after``: :func:`parse_at_head` when the reader last read, and now."""
    if not after[1] or after[0] <= before[0]:
        return None
    if pos <= head:  # the head is never moved
        return pos
    moved = pos - (after[0] - before[0]) - before[1] + after[1]
    return moved if moved >= head + after[1] else head + 1


def line_start(data: bytes, window: int = LINE_WINDOW) -> int:
    """Where the first whole line of ``data`` starts (after its first newline), when one starts
    within ``window`` bytes; else 0 (a line that long is kept cut)."""
    at = data.find(b"\n", 0, window)
    return at + 1 if at >= 0 else 0


class CappedLog:
    """Appends to a build log (root's, in root's 0700 folder), keeping it within ``layout``.

    A write that fails (a full disk) is logged once; what follows is dropped, never raised
    into the build, which goes on (its output still drained from the pipe)."""

    def __init__(self, path: Path, layout: Layout = LAYOUT):
        self.path = path
        self.layout = layout
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        # An earlier run_plan (the node build after the python one, a release) cut it already?
        self.dropped, self.root_line = parse_at_head(os.pread(self.fd, 256, layout.head))
        self.past_head = self.size > layout.head  # then whatever is at offset head is root's
        self.failed = False

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            self._write(data)
        except OSError as exc:
            self.failed = True
            log.warning("build log %s: cannot write (%s); the rest of this step's output is left out",
                        self.path, exc)

    def _write(self, data: bytes) -> None:
        head = self.layout.head
        if not self.past_head:
            first = data[: max(0, head - self.size)]
            self._append(first)
            data = data[len(first):]
            if not data:
                return
            line = placeholder(self.layout)
            self._append(line)
            self.past_head, self.root_line = True, len(line)
        self._append(data)
        if self.size > self.layout.cap:
            self._cut()

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]
            self.size += done

    def _cut(self) -> None:
        """A new file (head, marker, kept end) renamed over the log: a reader sees the old file
        or the new one, never a mix, and ``maestro logs --follow`` ends the old one before it
        goes on in the new one. (Cutting in place was about 30% faster on ext4, which writes a
        file renamed over another to disk at once, but a reader could see half a cut.)"""
        head, size = self.layout.head, self.size
        start = size - self.layout.keep
        start += line_start(os.pread(self.fd, LINE_WINDOW, start))
        dropped = self.dropped + (start - head - self.root_line)
        line = marker(dropped)
        tmp = self.path.with_name(f".{self.path.name}.cut")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # left by a cut that did not finish
        new = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _copy(self.fd, 0, new, 0, head)
            _copy_bytes(new, line, head)
            _copy(self.fd, start, new, head + len(line), size - start)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(new)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(self.fd)
        self.fd, self.size = new, os.lseek(new, 0, os.SEEK_END)
        self.dropped, self.root_line = dropped, len(line)


def _copy(src: int, offset: int, dst: int, to: int, count: int) -> None:
    while count > 0:
        data = os.pread(src, min(MiB, count), offset)
        if not data:
            return
        _copy_bytes(dst, data, to)
        offset, to, count = offset + len(data), to + len(data), count - len(data)


def _copy_bytes(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, at)
        view, at = view[written:], at + written
