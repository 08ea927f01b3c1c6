"""No process outlives the runtime: its orphans come back to it and are ended with it.

A child may start its own children (git starts ``git remote-http``); when the child is
killed its children are reparented, by default to PID 1, and live on. As a *child
subreaper* (prctl PR_SET_CHILD_SUBREAPER, kept across exec) the runtime gets them
instead, so at its end it can find every process below it and end them.

Stdlib only: the small ``init`` process imports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans of our descendants become our children (Linux >= 3.4); False where refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, list[int]]:
    """Living processes by parent pid (zombies left out: they are only waiting to be reaped)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        # The name field may hold spaces and parentheses: the fields we need follow the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 2 or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(root: int | None = None) -> list[int]:
    """Every living process below ``root`` (default: us), parents before children."""
    tree = _parents()
    found: list[int] = []
    stack = [os.getpid() if root is None else root]
    while stack:
        for child in tree.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def reap() -> None:
    """Collect every child of ours that has exited, without waiting for the others."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_descendants(grace: float = 2.0) -> list[int]:
    """TERM every process below us (once each), KILL what is left after ``grace`` seconds;
    return the pids met."""
    met: list[int] = []
    deadline = time.monotonic() + grace
    while True:
        reap()
        pids = descendants()
        if not pids:
            return met
        late = time.monotonic() > deadline
        if time.monotonic() > deadline + 3.0:
            return met  # unkillable (uninterruptible sleep): we tried; never hang the stop
        for pid in pids:
            if late or pid not in met:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
            if pid not in met:
                met.append(pid)
        time.sleep(0.05)
