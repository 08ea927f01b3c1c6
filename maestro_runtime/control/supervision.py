"""One supervision step for one service (pure): supervisord's view + our run state -> new state + actions.

supervisord runs every program with ``autorestart=false startsecs=0 startretries=0``:
every end of a run lands in EXITED (or FATAL when the spawn itself failed) with its
real exit status (supervisord forgets the status of a run shorter than ``startsecs``),
and this step decides, per the service's policy, whether and when to start it again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from maestro_runtime.control.policy import STABLE_AFTER, Policy
from maestro_runtime.control.runstate import (  # noqa: F401 - display_state: re-exported
    BACKOFF,
    ENDED_STATES,
    EXITED,
    FATAL,
    HEALTHY,
    RUNNING,
    STOPPED,
    RunState,
    describe_exit,
    display_state,
)

LIVE = frozenset({"STARTING", "RUNNING"})


@dataclass(frozen=True)
class Action:
    kind: str  # start | alert | exit_container
    event: str = ""  # for alerts: gave_up | exited | port_taken
    detail: str = ""


def step(policy: Policy, state: RunState, info: dict[str, Any] | None, now: float,
         operator_stopped: bool, rand=None) -> tuple[RunState, list[Action]]:
    if info is None:
        return state, []
    name = info.get("statename", "")
    start = float(info.get("start") or 0)
    if name in LIVE:
        new = state
        if state.handled_start:
            # Seen alive: its next end is new, even if it started in the same second as the last
            # (supervisord reports start times in whole seconds).
            new = replace(new, handled_start=0.0)
        if state.phase != RUNNING or state.last_start != start:
            # Started by someone else (boot, maestro start): a fresh count of restarts in a row.
            ours = state.phase == BACKOFF
            new = replace(new, phase=RUNNING, last_start=start, next_restart_at=None, fatal_reason="",
                          attempts=state.attempts if ours else 0)
        stable = name == "RUNNING" and now - start >= STABLE_AFTER
        liveness = policy.restart_on_unhealthy and policy.probe is not None  # then stable means healthy too
        if new.attempts and stable and (not liveness or new.health == HEALTHY):
            new = replace(new, attempts=0)  # a stable run: the next crash backs off from the start
        return new, []
    # STOPPED by the controller itself (unhealthy): its restart is due (BACKOFF) or given up (FATAL).
    if operator_stopped or (name == "STOPPED" and state.phase not in (BACKOFF, FATAL)):
        return (state if state.phase == STOPPED else replace(state, phase=STOPPED, next_restart_at=None)), []
    # A new end: none handled since the run was seen alive or started (handled_start 0), or the end of
    # a run other than the one handled (started and ended between two looks).
    if name in ENDED_STATES and (not state.handled_start or start != state.handled_start):
        return _ended(policy, state, info, now, rand)
    if state.phase == BACKOFF and state.next_restart_at is not None and now >= state.next_restart_at:
        # handled_start 0: whatever end is seen next belongs to the run this start begins.
        started = replace(state, attempts=state.attempts + 1, restarts=state.restarts + 1, next_restart_at=None,
                          handled_start=0.0)
        return started, [Action("start")]
    return state, []


def _ended(policy: Policy, state: RunState, info: dict[str, Any], now: float, rand) -> tuple[RunState, list[Action]]:
    start, stop = float(info.get("start") or 0), float(info.get("stop") or now)
    code = info.get("exitstatus") if info.get("statename") == "EXITED" else None
    # A long run resets the count; so does a run someone else started (boot, maestro start) after a
    # verdict, even when it ended before the controller saw it alive.
    external = state.phase in (FATAL, EXITED, STOPPED, "")
    attempts = 0 if stop - start >= STABLE_AFTER or external else state.attempts
    # supervisord reports a run killed by a signal as exit status -1; maestro.processStates (rpc.py) names it.
    signal = (info.get("signal") or None) if code == -1 else None
    new = replace(state, handled_start=start or now, attempts=attempts,
                  last_exit_code=code, last_exit_signal=signal, last_exit_at=stop)
    clean = code == 0
    actions = [] if clean else [Action("alert", "exited", f"{describe_exit(new)}" + (
        f": {info['spawnerr']}" if info.get("spawnerr") else ""))]
    served = state.health == HEALTHY and state.last_start == start  # a probe of this run got an answer
    # supervisord's times are whole seconds: "<= startsecs" is a run shorter than startsecs + 1 s.
    if clean and policy.listens and policy.restart != "never" and stop - start <= policy.startsecs and not served:
        # A web service that ends cleanly at once never served: a daemonizing server (it forked into
        # the background) or a one-shot command. Restarting it would only repeat that, silently.
        return _give_up(policy, new, actions, QUICK_CLEAN_EXIT)
    if not policy.should_restart(code, clean):
        return replace(new, phase=EXITED, next_restart_at=None), actions
    if policy.gives_up(attempts):
        return _give_up(policy, new, actions, f"gave up after {attempts} restarts ({describe_exit(new)})")
    delay = policy.backoff.delay(attempts, rand)
    return replace(new, phase=BACKOFF, next_restart_at=now + delay), actions


def unhealthy(policy: Policy, state: RunState, now: float, rand=None) -> tuple[RunState, list[Action]]:
    """``restart_on_unhealthy`` and the run stopped answering: it ends as a crash does (the caller
    stops it), restarted after the backoff and counted among the restarts in a row; after
    ``max_restarts`` of them it is given up. As Kubernetes backs off liveness restarts."""
    new = replace(state, handled_start=state.last_start or now, last_exit_code=-1,
                  last_exit_signal="SIGTERM (unhealthy)", last_exit_at=now)
    if policy.gives_up(state.attempts):
        return _give_up(policy, new, [], f"gave up after {state.attempts} restarts (unhealthy: {state.health_detail})")
    return replace(new, phase=BACKOFF, next_restart_at=now + policy.backoff.delay(state.attempts, rand)), []


QUICK_CLEAN_EXIT = (
    "exited with status 0 right after it started: a service must keep running in the foreground and listen "
    "on $PORT; if the command starts a daemon and returns (nginx, apachectl start, redis --daemonize yes), "
    "run it in the foreground, and make a one-shot command a task (kind: task)")


def squatted(policy: Policy, state: RunState, now: float, reason: str) -> tuple[RunState, list[Action]]:
    """The service listened on another service's port (control/portowners.py): the caller stops it,
    and it stays down, ``FATAL`` whatever its restart policy (it would only take the port again),
    until the operator starts it. Its end is handled here, so the stop is no crash to restart."""
    new = replace(state, handled_start=state.last_start or now, last_exit_code=-1,
                  last_exit_signal="SIGTERM (port taken)", last_exit_at=now)
    return _give_up(policy, new, [], reason, event="port_taken")


def _give_up(policy: Policy, new: RunState, actions: list[Action], reason: str,
             event: str = "gave_up") -> tuple[RunState, list[Action]]:
    actions = [*actions, Action("alert", event, reason)]
    if policy.essential:
        actions.append(Action("exit_container", detail="an essential service gave up"))
    return replace(new, phase=FATAL, next_restart_at=None, fatal_reason=reason), actions
