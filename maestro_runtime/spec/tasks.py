"""Field checks for tasks and dependencies: ``kind``, ``schedule``, ``catch_up``, ``depends_on``, ``workspace``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from maestro_runtime.spec.model import ParseResult, SpecError
from maestro_runtime.spec.naming import sanitize_name

ROLES = ("service", "task")
CONDITIONS = ("started", "healthy", "completed")
DEFAULT_CONDITION = "started"
TASK_FIELDS = ("kind", "schedule", "catch_up", "depends_on", "workspace")
_CRON_CHARS = re.compile(r"^[0-9A-Za-z*/,\- ?#LW@]{1,120}$")


def parse_role(origin: str, raw: Any) -> str:
    value = "service" if raw is None or raw == "" else raw
    if not isinstance(value, str) or value.strip().lower() not in ROLES:
        raise SpecError(origin, "kind", f"must be service or task, got {str(raw)[:20]!r}")
    return value.strip().lower()


def parse_schedule(origin: str, raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _CRON_CHARS.match(raw.strip()):
        raise SpecError(origin, "schedule", f"must be a cron expression like '*/5 * * * *', got {str(raw)[:40]!r}")
    from croniter import croniter  # the well-kept parser decides what a valid expression is

    text = " ".join(raw.split())
    if not croniter.is_valid(text):
        raise SpecError(origin, "schedule", f"{text!r} is not a valid cron expression")
    return text


def parse_bool(origin: str, name: str, raw: Any, default: bool | None) -> bool | None:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "0", "false", "no"):
        return raw.strip().lower() in ("1", "true", "yes")
    raise SpecError(origin, name, f"must be true or false, got {str(raw)[:20]!r}")


def parse_depends_on(origin: str, raw: Any) -> dict[str, str]:
    """A list of names (condition ``started``), a mapping {name: condition}, or the
    environment form ``db:healthy,migrate:completed``."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        raw = dict(_pair(item) for item in raw.split(",") if item.strip())
    elif isinstance(raw, list):
        if not all(isinstance(x, str) for x in raw):
            raise SpecError(origin, "depends_on", "a list must hold service names")
        raw = dict.fromkeys(raw, DEFAULT_CONDITION)
    if not isinstance(raw, Mapping):
        raise SpecError(origin, "depends_on", f"must be a list of names or a mapping name: condition, got "
                                              f"{type(raw).__name__}")
    out: dict[str, str] = {}
    for name, condition in raw.items():
        key = sanitize_name(name) if isinstance(name, str) else ""
        if not key:
            raise SpecError(origin, "depends_on", f"{str(name)[:40]!r} is not a service name")
        if isinstance(condition, Mapping):  # compose style: {db: {condition: healthy}}
            condition = condition.get("condition")
        cond = condition.strip().lower() if isinstance(condition, str) else condition
        if cond not in CONDITIONS:
            raise SpecError(origin, f"depends_on.{key}",
                            f"condition must be one of {', '.join(CONDITIONS)}, got {str(condition)[:20]!r}")
        out[key] = cond
    return out


def _pair(item: str) -> tuple[str, str]:
    name, _, condition = item.strip().partition(":")
    return name.strip(), (condition.strip() or DEFAULT_CONDITION)


def task_fields(origin: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The issue-14 fields of one entry, validated, as ServiceSpec keyword arguments."""
    role = parse_role(origin, entry.get("kind"))
    schedule = parse_schedule(origin, entry.get("schedule"))
    if schedule and role != "task":
        raise SpecError(origin, "schedule", "only a task (kind: task) can have a schedule")
    return {
        "role": role,
        "schedule": schedule,
        "catch_up": bool(parse_bool(origin, "catch_up", entry.get("catch_up"), False)),
        "depends_on": parse_depends_on(origin, entry.get("depends_on")),
        "workspace": parse_bool(origin, "workspace", entry.get("workspace"), None),
    }


def check_dependencies(result: ParseResult, also_known: Iterable[str] = ()) -> None:
    """Reject, before anything starts, entries that depend on unknown names or sit on a cycle
    (the cycle is printed). They become errors; the other entries go on."""
    from maestro_runtime.spec.depgraph import find_cycle, unknown_names

    known = {s.base_name for s in result.specs} | {e.hint for e in result.errors if e.hint} | set(also_known)
    bad: dict[int, SpecError] = {}
    by_name = {s.base_name: i for i, s in enumerate(result.specs)}
    graph = {s.base_name: dict(s.depends_on) for s in result.specs if s.depends_on}
    for name, missing in unknown_names(graph, known).items():
        spec = result.specs[by_name[name]]
        bad[by_name[name]] = SpecError(spec.origin, "depends_on", f"unknown service {missing[0]!r} "
                                       f"(known: {', '.join(sorted(known)) or 'none'})", hint=name)
        graph.pop(name)
    while cycle := find_cycle(graph):
        path = " -> ".join(cycle)
        for name in set(cycle):
            spec = result.specs[by_name[name]]
            bad[by_name[name]] = SpecError(spec.origin, "depends_on", f"dependency cycle: {path}", hint=name)
            graph.pop(name, None)
    if bad:
        result.errors += [bad[i] for i in sorted(bad)]
        result.specs = [s for i, s in enumerate(result.specs) if i not in bad]
