"""``maestro start|stop|restart``: one service at a time, never a group-wide update.

Stop is supervisord's graceful stop (TERM, ``stopwaitsecs``, then KILL, to the whole
process group: ``stopasgroup``/``killasgroup`` in every program file). The operator's
stop is recorded first (runstate ``<id>.stopped``), so the controller does not restart
the service and the next boot does not start it; ``start`` clears it.

A service's programs are its own and one per Procfile process type (``<id>-worker``...):
each command acts on all of them together (their stops run at the same time), and the
one stop mark covers them all.
"""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass

from maestro_runtime.control.runstate import RunStateStore
from maestro_runtime.engine.supervisord import STOPPED_STATES, Supervisor

RUNNING_STATES = frozenset({10, 20})  # STARTING, RUNNING


@dataclass(frozen=True)
class Outcome:
    service: str
    ok: bool
    message: str


def _state(supervisor: Supervisor, program: str) -> int:
    return int(supervisor.call("supervisor.getProcessInfo", program)["state"])


def _wait(supervisor: Supervisor, programs: Sequence[str], wanted: frozenset[int], timeout: float,
          since: float | None = None) -> list[str]:
    """The programs not in a ``wanted`` state by the deadline; with ``since``, a run begun since then
    that already ended counts too (it started: what it did next is the controller's business)."""
    def there(program: str) -> bool:
        info = supervisor.call("supervisor.getProcessInfo", program)
        return int(info["state"]) in wanted or (since is not None and int(info.get("start") or 0) >= int(since))

    deadline = time.monotonic() + timeout
    pending = list(programs)
    while pending:
        pending = [p for p in pending if not there(p)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return pending


def _known(supervisor: Supervisor, programs: Sequence[str]) -> list[str]:
    """The process-type programs supervisord has (a Procfile type not applied yet is skipped)."""
    known = []
    for program in programs:
        try:
            _state(supervisor, program)
        except xmlrpc.client.Fault as fault:
            if "BAD_NAME" not in fault.faultString:
                raise
            continue
        known.append(program)
    return known


def _with(extras: Sequence[str]) -> str:
    return f" (with {', '.join(extras)})" if extras else ""


def stop(supervisor: Supervisor, runs: RunStateStore, service_id: str, timeout: float,
         extras: Sequence[str] = ()) -> Outcome:
    runs.set_stopped(service_id, True)
    programs = [service_id, *_known(supervisor, extras)]
    for program in programs:  # without waiting: every program's stop runs at the same time
        try:
            supervisor.call("supervisor.stopProcess", program, False)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                return Outcome(service_id, False, f"stop of {program} refused: {fault.faultString}")
    late = _wait(supervisor, programs, STOPPED_STATES, timeout)
    if late:
        return Outcome(service_id, False, f"{', '.join(late)} still stopping after {timeout:.0f}s")
    return Outcome(service_id, True, f"stopped{_with(programs[1:])} (stays stopped across restarts until "
                                     "maestro start)")


def start(supervisor: Supervisor, runs: RunStateStore, service_id: str, timeout: float,
          extras: Sequence[str] = ()) -> Outcome:
    runs.set_stopped(service_id, False)
    programs = [service_id, *_known(supervisor, extras)]
    started, since = [], time.time()
    for program in programs:
        try:
            supervisor.call("supervisor.startProcess", program, False)
            started.append(program)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                return Outcome(service_id, False, f"start of {program} refused: {fault.faultString}")
    if not started:
        return Outcome(service_id, True, "already running")
    late = _wait(supervisor, started, RUNNING_STATES, timeout, since)
    if late:
        return Outcome(service_id, False, f"{', '.join(late)} did not start (see maestro logs)")
    return Outcome(service_id, True, f"started{_with(programs[1:])}")


def restart(supervisor: Supervisor, runs: RunStateStore, service_id: str, timeout: float,
            extras: Sequence[str] = ()) -> Outcome:
    stopped = stop(supervisor, runs, service_id, timeout, extras)
    if not stopped.ok:
        runs.set_stopped(service_id, False)
        return stopped
    started = start(supervisor, runs, service_id, timeout, extras)
    return Outcome(service_id, started.ok, f"restarted{_with(_known(supervisor, extras))}"
                   if started.ok else started.message)
