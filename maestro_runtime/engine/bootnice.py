"""CPU priorities while the container boots (stdlib only: the controller sets its own before its imports).

A first boot is CPU-bound: provisioning, supervisord's spawns and every service's own
start-up share the cores, and provisioning (one Python process) is the chain every service
waits on. So the entrypoint provisions at nice ``HURRY_NICE`` (set after supervisord is
started: supervisord and the services keep 0) and is back at 0 before it hands over. The
controller's start (imports, first ticks and probes of services still coming up) is useful
but not urgent: while the entrypoint's marker file exists it runs at nice ``BOOT_NICE``
and is back at 0 once the entrypoint has handed over. Linux keeps a nice value per thread: the lowering happens
before the controller starts a thread (they inherit it), the restore walks every thread.
Only done with CAP_SYS_NICE, without which the priority could never be restored.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

BOOT_NICE = 10
CAP_SYS_NICE = 23  # linux/capability.h


def boot_marker(runtime_dir: Path) -> Path:
    """Present from the entrypoint's start until its hand-over (entrypoint.py)."""
    return runtime_dir / "booting"


def can_restore(status_text: str) -> bool:
    """Whether /proc/self/status grants CAP_SYS_NICE (needed to go back to nice 0)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    return False


def lower_while_booting(marker: Path) -> bool:
    """Nice this process while ``marker`` exists; True when lowered (then :func:`restore` later)."""
    try:
        if not marker.exists() or not can_restore(Path("/proc/self/status").read_text()):
            return False
        os.setpriority(os.PRIO_PROCESS, 0, BOOT_NICE)
    except OSError:
        return False
    return True


HURRY_NICE = -5


def hurry() -> bool:
    """The entrypoint's provisioning ahead of the services starting up (nice -5, its threads and
    the useradd/git/build children they start inherit it); False without CAP_SYS_NICE."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, HURRY_NICE)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def normal_priority():
    """A build or release phase of a hurried provisioning thread runs at nice 0 (its children
    inherit the thread's): a long build must not slow the services already running."""
    before = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's, on Linux
    if before >= 0:
        yield
        return
    os.setpriority(os.PRIO_PROCESS, 0, 0)  # raising the value needs no capability
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, before)


def restore() -> None:
    """Every thread of this process back to nice 0."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError, ValueError):  # a thread that has just ended
            os.setpriority(os.PRIO_PROCESS, int(tid), 0)
