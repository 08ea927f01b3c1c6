"""Tasks (issue 14), the pure parts: fields, the dependency graph, gating and the scheduler's tick."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maestro_runtime.spec import parse_services_yaml, parse_svc_vars
from maestro_runtime.spec.depgraph import find_cycle, shutdown_waves, start_waves
from maestro_runtime.spec.tasks import check_dependencies
from maestro_runtime.tasks.gate import EntryState, gate
from maestro_runtime.tasks.schedule import GRACE, Baseline, Run, Scheduled, Skip, latest_slot, tick
from maestro_runtime.tasks.state import Phase


def _yaml(text: str):
    result = parse_services_yaml(text, "services.yaml")
    check_dependencies(result)
    return result


def test_task_fields_from_yaml_and_env():
    result = _yaml("""
- {repo: /src/a.git, name: migrate, kind: task, schedule: "*/5 * * * *", catch_up: true}
- {repo: /src/b, name: web, depends_on: {migrate: completed, db: {condition: healthy}}}
- {repo: /src/c, name: db}
- {repo: /src/d, name: worker, depends_on: [db, web]}
""")
    assert not result.errors, result.errors
    migrate, web, _, worker = result.specs
    assert (migrate.role, migrate.schedule, migrate.catch_up) == ("task", "*/5 * * * *", True)
    assert dict(web.depends_on) == {"migrate": "completed", "db": "healthy"}
    assert dict(worker.depends_on) == {"db": "started", "web": "started"}
    env = parse_svc_vars({"SERVICES_COUNT": "1", "SVC_1_REPO": "/x", "SVC_1_KIND": "task",
                          "SVC_1_DEPENDS_ON": "db:healthy,cache"})
    assert env.specs[0].role == "task" and dict(env.specs[0].depends_on) == {"db": "healthy", "cache": "started"}


@pytest.mark.parametrize(("entry", "field", "words"), [
    ("{repo: /a, kind: job}", "kind", "service or task"),
    ("{repo: /a, kind: task, schedule: 'every day'}", "schedule", "cron"),
    ("{repo: /a, kind: task, schedule: '61 * * * *'}", "schedule", "not a valid"),
    ("{repo: /a, schedule: '* * * * *'}", "schedule", "only a task"),
    ("{repo: /a, depends_on: {db: ready}}", "depends_on.db", "condition must be one of"),
    ("{repo: /a, depends_on: 3}", "depends_on", "must be a list"),
    ("{repo: /a, catch_up: maybe}", "catch_up", "true or false"),
])
def test_bad_task_fields_name_the_field(entry, field, words):
    result = parse_services_yaml(f"- {entry}\n", "f.yaml")
    assert not result.specs
    assert result.errors[0].field == field and words in result.errors[0].message


def test_unknown_names_and_cycles_are_rejected_with_the_cycle_printed():
    result = _yaml("""
- {repo: /a, name: a, depends_on: [b]}
- {repo: /b, name: b, depends_on: [c]}
- {repo: /c, name: c, depends_on: [a]}
- {repo: /d, name: d, depends_on: [nowhere]}
- {repo: /e, name: e, depends_on: [d]}
- {repo: /f, name: f}
""")
    assert [s.base_name for s in result.specs] == ["e", "f"]  # e waits on d, which failed: the runner says why
    messages = {e.hint: e.message for e in result.errors}
    assert messages["a"] == messages["b"] == messages["c"] == "dependency cycle: a -> b -> c -> a"
    assert "unknown service 'nowhere'" in messages["d"]


def test_graph_orders():
    graph = {"web": {"db": "healthy", "migrate": "completed"}, "migrate": {"db": "started"}, "db": {}}
    assert start_waves(graph) == [["db"], ["migrate"], ["web"]]
    assert shutdown_waves(graph) == [["web"], ["migrate"], ["db"]]
    assert find_cycle({"x": {"x": "started"}}) == ["x", "x"]


def test_gate_conditions():
    states = {
        "db": EntryState("RUNNING"),
        "cache": EntryState("RUNNING", health="starting"),
        "migrate": EntryState("EXITED", role="task", phase="failed", exit_code=3),
        "seed": EntryState("EXITED", role="task", phase="succeeded", exit_code=0),
        "broken": EntryState("FATAL"),
        "never": EntryState(None, provisioned=False, error="clone failed"),
    }
    # No probe information yet: RUNNING counts as healthy (until the controller feeds health).
    assert gate({"db": "healthy", "seed": "completed"}, states).ready
    waiting = gate({"cache": "healthy", "db": "started"}, states)
    assert not waiting.ready and waiting.reason == "waiting: cache healthy"
    assert gate({"migrate": "completed"}, states).impossible == "dependency migrate failed (exit 3)"
    assert gate({"broken": "started"}, states).impossible == "dependency broken is FATAL"
    assert "failed to deploy: clone failed" in gate({"never": "started"}, states).impossible
    assert gate({"ghost": "started"}, states).impossible == "dependency ghost is not registered"
    assert not gate({"x": "completed"}, {"x": EntryState("STARTING", role="task", phase="running")}).ready


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_tick_runs_at_the_minute_boundary_once_and_never_overlaps():
    task = [Scheduled("job", "* * * * *")]
    start = _t("2026-01-01T12:00:30")
    [first] = tick(start, task, {})
    assert first == Baseline("job", _t("2026-01-01T12:00:00"))  # never run for a slot before it was seen
    phases = {"job": Phase(phase="succeeded", last_slot=first.slot)}
    assert tick(_t("2026-01-01T12:00:59.9"), task, phases) == []
    [due] = tick(_t("2026-01-01T12:01:00"), task, phases)
    assert due == Run("job", _t("2026-01-01T12:01:00"), "schedule")
    # The run from 12:01 is still going at 12:02: that slot is skipped, not stacked.
    running = {"job": Phase(phase="running", last_slot=due.slot)}
    [skip] = tick(_t("2026-01-01T12:02:00.5"), task, running)
    assert isinstance(skip, Skip) and "still going" in skip.reason
    assert latest_slot("* * * * *", _t("2026-01-01T12:02:00")) == _t("2026-01-01T12:02:00")


def test_missed_slots_are_skipped_unless_catch_up():
    last = _t("2026-01-01T03:00:00")
    phases = {"job": Phase(phase="succeeded", last_slot=last)}
    back = _t("2026-01-01T09:30:00") + GRACE + 1  # the container was down from 03:10 to after 09:30
    [skipped] = tick(back, [Scheduled("job", "*/30 * * * *")], phases)
    assert isinstance(skipped, Skip) and "missed" in skipped.reason
    [caught] = tick(back, [Scheduled("job", "*/30 * * * *", catch_up=True)], phases)
    assert isinstance(caught, Run) and caught.slot == _t("2026-01-01T09:30:00")  # once, not 13 times


def test_the_agent_example_is_a_valid_services_file():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "agent-task" / "services.yml"
    result = _yaml(path.read_text())
    assert not result.errors, [str(e) for e in result.errors]
    agent, site = result.specs
    assert (agent.role, agent.ref, agent.allow_hosts) == ("task", "agent/notes", ("api.anthropic.com",))
    assert dict(site.depends_on) == {"notes-agent": "completed"}
