"""The task runner: each second, observe supervisord, then decide (pure) and act.

The controller (control/controller.py) calls :meth:`Runner.step` once per loop, with the
health verdicts it holds (see README, "Tasks and dependencies"): one loop for everything.

One step:
1. observe: running tasks that ended become succeeded/failed/cancelled (exit code, times, commits);
2. requests from ``maestro run`` / ``maestro cancel``;
3. new or changed tasks (revision) are wanted again; schedules (``schedule.tick``);
4. gating (``gate.gate``): wanted tasks and services with dependencies start, wait or fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from maestro_runtime.engine.supervisord import Supervisor
from maestro_runtime.settings import Settings
from maestro_runtime.state.records import RecordStore, ServiceRecord
from maestro_runtime.tasks import schedule as sched
from maestro_runtime.tasks.gate import EntryState, gate
from maestro_runtime.tasks.state import (
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    WAITING,
    Phase,
    PhaseStore,
)

log = logging.getLogger("maestro.tasks")
Event = Callable[[str, str, Mapping[str, Any]], None]  # (event, entry id, fields): the alert hook


def log_event(event: str, entry: str, fields: Mapping[str, Any]) -> None:
    """One line an operator reads: ``migrate: task.failed (exit 1, 3.1s)``, with the reason after a
    colon when there is one (never ``reason=None`` nor a duration to the nanosecond)."""
    code, duration = fields.get("exit_code"), fields.get("duration")
    said = ([] if code is None else [f"exit {code}"]) + ([] if duration is None else [f"{duration:.1f}s"])
    text = f"{entry}: {event}" + (f" ({', '.join(said)})" if said else "")
    (log.info if event == "task.succeeded" else log.warning)(
        "%s", text + (f": {fields['reason']}" if fields.get("reason") else ""))


def snapshot(records: list[ServiceRecord], phases: Mapping[str, Phase], processes: Mapping[str, dict],
             health: Mapping[str, str | None] | None = None,
             verdicts: Mapping[str, str] | None = None) -> dict[str, EntryState]:
    """The states gating decides on, keyed by entry id (and by name, when it differs). ``verdicts``:
    the controller's state of a service where supervisord's is too coarse (it says EXITED of a
    service the controller gave up on: FATAL)."""
    out: dict[str, EntryState] = {}
    for r in records:
        proc = processes.get(r.id)
        phase = phases.get(r.id)
        state = EntryState(
            supervisor=(verdicts or {}).get(r.id) or (proc["statename"] if proc else None),
            health=(health or {}).get(r.id),
            phase=phase.phase if phase and r.role == "task" else None,
            exit_code=(phase.exit_code if r.role == "task" and phase else (proc or {}).get("exitstatus")),
            role=r.role, provisioned=r.ready, error=r.error)
        out[r.id] = state
        out.setdefault(r.name, state)
    return out


class Runner:
    def __init__(self, settings: Settings, supervisor: Supervisor | None = None, on_event: Event = log_event):
        self.settings = settings
        self.records = RecordStore(settings.records_dir)
        self.phases = PhaseStore(settings.state_dir / "tasks")
        self.supervisor = supervisor or Supervisor(settings.supervisor_socket)
        self.on_event = on_event
        self.launched: set[str] = set()  # entries this runner started (a supervisord's life)
        self.first = True
        self._cache: list[ServiceRecord] = []
        self._stamp = -1
        self._read_at = 0.0
        self._jail = None  # where git reads a workspace (tasks/workspace.py), made on first use
        # git reads of workspaces run beside the loop, never in it: a hostile checkout (its HEAD a
        # FIFO) holds git for GIT_TIMEOUT, and the controller's loop (every service's restarts and
        # probes) waits for each step. Only the entry itself waits: to start, or to be finished.
        self._reads: ThreadPoolExecutor | None = None
        self._heads: dict[str, Future] = {}  # entry id -> its HEAD, read before it starts
        self._ending: dict[str, tuple[str, int | None, float, str | None, Future]] = {}  # its commits, counted

    def _read(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._reads is None:
            self._reads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="workspace-git")
        return self._reads.submit(fn, *args)

    def jail(self):
        from maestro_runtime.tasks.workspace import sandbox_jail

        if self._jail is None:
            self._jail = sandbox_jail(self.settings)
        return self._jail

    # ------------------------------------------------------------ the loop body

    def step(self, now: float | None = None, health: Mapping[str, str | None] | None = None,
             health_of: Callable[[list[ServiceRecord], dict[str, Any], float], Mapping[str, str | None]] | None = None,
             ) -> None:
        """``health``: the services' health as known; or ``health_of(records, processes, now)`` to
        work it out from supervisord's processes, fetched here once."""
        now = time.time() if now is None else now
        records = self._records()
        phases = self.phases.all()
        by_id = {r.id: r for r in records}
        for stale in set(phases) - set(by_id):
            self.phases.delete(stale)
        for gone in (set(self._heads) | set(self._ending)) - set(by_id):
            self._heads.pop(gone, None)
            self._ending.pop(gone, None)
        if not any(r.role == "task" or r.depends_on for r in records):
            self.first = False
            return  # nothing to do: no supervisord call each second for a container of services
        processes = self.supervisor.processes()
        for r in records:
            if r.role == "task" or r.depends_on:
                phases[r.id] = self._observe(r, phases.get(r.id), processes.get(r.id), now)
        for entry_id, what in self.phases.take_requests():
            if entry_id in by_id and entry_id in phases:
                phases[entry_id] = self._request(by_id[entry_id], phases[entry_id], what, processes, now)
        scheduled = [sched.Scheduled(r.id, r.schedule, r.catch_up) for r in records
                     if r.role == "task" and r.schedule and r.ready]
        for action in sched.tick(now, scheduled, phases):
            phase = replace(phases[action.name], last_slot=action.slot)
            if isinstance(action, sched.Run):
                phase = phase.to(PENDING, want=True, reason=f"due: {action.reason}")
            elif isinstance(action, sched.Skip):
                log.warning("task %s: slot %s skipped: %s", action.name, time.strftime("%H:%M", time.localtime(
                    action.slot)), action.reason)
            phases[action.name] = phase
        if health_of is not None:
            health = health_of(records, processes, now)
        states = snapshot(records, phases, processes, health, self._verdicts(records, processes))
        for r in records:
            if r.id in phases:
                phases[r.id] = self._gate(r, phases[r.id], states, processes.get(r.id), now)
        for entry_id in [e for e in self._heads if phases.get(e, Phase()).phase not in (PENDING, WAITING)]:
            del self._heads[entry_id]  # cancelled meanwhile: a later start reads HEAD afresh
        for entry_id, phase in phases.items():
            if entry_id in by_id and phase != self.phases.load(entry_id):
                self.phases.save(entry_id, phase)
        self.first = False

    def _verdicts(self, records: list[ServiceRecord], processes: Mapping[str, dict]) -> dict[str, str]:
        """The controller's verdict on each service an entry depends on whose run has ended. The
        controller restarts, not supervisord (startretries=0): supervisord says EXITED of a service
        that gave up, and its dependents waited for it ("waiting: db healthy") forever."""
        from maestro_runtime.control.runstate import RunStateStore, display_state

        named = {n for r in records for n in r.depends_on}
        runs = RunStateStore(self.settings.state_dir)
        out = {}
        for r in records:
            proc = processes.get(r.id)
            if r.role != "task" and (r.id in named or r.name in named) and proc and proc["statename"] in (
                    "EXITED", "FATAL", "STOPPED"):
                out[r.id] = display_state(runs.load(r.id), proc["statename"])
        return out

    def _stopped(self, entry_id: str) -> bool:
        from maestro_runtime.control.runstate import RunStateStore

        return RunStateStore(self.settings.state_dir).stopped(entry_id)

    def _records(self) -> list[ServiceRecord]:
        """Every record, read again only when the folder changed (records are replaced by rename)."""
        try:
            stamp = self.records.folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        # ...and every 5 s anyway: two renames within one clock tick leave the same mtime.
        if stamp != self._stamp or time.monotonic() - self._read_at > 5:
            self._cache, self._stamp, self._read_at = self.records.all(), stamp, time.monotonic()
        return self._cache

    # ------------------------------------------------------------ steps

    def _observe(self, r: ServiceRecord, phase: Phase | None, proc: dict | None, now: float) -> Phase:
        changed = phase is None or (phase.revision != r.program_revision and phase.phase != RUNNING)
        if changed or (r.role != "task" and (self.first or phase.revision != r.program_revision)):
            # New, or its spec/code changed (or, for a service, a new runtime): run (again),
            # unless it only runs on its schedule. A finished task is not run again at boot.
            fresh = Phase(revision=r.program_revision, last_slot=phase.last_slot if phase else None,
                          runs=phase.runs if phase else 0)
            # A service the operator stopped (maestro stop) stays stopped, as one without
            # dependencies does (its program does not autostart): only maestro start starts it.
            held = r.role != "task" and self._stopped(r.id)
            return fresh.to(PENDING, want=r.autostart and not r.schedule and r.ready and not held)
        if r.role != "task":
            return phase
        if phase.phase != RUNNING:
            return phase
        if r.id in self._ending:  # it ended; the commits it made are being counted
            return self._counted(r, phase)
        state = proc["statename"] if proc else None
        if state in ("STARTING", "RUNNING", "BACKOFF", "STOPPING"):
            return phase
        if r.id not in self.launched and self.first and state not in ("EXITED", "FATAL"):
            return self._finish(r, phase, FAILED, None, now, "interrupted: the runtime stopped during the run")
        if state == "EXITED":
            code = int(proc.get("exitstatus", -1))
            ended = now  # supervisord's stop time is whole seconds; the runner looks twice a second
            return self._finish(r, phase, SUCCEEDED if code == 0 else FAILED, code, ended, None)
        if state == "FATAL":
            return self._finish(r, phase, FAILED, None, now, proc.get("spawnerr") or "could not start")
        return self._finish(r, phase, CANCELLED, None, now, "stopped")

    def _finish(self, r: ServiceRecord, phase: Phase, outcome: str, code: int | None, ended: float,
                reason: str | None) -> Phase:
        if r.workspace and phase.start_commit:
            from maestro_runtime.tasks.workspace import commits_since

            count = self._read(commits_since, r.uid, r.gid, r.home, r.directory, phase.start_commit, self.jail())
            self._ending[r.id] = (outcome, code, ended, reason, count)
            return self._counted(r, phase)
        return self._done(r, phase, outcome, code, ended, reason, phase.commits)

    def _counted(self, r: ServiceRecord, phase: Phase) -> Phase:
        """The run's end once its commits are counted (still RUNNING until then)."""
        outcome, code, ended, reason, count = self._ending[r.id]
        if not count.done():
            return phase
        del self._ending[r.id]
        commits = count.result() if count.exception() is None else None
        return self._done(r, phase, outcome, code, ended, reason, commits)

    def _done(self, r: ServiceRecord, phase: Phase, outcome: str, code: int | None, ended: float,
              reason: str | None, commits: int | None) -> Phase:
        done = phase.to(outcome, want=False, exit_code=code, ended=ended, reason=reason, commits=commits)
        self.launched.discard(r.id)
        duration = None if done.duration is None else round(done.duration, 3)
        self.on_event(f"task.{outcome}", r.id, {"exit_code": code, "duration": duration, "reason": reason})
        return done

    def _request(self, r: ServiceRecord, phase: Phase, what: str, processes: Mapping[str, dict],
                 now: float) -> Phase:
        if what == "run":
            if phase.phase == RUNNING:
                log.warning("%s: already running; run request ignored", r.id)
                return phase
            return phase.to(PENDING, want=True, reason="requested: maestro run", exit_code=None)
        if phase.phase == RUNNING:
            self._call("supervisor.stopProcess", r.id, False)
            return phase  # observed as cancelled once supervisord has stopped it
        if phase.phase in (PENDING, WAITING):
            return phase.to(CANCELLED, want=False, reason="cancelled before it started", ended=now)
        return phase

    def _gate(self, r: ServiceRecord, phase: Phase, states: Mapping[str, EntryState], proc: dict | None,
              now: float) -> Phase:
        if phase.blocked and phase.phase == FAILED and r.ready and not gate(r.depends_on, states).impossible:
            # What blocked it was redeployed, run again or restarted: it starts once they allow it.
            held = r.role != "task" and self._stopped(r.id)  # maestro stop holds until maestro start
            log.info("%s: its dependencies may allow it again%s", r.id,
                     " (stopped by the operator: maestro start starts it)" if held else "; waiting for them")
            phase = phase.to(PENDING, want=not held, blocked=False, reason=None, ended=None)
        if phase.phase not in (PENDING, WAITING) or not phase.want or not r.ready or proc is None:
            return phase  # proc None: its program is not added yet (boot adds them all at once)
        decision = gate(r.depends_on, states)
        if decision.impossible:
            self.on_event("task.failed" if r.role == "task" else "service.blocked", r.id,
                          {"reason": decision.impossible})
            return phase.to(FAILED, want=False, reason=decision.impossible, ended=now, exit_code=None, blocked=True)
        if not decision.ready:
            self._heads.pop(r.id, None)  # read again once it may start
            return phase.to(WAITING, reason=decision.reason)
        if r.role != "task" and proc and proc["statename"] in ("RUNNING", "STARTING"):
            return phase.to(RUNNING, want=False, reason=None)
        start_commit = None
        if r.workspace:  # its HEAD first, read beside the loop: it starts at a later step
            from maestro_runtime.tasks.workspace import git_as

            head = self._heads.get(r.id)
            if head is None:
                self._heads[r.id] = self._read(git_as, r.uid, r.gid, r.home, r.directory, ["rev-parse", "HEAD"],
                                               self.jail())
                return phase.to(WAITING, reason="waiting: reading its workspace")
            if not head.done():
                return phase.to(WAITING, reason="waiting: reading its workspace")
            del self._heads[r.id]
            start_commit = ((head.result() if head.exception() is None else None) or "").strip() or None
        if not self._call("supervisor.startProcess", r.id, False):
            return phase
        self.launched.add(r.id)
        log.info("%s started%s", r.id, f" after {', '.join(f'{k} {v}' for k, v in r.depends_on.items())}"
                 if r.depends_on else "")
        return phase.to(RUNNING, want=False, reason=None, started=now, ended=None, exit_code=None,
                        start_commit=start_commit, commits=0 if start_commit else None, runs=phase.runs + 1)

    def _call(self, method: str, *args: Any) -> bool:
        import xmlrpc.client

        try:
            self.supervisor.call(method, *args)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString and "NOT_RUNNING" not in fault.faultString:
                log.error("%s %s: %s", method, args[0], fault.faultString)
                return False
        return True


def alert_hook(alerts) -> Event:
    """Task events to the log and to the alert webhook (``control.alerts.Alerts``: signed,
    rate-limited, never blocking), as ``task_succeeded``, ``task_failed``, ``task_cancelled``
    and ``service_blocked``."""

    def emit(event: str, entry: str, fields: Mapping[str, Any]) -> None:
        log_event(event, entry, fields)
        detail = str(fields.get("reason") or "")
        alerts.emit(event.replace(".", "_"), entry, detail, **{k: v for k, v in fields.items() if k != "reason"})

    return emit
