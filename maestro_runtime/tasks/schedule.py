"""Cron schedules, decided by a pure function: ``tick(now, tasks, phases) -> actions``.

Rules: a slot (a time the cron expression fires) runs once; never while the previous run
of the same task is still pending, waiting or running (the slot is skipped, and says so);
a slot missed by more than :data:`GRACE` seconds (the container was down) is skipped
unless the task has ``catch_up: true``, which runs it once, however many slots were missed.
The first time a schedule is seen, its latest slot is only noted (never run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from maestro_runtime.tasks.state import PENDING, RUNNING, WAITING, Phase

GRACE = 30.0  # seconds late a slot may still start (the runner checks every second)


@dataclass(frozen=True)
class Scheduled:
    name: str
    schedule: str  # a cron expression, validated when the spec was read
    catch_up: bool = False


@dataclass(frozen=True)
class Run:
    name: str
    slot: float
    reason: str


@dataclass(frozen=True)
class Skip:
    name: str
    slot: float
    reason: str


@dataclass(frozen=True)
class Baseline:
    name: str
    slot: float


Action = Run | Skip | Baseline


def latest_slot(expression: str, now: float) -> float:
    """The latest time <= now the expression fires (now itself included)."""
    from croniter import croniter

    upcoming = croniter(expression, now - 1).get_next(float)
    return upcoming if upcoming <= now else croniter(expression, now).get_prev(float)


def next_slot(expression: str, now: float) -> float:
    from croniter import croniter

    return croniter(expression, now).get_next(float)


def tick(now: float, tasks: Sequence[Scheduled], phases: Mapping[str, Phase]) -> list[Action]:
    actions: list[Action] = []
    for task in tasks:
        slot = latest_slot(task.schedule, now)
        phase = phases.get(task.name)
        last = phase.last_slot if phase else None
        if last is None:
            actions.append(Baseline(task.name, slot))
        elif slot > last:
            busy = phase is not None and (phase.phase in (RUNNING, WAITING) or (phase.phase == PENDING and phase.want))
            if busy:
                actions.append(Skip(task.name, slot, "the previous run is still going"))
            elif now - slot > GRACE and not task.catch_up:
                actions.append(Skip(task.name, slot, "missed while the runtime was down (catch_up: false)"))
            else:
                actions.append(Run(task.name, slot, "catch-up of a missed slot" if now - slot > GRACE else "schedule"))
    return actions
