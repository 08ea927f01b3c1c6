"""``maestro start|stop|restart``: one service at a time, never a group-wide update.

Stop is supervisord's graceful stop (TERM, ``stopwaitsecs``, then KILL, to the whole
process group: ``stopasgroup``/``killasgroup`` in every program file). The operator's
stop is recorded first (runstate ``<id>.stopped``), so the controller does not restart
the service and the next boot does not start it; ``start`` clears it.
"""

from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import dataclass

from maestro_runtime.control.runstate import RunStateStore
from maestro_runtime.engine.supervisord import STOPPED_STATES, Supervisor

RUNNING_STATES = frozenset({10, 20})  # STARTING, RUNNING


@dataclass(frozen=True)
class Outcome:
    service: str
    ok: bool
    message: str


def _state(supervisor: Supervisor, service_id: str) -> int:
    return int(supervisor.call("supervisor.getProcessInfo", service_id)["state"])


def _wait(supervisor: Supervisor, service_id: str, wanted: frozenset[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(supervisor, service_id) in wanted:
            return True
        time.sleep(0.05)
    return False


def stop(supervisor: Supervisor, runs: RunStateStore, service_id: str, timeout: float) -> Outcome:
    runs.set_stopped(service_id, True)
    try:
        supervisor.call("supervisor.stopProcess", service_id, False)
    except xmlrpc.client.Fault as fault:
        if "NOT_RUNNING" not in fault.faultString:
            return Outcome(service_id, False, f"stop refused: {fault.faultString}")
    if not _wait(supervisor, service_id, STOPPED_STATES, timeout):
        return Outcome(service_id, False, f"still stopping after {timeout:.0f}s")
    return Outcome(service_id, True, "stopped (stays stopped across restarts until maestro start)")


def start(supervisor: Supervisor, runs: RunStateStore, service_id: str, timeout: float) -> Outcome:
    runs.set_stopped(service_id, False)
    try:
        supervisor.call("supervisor.startProcess", service_id, False)
    except xmlrpc.client.Fault as fault:
        if "ALREADY_STARTED" in fault.faultString:
            return Outcome(service_id, True, "already running")
        return Outcome(service_id, False, f"start refused: {fault.faultString}")
    if not _wait(supervisor, service_id, RUNNING_STATES, timeout):
        return Outcome(service_id, False, "did not start (see maestro logs)")
    return Outcome(service_id, True, "started")


def restart(supervisor: Supervisor, runs: RunStateStore, service_id: str, timeout: float) -> Outcome:
    stopped = stop(supervisor, runs, service_id, timeout)
    if not stopped.ok:
        runs.set_stopped(service_id, False)
        return stopped
    started = start(supervisor, runs, service_id, timeout)
    return Outcome(service_id, started.ok, "restarted" if started.ok else started.message)
