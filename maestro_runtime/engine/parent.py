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
import os
import signal
import sys
from pathlib import Path

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2)


def stop_all_now(socket_path: str) -> None:
    """Signal every program in parallel; supervisord's own shutdown then finds them stopping."""
    try:
        from maestro_runtime.engine.supervisord import Supervisor

        _dependents_first(socket_path)
        Supervisor(Path(socket_path)).call("supervisor.stopAllProcesses", False)
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

    def forward(signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            stop_all_now(socket_path)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
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
            sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()
