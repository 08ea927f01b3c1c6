"""What a removed service left running: every process of its account, ended with it.

Unsandboxed (no bubblewrap PID namespace), a service's process can leave supervisord's process
group (``setsid``) and so outlive ``remove-service``'s stop. It keeps the service's uid. When
that account is deleted the next account made may get the same uid (useradd takes the system id
below the lowest in use, and ``userdel --prefix`` does not look for running processes at all):
the leftover would then run as the new service. So when the last service of an account the
runtime made is removed, every process running as that uid is killed first.

How: ``kill(-1, SIGKILL)`` sent *as that uid* (the system's python drops to it, then kills: procps 4's
``kill`` reads ``-1`` as an option). The kernel signals
every process that uid may signal in one pass under its task list lock, so no pid is read and
then signalled (a pid reused meanwhile is never hit) and a fork cannot slip between the reads.
Repeated until ``/proc`` shows no process of the uid, or the time is up.
"""

from __future__ import annotations

import logging
import subprocess
import time

import psutil

log = logging.getLogger("maestro")
# The system's interpreter, isolated, started as root: it drops to the uid itself, then kills, and
# never execs after the drop. (setpriv then exec failed with EAGAIN once the uid ran more processes
# than the caller's RLIMIT_NPROC, a container run with --ulimit nproc=N: a service that forked that
# many was out of reach of its own kill; raising the limit needs CAP_SYS_RESOURCE, which Docker drops.)
KILL = ("/usr/bin/python3", "-I", "-S", "-c",
        "import os, sys\nuid, gid = int(sys.argv[1]), int(sys.argv[2])\n"
        "os.setgroups([])\nos.setresgid(gid, gid, gid)\nos.setresuid(uid, uid, uid)\n"
        "try:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass")


def running_as(uid: int) -> list[int]:
    """Pids whose real, effective or saved uid is ``uid`` (a zombie has ended: not counted)."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        uids, status = proc.info["uids"], proc.info["status"]
        if uids is not None and uid in uids[:3] and status != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def end_all(uid: int, gid: int, *, wait: float = 5.0) -> list[int]:
    """SIGKILL every process of ``uid``; return the pids still running after ``wait`` seconds."""
    if uid <= 0:  # root (degraded mode shares it): never
        raise ValueError(f"refusing to end every process of uid {uid}")
    deadline = time.monotonic() + wait
    while True:
        left = running_as(uid)
        if not left or time.monotonic() >= deadline:
            return left
        # As the uid itself: kill(-1) then reaches only what that uid may signal (never root's).
        subprocess.run([*KILL, str(uid), str(gid)],
                       capture_output=True, timeout=10, check=False)
        time.sleep(0.05)


def sole_account(registry, records, user: str, service_id: str) -> bool:
    """The runtime made ``user``'s account and no service but ``service_id`` runs as it: then every
    process of that uid is the service's own to end (never a shared or operator-allowed account's)."""
    return registry.created(user) and all(r.user != user or r.id == service_id for r in records)


def end_squatter(settings, record, service_id: str) -> list[int]:
    """A service stopped for holding another's port (control/portowners.py) may hold it from a
    process that left its group (``setsid``): every process of its account ends too, when it is
    service ``service_id``'s alone (:func:`sole_account`; ``record`` may be one of its process
    types). Returns the pids still running."""
    from maestro_runtime.ops import accounts
    from maestro_runtime.state.records import RecordStore

    registry = accounts.AccountRegistry(settings.accounts_registry, prefix=settings.accounts_prefix)
    records = RecordStore(settings.records_dir).all()
    if record.uid <= 0 or not sole_account(registry, records, record.user, service_id):
        return []
    left = end_all(record.uid, record.gid)
    log.warning("user %s held another service's port: its processes ended%s", record.user,
                f" but for {' '.join(map(str, left))}" if left else "")
    return left
