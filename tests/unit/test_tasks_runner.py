"""The task runner's step against a fake supervisord: what the controller (issue 13) will call."""

from __future__ import annotations

from maestro_runtime.settings import Settings
from maestro_runtime.state.records import RecordStore, ServiceRecord
from maestro_runtime.tasks.runner import Runner
from maestro_runtime.tasks.state import PhaseStore


class FakeSupervisor:
    def __init__(self):
        self.procs: dict[str, dict] = {}
        self.calls: list[tuple] = []

    def processes(self):
        return {k: dict(v) for k, v in self.procs.items()}

    def call(self, method, *args):
        self.calls.append((method, *args))
        name = args[0]
        if method == "supervisor.startProcess":
            self.procs[name] = {"statename": "RUNNING", "start": 1, "exitstatus": 0}
        elif method == "supervisor.stopProcess":
            self.procs[name] = {"statename": "STOPPED", "start": 1, "exitstatus": 0}


def _record(store: RecordStore, name: str, **fields) -> None:
    fields.setdefault("program_revision", "r1")
    store.save(ServiceRecord(id=name, name=name, kind="file", origin="t", source="/s", directory="/d",
                             user="u", port=0, **fields))


def _runner(tmp_path):
    settings = Settings.from_env({"MAESTRO_STATE_DIR": str(tmp_path), "MAESTRO_RUNTIME_DIR": str(tmp_path / "run")})
    store = RecordStore(settings.records_dir)
    fake = FakeSupervisor()
    events: list[tuple] = []
    runner = Runner(settings, supervisor=fake, on_event=lambda e, n, f: events.append((e, n, dict(f))))
    return runner, store, fake, events, PhaseStore(tmp_path / "tasks")


def test_health_fed_by_the_controller_gates_and_task_outcomes_propagate(tmp_path):
    runner, store, fake, events, phases = _runner(tmp_path)
    _record(store, "db")
    _record(store, "web", depends_on={"db": "healthy"})
    _record(store, "migrate", role="task")
    _record(store, "api", depends_on={"migrate": "completed"})
    fake.procs = {n: {"statename": "STOPPED", "start": 0} for n in ("web", "migrate", "api")}
    fake.procs["db"] = {"statename": "RUNNING", "start": 1}

    runner.step(now=100.0, health={"db": "starting"})
    assert phases.load("web").reason == "waiting: db healthy"
    assert ("supervisor.startProcess", "migrate", False) in fake.calls
    assert phases.load("migrate").phase == "running" and phases.load("api").reason == "waiting: migrate completed"

    fake.procs["migrate"] = {"statename": "EXITED", "start": 100, "stop": 101, "exitstatus": 3}
    runner.step(now=102.0, health={"db": "healthy"})
    assert ("supervisor.startProcess", "web", False) in fake.calls
    migrate = phases.load("migrate")
    assert (migrate.phase, migrate.exit_code, migrate.duration) == ("failed", 3, 2.0)
    assert phases.load("api").phase == "failed" and phases.load("api").reason == "dependency migrate failed (exit 3)"
    assert ("task.failed", "migrate") in [(e, n) for e, n, _ in events]

    # Never restarted by itself; run again on request; cancel stops it.
    runner.step(now=103.0)
    assert [c for c in fake.calls if c[:2] == ("supervisor.startProcess", "migrate")] == [
        ("supervisor.startProcess", "migrate", False)]
    phases.request("migrate", "run")
    runner.step(now=104.0)
    assert phases.load("migrate").phase == "running" and phases.load("migrate").runs == 2
    phases.request("migrate", "cancel")
    runner.step(now=105.0)
    runner.step(now=106.0)
    assert phases.load("migrate").phase == "cancelled"


def test_a_finished_task_is_not_run_again_by_a_new_runner_unless_its_revision_changed(tmp_path):
    runner, store, fake, _, phases = _runner(tmp_path)
    _record(store, "once", role="task")
    fake.procs = {"once": {"statename": "STOPPED", "start": 0}}
    runner.step(now=1.0)
    fake.procs["once"] = {"statename": "EXITED", "start": 1, "exitstatus": 0}
    runner.step(now=2.0)
    assert phases.load("once").phase == "succeeded"

    again, _, fake2, _, _ = _runner(tmp_path)  # a container restart: new supervisord, new runner
    fake2.procs = {"once": {"statename": "STOPPED", "start": 0}}
    again.step(now=10.0)
    assert fake2.calls == [] and phases.load("once").phase == "succeeded"
    _record(store, "once", role="task", program_revision="r2")
    again._stamp = -1
    again.step(now=11.0)
    assert fake2.calls == [("supervisor.startProcess", "once", False)]


def test_a_blocked_entry_starts_once_what_blocked_it_is_back(tmp_path):
    """web depends on db, which failed to deploy: web is blocked (failed, service.blocked). db is
    redeployed and runs: web is looked at again and starts; a task that only failed is not."""
    runner, store, fake, events, phases = _runner(tmp_path)
    _record(store, "db", state="failed", error="boom")
    _record(store, "web", depends_on={"db": "started"})
    _record(store, "job", role="task")
    fake.procs = {"web": {"statename": "STOPPED", "start": 0}, "job": {"statename": "STOPPED", "start": 0}}
    runner.step(now=1.0)
    web = phases.load("web")
    assert (web.phase, web.reason, web.blocked) == ("failed", "dependency db failed to deploy: boom", True)
    assert ("service.blocked", "web") in [(e, n) for e, n, _ in events]
    fake.procs["job"] = {"statename": "EXITED", "start": 1, "exitstatus": 3}
    runner.step(now=2.0)
    assert phases.load("job").phase == "failed" and not phases.load("job").blocked

    _record(store, "db")  # redeployed: ready, and running
    fake.procs["db"] = {"statename": "RUNNING", "start": 3}
    runner._stamp = -1
    runner.step(now=4.0)
    assert ("supervisor.startProcess", "web", False) in fake.calls
    assert phases.load("web").phase == "running" and not phases.load("web").blocked
    assert [c for c in fake.calls if c[1] == "job"] == [("supervisor.startProcess", "job", False)]  # once
