"""What ``list-services`` shows: records joined with supervisord's live process state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from maestro_runtime.sources.redact import redact
from maestro_runtime.state.records import ServiceRecord

# The stable JSON keys (documented in the README); new keys may be added, none removed.
JSON_KEYS = (
    "name", "status", "pid", "uptime", "user", "port", "directory", "command",
    "command_reason", "source", "ref", "kind", "error", "sandbox", "degraded", "env_keys",
    "role", "depends_on", "task", "git",  # issue 14 (tasks/view.py)
)


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

    def as_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in JSON_KEYS}


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


def build_views(records: list[ServiceRecord], processes: dict[str, dict[str, Any]] | None) -> list[ServiceView]:
    now = time.time()
    up = processes is not None
    from maestro_runtime.ops.processes import process_records

    # A service's other Procfile types follow it, as their own rows.
    return [view(x, (processes or {}).get(x.id), now, up)
            for r in records for x in (r, *process_records(r))]


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


def format_table(views: list[ServiceView], width: int = 48) -> str:
    def clip(text: str) -> str:
        text = text.replace("\n", " ⏎ ")
        return text if len(text) <= width else text[: width - 1] + "…"

    header = ("NAME", "STATUS", "PID", "UPTIME", "USER", "PORT", "COMMAND", "WHY", "SOURCE")
    rows = [header] + [
        (v.name, v.status, str(v.pid or "-"), format_uptime(v.uptime), v.user, str(v.port or "-"),
         clip(v.command or "-"), v.command_reason or "-", clip(v.source))
        for v in views
    ]
    if any(v.git for v in views):  # branch workspaces: Δ changed files, ↑ ahead, ↓ behind upstream
        from maestro_runtime.tasks.view import git_cell

        header = (*header, "GIT")
        rows = [header] + [(*row, git_cell(v.git)) for row, v in zip(rows[1:], views, strict=True)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for v in views:
        if v.error:
            lines.append(f"! {v.name}: {v.error}")
        lines.extend(f"~ {v.name}: not enforced: {reason}" for reason in v.degraded)
        if v.env_keys:
            lines.append(f"= {v.name}: env {' '.join(v.env_keys)}")
    return "\n".join(lines)
