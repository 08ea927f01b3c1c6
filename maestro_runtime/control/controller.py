"""``python -m maestro_runtime.control.controller``: the one long-lived controller.

A program of supervisord's (``maestro-controller``, autorestart), not of the parent process: when it
crashes supervisord brings it back and no service is touched (every decision it needs is in the
state dir), and a bug in it cannot take the container's PID-1 chain down. One asyncio loop carries:

- supervision: every TICK (0.5 s; 1 s when nothing moved for 10 s), supervisord's getAllProcessInfo
  -> supervision.step per service -> start after the backoff (another service on its port stopped
  first: portowners.py), give up at max_restarts, alerts;
- probes: each due probe a task on the same loop, bounded by its timeout: a hung probe costs one
  pending task, never the loop;
- samples: every SAMPLE_EVERY (10 s), CPU and RSS of every process tree -> status.json (the
  heartbeat list-services and HEALTHCHECK read) and the metrics snapshot.
XML-RPC and psutil calls block, so they run in a worker thread; webhook delivery has its own
thread and bounded queue (alerts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import xmlrpc.client
from dataclasses import replace
from typing import Any

from maestro_runtime.control import probes, supervision
from maestro_runtime.control.alerts import Alerts
from maestro_runtime.control.policy import Policy, for_process_type, resolve
from maestro_runtime.control.portowners import listeners, squatters
from maestro_runtime.control.rpc import process_states
from maestro_runtime.control.runstate import FATAL, RUNNING, RunState, RunStateStore, describe_exit
from maestro_runtime.control.sampling import Sample, children_map, sample_tree
from maestro_runtime.engine import parent
from maestro_runtime.engine.supervisord import Supervisor, SupervisorUnavailable
from maestro_runtime.ops import leftovers
from maestro_runtime.settings import OpsSettings, Settings
from maestro_runtime.state.records import RecordStore, ServiceRecord
from maestro_runtime.tasks.gate import service_health
from maestro_runtime.tasks.runner import Runner, alert_hook

log = logging.getLogger("maestro")
TICK = 0.5  # while something moves: exits are seen within half a second, restarts land on time
IDLE_TICK = 1.0  # when nothing changed for BUSY_FOR seconds: half the polling of a quiet host
BUSY_FOR = 10.0
SAMPLE_EVERY = 10.0
FIRST_PROBE_AFTER = 1.0
IDLE = frozenset({"EXITED", "FATAL", "STOPPED", "BACKOFF"})  # supervisord's: no process of the program


class Controller:
    def __init__(self, settings: Settings, ops: OpsSettings):
        self.settings, self.ops = settings, ops
        self.supervisor = Supervisor(settings.supervisor_socket, timeout=10)
        self.records_store = RecordStore(settings.records_dir)
        self.runs_store = RunStateStore(settings.state_dir)
        self.alerts = Alerts(ops.alert_webhook, ops.alert_secret)
        self.records: dict[str, ServiceRecord] = {}
        self.policies: dict[str, Policy] = {}
        self.runs: dict[str, RunState] = {}
        self.samples: dict[str, Sample] = {}
        self.builds: dict[str, tuple[float, float | None]] = {}  # id -> (log mtime, seconds)
        self.processes: dict[str, dict[str, Any]] | None = None
        self.next_probe: dict[str, float] = {}
        self.probing: set[str] = set()
        self.failed_seen: dict[str, float] = {}
        self.parent_of: dict[str, str] = {}  # process-type program -> its service
        self._records_stamp: tuple[float, int] | None = None
        self.stopping = asyncio.Event()
        self.busy_until = time.time() + BUSY_FOR
        # One-shot tasks, schedules and dependency gating: one step of the task runner per loop,
        # on its own supervisord connection (it runs in a worker thread beside the probes).
        self.tasks = Runner(settings, supervisor=Supervisor(settings.supervisor_socket, timeout=10),
                            on_event=alert_hook(self.alerts))

    # ------------------------------------------------------------ state

    def reload_records(self) -> None:
        folder = self.settings.records_dir
        try:
            st = folder.stat()
            stamp = (st.st_mtime, st.st_nlink)
        except OSError:
            stamp = None
        if stamp == self._records_stamp:
            return
        self._records_stamp = stamp
        from maestro_runtime.ops.processes import process_records

        # One-shot tasks belong to the task runner (tasks/runner.py): never restarted or probed here.
        services = [r for r in self.records_store.all() if r.role != "task"]
        self.records = {r.id: r for r in services}
        self.policies = {r.id: resolve(r, self.ops, self.settings.startsecs) for r in services if r.ready}
        # A service's Procfile types (<id>-worker...) are supervised like it, with its policy, no probe.
        self.parent_of = {}
        for r in services:
            for extra in process_records(r) if r.ready else ():
                self.records[extra.id], self.parent_of[extra.id] = extra, r.id
                self.policies[extra.id] = for_process_type(self.policies[r.id])
        for service_id in self.records:
            if service_id not in self.runs:
                self.runs[service_id] = self.runs_store.load(service_id)
        for gone in set(self.runs) - set(self.records):
            del self.runs[gone]

    def save(self, service_id: str, new: RunState) -> None:
        if new != self.runs.get(service_id):
            self.runs[service_id] = new
            try:
                self.runs_store.save(service_id, new)
            except OSError as exc:
                log.warning("service %s: cannot save its run state: %s", service_id, exc)

    # ------------------------------------------------------------ supervision

    async def supervise_once(self) -> None:
        try:
            self.processes = await asyncio.to_thread(process_states, self.supervisor)
        except (SupervisorUnavailable, xmlrpc.client.Fault):  # not answering, or shutting down
            self.processes = None
            return
        self.reload_records()
        now = time.time()
        for service_id, record in self.records.items():
            if not record.ready:
                self._note_failed(record)
                continue
            policy, before = self.policies[service_id], self.runs[service_id]
            info = self.processes.get(service_id)
            new, actions = supervision.step(policy, before, info, now, self.operator_stopped(service_id))
            if new.phase == RUNNING and new.last_start != before.last_start:
                new = probes.new_run(new)
                self.next_probe[service_id] = now + FIRST_PROBE_AFTER
            if new.phase == FATAL and before.phase != FATAL and new.fatal_reason:
                new, actions = self.with_last_output(service_id, new, actions)
            if new != before or new.phase == "BACKOFF":
                self.busy_until = now + BUSY_FOR
            self.save(service_id, new)
            for action in actions:
                await self.act(record, policy, action)

    def with_last_output(self, service_id: str, run: RunState, actions: list[supervision.Action]):
        """A service that gave up: its reason ends with the line that likely says why (its last
        stderr line: a traceback's exception), so list-services and the alert show the cause."""
        from maestro_runtime.ops.logs import known_cause, last_error, tail_bytes

        line = last_error(tail_bytes(self.settings.service_log_dir / f"{service_id}.log"))
        if not line:
            return run, actions
        cause = known_cause(line)
        reason = f"{run.fatal_reason}; last output: {line}" + (f" ({cause})" if cause else "")
        actions = [replace(a, detail=reason) if a.event == "gave_up" else a for a in actions]
        return replace(run, fatal_reason=reason), actions

    def operator_stopped(self, program_id: str) -> bool:
        """``maestro stop`` of a service holds for its process types too."""
        return any(self.runs_store.stopped(i) for i in (program_id, self.parent_of.get(program_id)) if i)

    def _note_failed(self, record: ServiceRecord) -> None:
        if self.failed_seen.get(record.id) != record.updated:
            if record.id in self.failed_seen or time.time() - record.updated < 600:
                self.alerts.emit("build_failed", record.id, record.error or "provisioning failed")
            self.failed_seen[record.id] = record.updated

    async def act(self, record: ServiceRecord, policy: Policy, action: supervision.Action) -> None:
        run = self.runs[record.id]
        if action.kind == "start":
            await self.evict_squatters(record)
            log.info("service %s: restart %d (%s)", record.id, run.attempts, describe_exit(run))
            try:
                await asyncio.to_thread(self.supervisor.call, "supervisor.startProcess", record.id, False)
            except Exception as exc:
                log.warning("service %s: restart failed: %s", record.id, exc)
                delay = policy.backoff.delay(run.attempts)
                # The end seen last is still the one handled: no second verdict on it.
                info = (self.processes or {}).get(record.id) or {}
                self.save(record.id, replace(run, next_restart_at=time.time() + delay,
                                             handled_start=float(info.get("start") or time.time())))
        elif action.kind == "alert":
            level = log.error if action.event in ("gave_up", "port_taken") else log.warning
            level("service %s: %s: %s", record.id, action.event.replace("_", " "), action.detail)
            self.alerts.emit(action.event, record.id, action.detail, restarts=run.restarts,
                             exit_code=run.last_exit_code, essential=policy.essential)
        elif action.kind == "exit_container":
            parent.request_stop(self.settings.runtime_dir / "exit-status", record.id, self.supervisor)

    async def guard_ports(self) -> None:
        """A service whose program does not run leaves its port free: another service that binds it is
        stopped at the tick that sees it, not only at the owner's start (one read while any is down)."""
        down = [r for r in self.records.values() if r.port > 0 and r.id not in self.parent_of and r.id in self.policies
                and ((self.processes or {}).get(r.id) or {}).get("statename") in IDLE]
        held = await asyncio.to_thread(listeners, {r.port for r in down}) if down else {}
        for record in (r for r in down if held.get(r.port, set()) - {r.uid}):
            await self.evict_squatters(record, held[record.port])

    async def evict_squatters(self, record: ServiceRecord, holders: set[int] | None = None) -> None:
        """Before a service starts again (or while it is down: guard_ports, which gives ``holders``):
        another service listening on its port took it; its programs are stopped, FATAL (portowners.py)."""
        if record.port <= 0 or record.id in self.parent_of:
            return
        at_start = holders is None
        if holders is None:
            holders = (await asyncio.to_thread(listeners, {record.port})).get(record.port, set())
        # Tasks too (the runner's, not among self.records): a task has no policy, end_squatter ends it.
        found, strangers = squatters([*self.records.values(), *self.records_store.all()], record, holders)
        if strangers and at_start:  # root's own program, say: named at each start, not at each tick
            log.warning("service %s: port %d is held by uid %s (no service)", record.id, record.port, sorted(strangers))
        # Not a task (no policy: only ended below), nor one stopped already: what still holds the port then
        # is what end_squatter could not end (a shared account), and each tick would only say it again.
        stop = [r for r in found if r.id in self.policies and not (
            self.runs[r.id].phase == FATAL and ((self.processes or {}).get(r.id) or {}).get("statename") in IDLE)]
        for other in stop:
            reason = f"listened on port {record.port} of service {record.id}: stopped (each port is its service's)"
            new, actions = supervision.squatted(self.policies[other.id], self.runs[other.id], time.time(), reason)
            self.save(other.id, new)  # before the stop: a STOPPED seen meanwhile is no operator's stop
            try:
                await asyncio.to_thread(self.supervisor.call, "supervisor.stopProcess", other.id, True)
            except Exception as exc:  # not running (its process type held it) or gone
                log.info("service %s: stop: %s", other.id, exc)
            (self.processes or {}).pop(other.id, None)  # this pass's view is stale: skipped, seen STOPPED next
            for action in actions:
                await self.act(other, self.policies[other.id], action)
        for r in {r.user: r for r in found if r in stop or r.id not in self.policies}.values():  # one per user
            await asyncio.to_thread(leftovers.end_squatter, self.settings, r, self.parent_of.get(r.id, r.id))

    # ------------------------------------------------------------ probes

    def task_health(self, records: list[ServiceRecord], processes: dict[str, Any],
                    now: float) -> dict[str, str | None]:
        """For ``depends_on``: the probe verdicts this controller keeps (tasks/gate.py)."""
        health_of = {i: run.health for i, run in self.runs.items()}
        return service_health(records, processes, health_of, now, self.settings.startsecs)

    async def step_tasks(self) -> None:
        try:
            await asyncio.to_thread(self.tasks.step, None, None, self.task_health)
        except (SupervisorUnavailable, xmlrpc.client.Fault):  # supervisord starting or stopping
            pass
        except Exception as exc:  # one bad step must not end supervision: say so and go on
            log.debug("task runner step failed", exc_info=True)
            log.error("task runner: %r", exc)

    def due_probes(self, now: float) -> list[str]:
        return [i for i, policy in self.policies.items() if policy.probe is not None and i not in self.probing
                and (run := self.runs.get(i)) is not None and run.phase == RUNNING and self.next_probe.get(i, 0) <= now]

    async def probe_one(self, service_id: str) -> None:
        self.probing.add(service_id)
        try:
            record, policy = self.records[service_id], self.policies[service_id]
            probe = policy.probe
            assert probe is not None
            started = self.runs[service_id].last_start
            script = self.settings.runtime_dir / "launch" / f"{service_id}.probe.sh"
            result = await probes.run_probe(probe, record.port, script)
            now = time.time()
            self.next_probe[service_id] = now + probe.interval
            run = self.runs.get(service_id)
            if run is None or run.phase != RUNNING or run.last_start != started:
                return  # the run it probed has ended: its verdict means nothing now
            change = probes.judge(run, probe, result, now, policy.restart_on_unhealthy)
            self.save(service_id, change.state)
            if change.event:
                (log.warning if change.event == "unhealthy" else log.info)(
                    "service %s: %s (%s)", service_id, change.event, result.detail)
                self.alerts.emit(change.event, service_id, result.detail, restarts=change.state.restarts)
            if change.restart:
                await self.restart_unhealthy(service_id)
        finally:
            self.probing.discard(service_id)

    async def restart_unhealthy(self, service_id: str) -> None:
        """Stopped now; started again by the supervision step once its backoff is over."""
        record, policy = self.records[service_id], self.policies[service_id]
        new, actions = supervision.unhealthy(policy, self.runs[service_id], time.time())
        try:
            await asyncio.to_thread(self.supervisor.call, "supervisor.stopProcess", service_id, True)
        except Exception as exc:
            log.info("service %s: stop before restart: %s", service_id, exc)
        # Saved once it is stopped: a supervision step during the stop would take a BACKOFF of a
        # process still running for a start by someone else, and then its STOPPED for an operator's.
        self.save(service_id, new)
        self.busy_until = time.time() + BUSY_FOR
        if new.next_restart_at is not None:
            log.warning("service %s: stopped, restart in %.1fs (restart_on_unhealthy)", service_id,
                        new.next_restart_at - time.time())
        for action in actions:  # gave up: the alert, and the container's end when it is essential
            await self.act(record, policy, action)

    # ------------------------------------------------------------ samples

    def sample_all(self) -> dict[str, Any]:
        now = time.monotonic()
        fresh: dict[str, Sample] = {}
        children = children_map()
        for service_id, info in (self.processes or {}).items():
            if service_id in self.records and info.get("pid"):
                sample = sample_tree(int(info["pid"]), now, self.samples.get(service_id), children)
                if sample is not None:
                    fresh[service_id] = sample
        self.samples = fresh
        status = {
            "version": 1, "pid": os.getpid(), "updated": time.time(),
            "samples": {i: {"pid": s.pid, "cpu_seconds": round(s.cpu_seconds, 3), "rss": s.rss,
                            "cpu_percent": None if s.cpu_percent is None else round(s.cpu_percent, 1)}
                        for i, s in fresh.items()},
            "builds": {i: secs for i in self.records if (secs := self.build_seconds(i)) is not None},
        }
        try:
            self.runs_store.save_status(status)
        except OSError as exc:  # a full or read-only state disk: list-services shows older numbers
            log.warning("controller: cannot save the status file: %s", exc)
        return status

    def build_seconds(self, service_id: str) -> float | None:
        """The last build's duration, from root's steps file (the build log holds what the build
        printed too); read again only when the file changed."""
        from maestro_runtime.sources.buildplan import build_seconds

        path = self.settings.build_steps(service_id)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        cached = self.builds.get(service_id)
        if not cached or cached[0] != mtime:
            self.builds[service_id] = cached = (mtime, build_seconds(path))
        return cached[1]

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        if self.ops.metrics_bind is not None:  # prometheus_client is imported only then
            from maestro_runtime.control.metrics import start as serve_metrics

            serve_metrics(self.ops, self.snapshot)
        tasks: set[asyncio.Task] = set()
        next_sample = 0.0
        while not self.stopping.is_set():
            await self.supervise_once()
            await self.guard_ports()
            await self.step_tasks()
            now = time.time()
            for service_id in self.due_probes(now):
                task = asyncio.create_task(self.probe_one(service_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if time.monotonic() >= next_sample and self.processes is not None:
                next_sample = time.monotonic() + SAMPLE_EVERY
                await asyncio.to_thread(self.sample_all)
            tick = TICK if time.time() < self.busy_until else IDLE_TICK
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), tick)
        for task in tasks:
            task.cancel()
        self.alerts.close()

    def snapshot(self) -> dict[str, Any]:
        """The metrics' view: the same rows as list-services --json."""
        from maestro_runtime.control.metrics import runtime_version
        from maestro_runtime.ops.inventory import Extras, build_views

        records = [r for r in self.records.values() if r.id not in self.parent_of]  # build_views adds the types
        extras = {}
        for r in self.records.values():
            sample = self.samples.get(r.id)
            extras[r.id] = Extras(
                run=self.runs.get(r.id), build_seconds=self.builds.get(r.id, (0, None))[1],
                sample={"pid": sample.pid, "cpu_percent": sample.cpu_percent, "cpu_seconds": sample.cpu_seconds,
                        "rss": sample.rss} if sample else None)
        rows = [v.as_json() for v in build_views(records, self.processes, extras, self.settings.startsecs)]
        return {"version": runtime_version(), "services": rows}


def main() -> None:
    from maestro_runtime.log_format import setup_logging

    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.log_timestamps)
    try:
        ops = OpsSettings.from_env(settings.environ)
    except ValueError as exc:
        log.error("controller: %s", exc)
        raise SystemExit(2) from None
    try:
        asyncio.run(Controller(settings, ops).run())
    except Exception as exc:  # one line, never a traceback; supervisord starts it again, services untouched
        log.debug("controller stopped", exc_info=True)
        log.error("controller stopped: %r (supervisord restarts it; ENTRYPOINT_LOG_LEVEL=debug shows where)", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
