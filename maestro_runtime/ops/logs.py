"""``maestro logs``: read a service's log files (written by the log listener) or its build log.

Files: ``<state>/logs/<id>.log`` and its rotated ``.1`` .. ``.N`` (oldest last), one line
each ``<ISO time> out|err <text>``; ``<state>/builds/<id>.build.log`` for the build.
"""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path


def log_files(folder: Path, service_id: str) -> list[Path]:
    """Oldest first: <id>.log.N ... <id>.log.1, <id>.log."""
    rotated = []
    for path in folder.glob(f"{service_id}.log.*"):
        suffix = path.name.rsplit(".", 1)[1]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    return [p for _, p in sorted(rotated, reverse=True)] + [folder / f"{service_id}.log"]


def since_stamp(seconds: float, now: float | None = None) -> str:
    moment = datetime.fromtimestamp((time.time() if now is None else now) - seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def display(line: str) -> str:
    """``<time> out <text>`` -> ``<time> <text>``; stderr lines keep a marker."""
    stamp, _, rest = line.partition(" ")
    tag, _, text = rest.partition(" ")
    if tag == "out":
        return f"{stamp} {text}"
    if tag == "err":
        return f"{stamp} [stderr] {text}"
    return line


# A traceback's last line, "Exception: ..." / "django.core.exceptions.ImproperlyConfigured: ...".
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit|Configured|Interrupt)(?:\[\w+\])?: \S")


def last_error(lines: Iterable[str], width: int = 200) -> str | None:
    """The line that most likely says why a service died: the last exception a traceback ended
    with (a server's own "Worker failed to boot" comes after it), else its last stderr line, else
    its last line; printable and clipped (it goes into one-line errors)."""
    last = last_err = last_exception = None
    for line in lines:
        _stamp, _, rest = line.partition(" ")
        tag, _, text = rest.partition(" ")
        if text.strip():
            last = text
            if tag == "err":
                last_err = text
                if _EXCEPTION.match(text.strip()):
                    last_exception = text
    found = last_exception or last_err or last
    if found is None:
        return None
    found = "".join(c if c.isprintable() else " " for c in found).strip()
    return found if len(found) <= width else found[: width - 1] + "…"


def clip_message(text: str, width: int = 500, lines: int = 40) -> str:
    """An error that may quote a build's output (one line of any length, any number of lines) at
    a size a record, list-services, an alert and a terminal can carry: its first line and its
    last ``lines``, each clipped to ``width`` characters."""
    parts = text.split("\n")
    if len(parts) > lines + 1:
        parts = [parts[0], f"[{len(parts) - lines - 1} lines left out]", *parts[-lines:]]
    return "\n".join(p if len(p) <= width else f"{p[: width - 40]}… [{len(p) - width + 40} characters left out]"
                     for p in parts)


# A service's last line that names a cause seen again and again in sample apps, and what fixes it.
KNOWN_CAUSES = (
    (re.compile(r"No module named '?pkg_resources'?"),
     lambda m: "pkg_resources came with setuptools until 81: add setuptools<81 to the project's requirements, "
               "or upgrade what imports it"),
    (re.compile(r"KeyError: '([A-Z][A-Z0-9_]*)'"), lambda m: _set_it(m.group(1))),
    # "DATABASE_URL environment variable not defined" (a DigitalOcean sample), "Set the X environment variable"
    (re.compile(r"\b([A-Z][A-Z0-9_]{2,})\b (?:environment variable|env var)s? (?:is )?(?:not (?:defined|set|found)|"
                r"missing|required)|Set the ([A-Z][A-Z0-9_]{2,}) environment variable"),
     lambda m: _set_it(m.group(1) or m.group(2))),
)


def _set_it(name: str) -> str:
    return (f"the app reads {name} from its environment: set it (YAML env:, SVC_<i>_ENV_{name}, "
            f"MAESTRO_ENV_<SVC>_{name}, or the project's .env)")


def known_cause(line: str) -> str | None:
    """What fixes the failure ``line`` (a service's last output) names, when it is a common one."""
    for pattern, hint in KNOWN_CAUSES:
        if match := pattern.search(line):
            return hint(match)
    return None


def tail_bytes(path: Path, size: int = 16384, *, keep_cut: bool = False) -> list[str]:
    """The last lines of one file, reading at most ``size`` bytes from its end. The first line
    read is usually cut: left out, unless ``keep_cut`` (a build error quotes it, clipped, so a
    step that printed one huge line shows that it did)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            end = handle.tell()
            handle.seek(max(0, end - size))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if end > size and not keep_cut else lines  # the first may be cut


def read_lines(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    yield line.rstrip("\n")
        except OSError:
            continue


def select(lines: Iterable[str], *, last: int | None, since: str | None) -> list[str]:
    """Lines at or after ``since`` (an ISO stamp, compared as text: same format), the last ``last``."""
    if since is not None:
        lines = (line for line in lines if line[:24] >= since)
    return list(collections.deque(lines, maxlen=last) if last is not None else lines)


LINE_MAX = 64 * 1024  # what follow() holds of a line not ended yet (the file's cap does not bound it)


def follow(path: Path, emit: Callable[[str], None], *, stop: Callable[[], bool] = lambda: False,
           interval: float = 0.2) -> None:
    """Print lines appended to ``path`` from its current end, across rotations (a new inode or a
    shorter file means the listener rotated: the old file is read to its end, then the new one
    from its start) and a build log's cuts (a new file too, sources/buildlog.py: it goes on after
    the last line printed, or from the marker when those were left out)."""
    from maestro_runtime.sources import buildlog

    cuts = path.name.endswith(".build.log")
    head = buildlog.LAYOUT.head
    handle = None
    inode = None
    partial = b""
    left: tuple[int, tuple[int, int]] | None = None  # a build log's: where the old file was left, its marker

    def at_head() -> tuple[int, int]:
        return buildlog.parse_at_head(os.pread(handle.fileno(), 256, head)) if cuts else (0, 0)

    def lines(chunk: bytes) -> None:
        nonlocal partial
        *done, partial = (partial + chunk).split(b"\n")
        if len(partial) > LINE_MAX:  # a line that never ends (a build's): printed in pieces, never kept whole
            cut = len(partial) - len(partial) % LINE_MAX
            done.append(partial[:cut])
            partial = partial[cut:]
        for line in done:  # "\r\n" and a lone "\r" end a line too, as where the file is read whole
            for part in line.removesuffix(b"\r").split(b"\r"):
                for at in range(0, max(1, len(part)), LINE_MAX):
                    emit(part[at:at + LINE_MAX].decode("utf-8", errors="replace"))

    while not stop():
        if handle is None:
            try:
                handle = path.open("rb")
                stat = os.fstat(handle.fileno())
                if inode is None:
                    handle.seek(0, 2)  # the first open: only what comes next
                elif left is not None:
                    now = at_head()
                    resume = buildlog.after_cut(left[0], left[1], now, head)
                    if resume is not None:
                        handle.seek(resume)
                        if resume < head + now[1]:
                            partial = b""  # the rest of that line was left out: the marker says so
                inode, left = stat.st_ino, None
            except OSError:
                handle = None
                time.sleep(interval)
                continue
        chunk = handle.read()
        if chunk:
            lines(chunk)
            continue
        try:
            stat = path.stat()
            rotated = stat.st_ino != inode or stat.st_size < handle.tell()
        except OSError:
            rotated = True
        if rotated:
            lines(handle.read())  # what the old file got after the last read, before it was replaced
            left = (handle.tell(), at_head()) if cuts else None
            handle.close()
            handle, inode = None, -1  # -1: known before, so the new file is read from its start
            continue
        time.sleep(interval)
    if handle is not None:
        handle.close()
