"""What ``list-services`` shows: records joined with supervisord's live process state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maestro_runtime.sources.redact import redact
from maestro_runtime.state.records import ServiceRecord

STEP_HEADER = "# maestro: "  # sources/buildplan.py's (not imported: its imports would slow list-services)

# The stable JSON keys (documented in the README); new keys may be added, none removed.
# SCHEMA_VERSION counts changes of meaning; each row carries it as "schema".
SCHEMA_VERSION = 2
JSON_KEYS = (
    "name", "status", "pid", "uptime", "user", "port", "directory", "command",
    "command_reason", "source", "ref", "kind", "error", "sandbox", "degraded", "env_keys",
    "role", "depends_on", "task", "git",  # issue 14 (tasks/view.py)
    # schema 2 (rich status)
    "schema", "health", "health_detail", "restarts", "last_exit", "last_exit_code", "last_exit_at",
    "cpu_percent", "cpu_seconds", "memory_rss", "last_activity", "next_restart_in", "operator_stopped",
    "build_seconds", "last_exit_signal", "step",
)
# Attention first: what has given up or fails, then what waits or is unwell, then the rest.
ATTENTION = {"FATAL": 0, "FAILED": 0, "BACKOFF": 1, "PROVISIONING": 1, "EXITED": 2, "unknown": 2, "NOT_LOADED": 2}
PROVISIONING = "PROVISIONING"  # in a boot's list (ops/reconcile.py write_provisioning), no record yet


@dataclass(frozen=True)
class ServiceView:
    name: str
    status: str
    pid: int | None
    uptime: int | None  # seconds
    user: str
    port: int | None
    directory: str
    command: str
    command_reason: str
    source: str
    ref: str | None
    kind: str
    error: str | None
    sandbox: dict[str, Any]
    degraded: list[str]
    env_keys: list[str]  # names only: values (secrets) are never shown
    role: str = "service"  # service | task
    depends_on: dict[str, str] | None = None
    task: dict[str, Any] | None = None  # phase, exit_code, started, ended, duration, reason, commits...
    git: dict[str, Any] | None = None  # branch, changed, ahead, behind, last_commit (branch workspaces)
    health: str | None = None  # starting | healthy | unhealthy; None: not probed
    health_detail: str | None = None
    restarts: int = 0
    last_exit: str | None = None  # "exit 3", "killed by SIGKILL", "could not start"
    last_exit_code: int | None = None
    last_exit_signal: str | None = None  # "SIGKILL" when a signal ended the last run
    last_exit_at: float | None = None
    cpu_percent: float | None = None  # of one core, whole process tree, over the controller's last sample
    cpu_seconds: float | None = None
    memory_rss: int | None = None  # bytes, whole process tree
    last_activity: int | None = None  # seconds since its last output line
    next_restart_in: float | None = None
    operator_stopped: bool = False
    build_seconds: float | None = None
    step: str | None = None  # PROVISIONING rows: what it is doing (provisioning_step)
    schema: int = SCHEMA_VERSION

    def as_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in JSON_KEYS}

    @property
    def ready(self) -> bool:
        """What the runtime's own depends_on waits for (tasks/gate.py): a task that succeeded,
        a service RUNNING whose probe passes (or that has none). A scheduled task is never waited
        for: its next run may be a day away, and one failed run is its alert's, not the container's."""
        if self.role == "task":
            return bool((self.task or {}).get("schedule")) or self.status == "succeeded"
        return self.status == "RUNNING" and self.health in (None, "healthy")

    @property
    def attention(self) -> int:
        if self.health == "unhealthy":
            return 0
        return ATTENTION.get(self.status, 3)


@dataclass(frozen=True)
class Extras:
    """What the controller knows beside supervisord: run state, last sample, last output time."""

    run: Any = None  # control.runstate.RunState
    sample: dict[str, Any] | None = None  # {"cpu_percent", "cpu_seconds", "rss", "pid"}
    last_output: float | None = None
    build_seconds: float | None = None
    operator_stopped: bool = False


def enrich(base: ServiceView, extras: Extras, now: float, startsecs: float = 0) -> ServiceView:
    from dataclasses import replace

    from maestro_runtime.control.runstate import describe_exit, display_state

    run, sample = extras.run, extras.sample or {}
    changes: dict[str, Any] = {"operator_stopped": extras.operator_stopped, "build_seconds": extras.build_seconds}
    if extras.last_output is not None:
        changes["last_activity"] = max(0, int(now - extras.last_output))
    status = base.status
    if status == "RUNNING" and base.uptime is not None and base.uptime < startsecs:
        # supervisord runs programs with startsecs=0 (so every exit keeps its status); a run counts as
        # started, as MAESTRO_STARTSECS says, once it has lasted that long.
        changes["status"] = status = "STARTING"
    if run is not None:
        status = display_state(run, status) if status not in ("FAILED", "unknown") else status
        live = base.pid is not None
        changes.update(
            status=status, restarts=run.restarts, last_exit_code=run.last_exit_code, last_exit_at=run.last_exit_at,
            last_exit_signal=run.last_exit_signal if run.last_exit_at else None,
            last_exit=describe_exit(run) if run.last_exit_at else None,
            health=(run.health or None) if live else None, health_detail=(run.health_detail or None) if live else None,
            next_restart_in=round(max(0.0, run.next_restart_at - now), 1)
            if status == "BACKOFF" and run.next_restart_at else None,
        )
        if status == "FATAL" and run.fatal_reason:  # why the controller gave up, in words, first
            changes["error"] = run.fatal_reason + (f" ({base.error})" if base.error else "")
    if base.pid is not None and sample.get("pid") == base.pid:
        changes.update(cpu_percent=sample.get("cpu_percent"), cpu_seconds=sample.get("cpu_seconds"),
                       memory_rss=sample.get("rss"))
    return replace(base, **changes)


def view(record: ServiceRecord, process: dict[str, Any] | None, now: float, supervisor_up: bool) -> ServiceView:
    """One row. Status: supervisord's state name, FAILED when provisioning failed,
    NOT_LOADED when supervisord does not know it, unknown when supervisord is down."""
    pid = uptime = None
    if not record.ready:
        status = "FAILED"
    elif not supervisor_up:
        status = "unknown"
    elif process is None:
        status = "NOT_LOADED"
    else:
        status = process["statename"]
        if process.get("pid"):
            pid = process["pid"]
            uptime = max(0, int(now - process["start"]))
    error = record.error or (process.get("spawnerr") or None if process else None)
    return ServiceView(
        name=record.id, status=status, pid=pid, uptime=uptime, user=record.user,
        port=record.port or None, directory=record.directory, command=record.command,
        # Redacted again here: a record written by an older version may hold a raw URL.
        command_reason=record.command_reason, source=redact(record.source), ref=record.ref, kind=record.kind,
        error=redact(error) if error else None, sandbox=record.sandbox,
        degraded=record.degraded, env_keys=sorted(record.env),
    )


def programs_of(record: ServiceRecord) -> tuple[ServiceRecord, ...]:
    """The service and one record per Procfile process type (``<id>-worker``...), each a program."""
    if not record.processes:
        return (record,)
    from maestro_runtime.ops.processes import process_records

    return (record, *process_records(record))


def provisioning_step(steps_tail: list[str], modified: float | None, since: object) -> str:
    """What a service being provisioned is doing, from its build's steps file (sources/buildrun.py
    writes ``# maestro: KIND`` before each plan and ``$ COMMAND`` before each step there and in the
    build log; the build's own output reaches only the log, so it cannot fake a step): a file written
    since the boot began names the step it ran last (``node: npm ci``, ``release: ...``);
    otherwise the service is still being fetched (or waits for a build slot)."""
    if modified is None or not isinstance(since, (int, float)) or modified < since:
        return "fetching"
    kind, command = "building", ""
    for line in reversed(steps_tail):
        if not command and line.startswith("$ "):
            command = line[2:]
        elif command and line.startswith(STEP_HEADER):
            kind = line[len(STEP_HEADER):].strip() or kind
            break
    return f"{kind}: {command}" if command else kind


def provisioning_views(listed: object, recorded: set[str], now: float) -> list[ServiceView]:
    """A row per service a running boot is still fetching or building (no record yet): status
    PROVISIONING, uptime = how long the boot has been at it (its ``step`` is the caller's to
    fill: it reads a file, see :func:`provisioning_step`). Anything malformed gives no row."""
    if not isinstance(listed, dict) or not isinstance(listed.get("services"), dict):
        return []
    since = listed.get("since")
    waited = max(0, int(now - since)) if isinstance(since, (int, float)) else None
    views = []
    for name, entry in listed["services"].items():
        if name in recorded or not isinstance(entry, dict):
            continue
        port = entry.get("port")
        views.append(ServiceView(
            name=str(name), status=PROVISIONING, pid=None, uptime=waited, user=str(entry.get("user") or ""),
            port=port if isinstance(port, int) else None, directory="", command="", command_reason="",
            source=redact(str(entry.get("source") or "")), ref=entry.get("ref") or None,
            kind=str(entry.get("kind") or ""), error=None, sandbox={}, degraded=[], env_keys=[]))
    return views


def build_views(records: list[ServiceRecord], processes: dict[str, dict[str, Any]] | None,
                extras: dict[str, Extras] | None = None, startsecs: float = 0) -> list[ServiceView]:
    now = time.time()
    up = processes is not None
    # A service's other Procfile types follow it, as their own rows.
    views = [view(x, (processes or {}).get(x.id), now, up) for r in records for x in programs_of(r)]
    if extras is not None:
        views = [enrich(v, extras.get(v.name) or Extras(), now, startsecs) for v in views]
    return views


def format_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def format_uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def printable(text: str) -> str:
    """``text`` with every control character a space: what a service wrote (its build's output,
    its Procfile) never reaches the operator's terminal as an escape sequence (a title, a
    clipboard write, a cleared screen)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


def format_table(views: list[ServiceView], width: int = 48) -> str:
    def clip(text: str) -> str:
        text = text.replace("\n", " ⏎ ")
        return text if len(text) <= width else text[: width - 1] + "…"

    header = ("NAME", "STATUS", "HEALTH", "RESTARTS", "LAST EXIT", "PID", "UPTIME", "CPU", "RSS", "ACTIVE",
              "USER", "PORT", "COMMAND", "WHY", "SOURCE")
    views = sorted(views, key=lambda v: v.attention)  # stable: the records' order within a rank
    rows = [header] + [
        (v.name, v.status + (f" ({v.next_restart_in:g}s)" if v.next_restart_in is not None else ""),
         v.health or "-", str(v.restarts), v.last_exit or "-", str(v.pid or "-"),
         format_uptime(v.uptime), "-" if v.cpu_percent is None else f"{v.cpu_percent:.0f}%",
         format_bytes(v.memory_rss), format_uptime(v.last_activity) + (" ago" if v.last_activity is not None else ""),
         v.user, str(v.port or "-"), clip(v.command or v.step or "-"), v.command_reason or "-", clip(v.source))
        for v in views
    ]
    if any(v.git for v in views):  # branch workspaces: Δ changed files, ↑ ahead, ↓ behind upstream
        from maestro_runtime.tasks.view import git_cell

        header = (*header, "GIT")
        rows = [header] + [(*row, git_cell(v.git)) for row, v in zip(rows[1:], views, strict=True)]
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for v in views:
        if v.error:  # may quote a build's last lines: one table line each
            lines.extend(printable(line) for line in f"! {v.name}: {v.error}".splitlines())
        lines.extend(printable(f"~ {v.name}: not enforced: {reason}") for reason in v.degraded)
        if v.env_keys:
            lines.append(printable(f"= {v.name}: env {' '.join(v.env_keys)}"))
    return "\n".join(lines)


CONTROLLER_FRESH = 20.0  # seconds: an older status.json means the controller is not there


def gather_extras(state_dir: Path, records: list[ServiceRecord], now: float | None = None) -> dict[str, Extras]:
    """Run states, the controller's last samples (when it is alive) and each log's last write."""
    from maestro_runtime.control.runstate import RunStateStore

    now = time.time() if now is None else now
    store = RunStateStore(state_dir)
    status = store.load_status()
    fresh = now - float(status.get("updated") or 0) < CONTROLLER_FRESH
    samples = status.get("samples", {}) if fresh else {}
    builds = status.get("builds", {})
    logs = state_dir / "logs"
    out = {}
    for service in records:
        stopped = store.stopped(service.id)  # `maestro stop` of a service holds for its process types
        for record in programs_of(service):
            try:
                last_output: float | None = (logs / f"{record.id}.log").stat().st_mtime
            except OSError:
                last_output = None
            out[record.id] = Extras(
                run=store.load(record.id), sample=samples.get(record.id), last_output=last_output,
                build_seconds=builds.get(record.id),
                operator_stopped=stopped or (record is not service and store.stopped(record.id)))
    return out
