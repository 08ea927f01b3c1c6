"""May an entry start? A pure decision over a snapshot of the other entries' states.

Conditions: ``started`` (a service is RUNNING; a task has started), ``healthy`` (a
service's probe passes; a task has completed) and ``completed`` (a task finished with
exit 0; a service exited with 0). Until the controller (issue 13) feeds probe results in
:attr:`EntryState.health`, a service with no probe information counts as healthy once
it is RUNNING.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from maestro_runtime.tasks.state import CANCELLED, FAILED, RUNNING, SUCCEEDED

UP = frozenset({"RUNNING"})
NEVER = frozenset({"FATAL"})


@dataclass(frozen=True)
class EntryState:
    supervisor: str | None  # supervisord's state name; None when it does not know the entry
    health: str | None = None  # starting | healthy | unhealthy | None (no probe information)
    phase: str | None = None  # a task's phase (tasks/state.py)
    exit_code: int | None = None
    role: str = "service"
    provisioned: bool = True  # False: provisioning failed, it will never run
    error: str | None = None


@dataclass(frozen=True)
class Gate:
    ready: bool
    waiting: tuple[str, ...] = ()  # "db healthy", one per unmet condition
    impossible: str | None = None  # why it can never start

    @property
    def reason(self) -> str | None:
        if self.impossible:
            return self.impossible
        return "waiting: " + ", ".join(self.waiting) if self.waiting else None


def condition(name: str, cond: str, state: EntryState | None) -> bool | str:
    """True when met, False when not yet, a reason string when it never will be."""
    if state is None:
        return f"dependency {name} is not registered"
    if not state.provisioned:
        return f"dependency {name} failed to deploy" + (f": {state.error}" if state.error else "")
    if state.role == "task":
        if state.phase == SUCCEEDED:
            return True
        if state.phase in (FAILED, CANCELLED):
            code = f" (exit {state.exit_code})" if state.exit_code is not None else ""
            return f"dependency {name} {state.phase}{code}"
        return cond == "started" and state.phase == RUNNING
    if state.supervisor in NEVER:
        return f"dependency {name} is {state.supervisor}"
    if cond == "completed":
        if state.supervisor == "EXITED":
            return True if state.exit_code == 0 else f"dependency {name} exited with {state.exit_code}"
        return False
    if state.supervisor not in UP:
        return False
    if cond == "healthy":
        return state.health in (None, "healthy")
    return True


def gate(depends_on: Mapping[str, str], states: Mapping[str, EntryState]) -> Gate:
    waiting = []
    for name, cond in sorted(depends_on.items()):
        met = condition(name, cond, states.get(name))
        if isinstance(met, str):
            return Gate(False, impossible=met)
        if not met:
            waiting.append(f"{name} {cond}")
    return Gate(not waiting, tuple(waiting))


def service_health(records, processes: Mapping[str, Mapping], health_of: Mapping[str, str], now: float,
                   startsecs: float) -> dict[str, str | None]:
    """For ``depends_on``: each RUNNING service's probe verdict (``health_of``: the controller's run
    states); with none, "starting" until the run has lasted ``startsecs``, then None (healthy)."""
    health: dict[str, str | None] = {}
    for r in records:
        info = processes.get(r.id) or {}
        if r.role == "task" or info.get("statename") != "RUNNING":
            continue
        young = now - float(info.get("start") or 0) < startsecs
        health[r.id] = health_of.get(r.id) or ("starting" if young else None)
    return health
