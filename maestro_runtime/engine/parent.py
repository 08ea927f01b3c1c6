"""The parent of supervisord for the container's life (under tini, or PID 1 itself).

The entrypoint starts supervisord, provisions, then execs this module, which
inherits supervisord as its child.

Why not exec supervisord directly: on SIGTERM supervisord stops its groups one
after another, so N services that take a moment each can outlast Docker's 10 s
grace. Here SIGTERM first asks supervisord to stop *all* processes at once
(``stopAllProcesses``, without waiting), then tells supervisord to exit. It
also reaps any orphan it inherits and exits with supervisord's status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2)


LAST = "maestro-logs"  # stops last, so every service's shutdown lines still reach stdout
FIRST = "maestro-controller"  # stops first, so it restarts nothing while everything stops
RUNNING_STATES = (10, 20, 30)  # STARTING, RUNNING, BACKOFF (40: STOPPING)
LAST_WAIT = 12.0  # seconds; services are KILLed at MAESTRO_STOPWAITSECS (5) before this


def stop_all_now(socket_path: str) -> None:
    """Signal every program in parallel; supervisord's own shutdown then finds them stopping."""
    try:
        from maestro_runtime.engine.supervisord import Supervisor

        _dependents_first(socket_path)  # services that depend on others stop first, in waves
        supervisor = Supervisor(Path(socket_path))
        names = [f"{i['group']}:{i['name']}" for i in supervisor.call("supervisor.getAllProcessInfo")
                 if i["group"] != LAST and i["state"] in RUNNING_STATES]
        # stopProcess without waiting answers at once; stopProcessGroup is deferred to supervisord's
        # next one-second tick, so 30 of them in a row outlasted Docker's grace.
        for name in sorted(names, key=lambda n: not n.startswith(FIRST + ":")):
            try:
                supervisor.call("supervisor.stopProcess", name, False)
            except Exception:  # already stopped (NOT_RUNNING) or gone: the others still stop
                continue
        # The listener goes last, once the services are down (or killed at their stopwaitsecs):
        # left to supervisord's own shutdown it would wait for one loop tick per program group.
        deadline = time.monotonic() + LAST_WAIT
        while time.monotonic() < deadline and any(
                i["state"] in (*RUNNING_STATES, 40) for i in supervisor.call("supervisor.getAllProcessInfo")
                if i["group"] != LAST):
            time.sleep(0.05)
        supervisor.call("supervisor.stopProcess", f"{LAST}:{LAST}", False)
    except Exception as exc:  # the daemon may be starting or gone; its own shutdown still runs
        print(f"[maestro][warn] parallel stop skipped: {exc}", file=sys.stderr, flush=True)


def _dependents_first(socket_path: str) -> None:
    """Entries with dependencies (depends_on) stop in reverse dependency order, before the rest."""
    try:
        from maestro_runtime.settings import Settings
        from maestro_runtime.tasks.shutdown import stop_dependents_first

        stop_dependents_first(socket_path, Settings.from_env().records_dir)
    except Exception as exc:  # never stand in the way of the stop itself
        print(f"[maestro][warn] ordered stop skipped: {exc}", file=sys.stderr, flush=True)


def main() -> None:
    socket_path, pid = sys.argv[1], int(sys.argv[2])  # supervisord: our child, started before exec
    verdict = Path(sys.argv[3]) if len(sys.argv) > 3 else None

    def forward(signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            stop_all_now(socket_path)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    # The entrypoint blocked them before exec (a stop signal meanwhile is pending, not lost).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    while True:
        try:
            child, status = os.wait()
        except ChildProcessError:
            sys.exit(0)
        except InterruptedError:
            continue
        if child == pid:
            # Orphans that came to us (we are a child subreaper) must not outlive the container's
            # main process either: in a container PID 1 would get them, outside it init(1).
            from maestro_runtime.engine.reaper import end_descendants

            end_descendants(grace=2.0)
            code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            sys.exit(forced_status(verdict) or code)


def request_stop(verdict: Path, service_id: str, supervisor) -> None:
    """The controller's side of the verdict: an essential service gave up, so status 1 is left in
    ``verdict`` for :func:`forced_status` and this parent (supervisord's) is asked to stop everything."""
    log = logging.getLogger("maestro")  # the controller's logging, set up by its main()
    log.error("service %s is essential and gave up: stopping the container (status 1)", service_id)
    try:
        verdict.write_text(f"1 {service_id}\n")
        import psutil

        ours = psutil.Process(os.getppid()).ppid()  # the caller is supervisord's child; we are its parent
        os.kill(ours if ours > 1 else os.getppid(), signal.SIGTERM)
    except Exception as exc:  # the file, the process table or the signal: supervisord still stops
        log.error("cannot signal the runtime's parent (%s); shutting supervisord down", exc)
        with contextlib.suppress(Exception):
            supervisor.call("supervisor.shutdown")


def forced_status(path: Path | None) -> int:
    """The controller's verdict (an essential service gave up), 0 when none."""
    try:
        return int(path.read_text().split()[0]) if path else 0
    except (OSError, ValueError, IndexError):
        return 0


if __name__ == "__main__":
    main()
