"""What list-services adds for tasks, dependencies and branch workspaces."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from maestro_runtime.ops.inventory import ServiceView
from maestro_runtime.state.records import ServiceRecord
from maestro_runtime.tasks.state import RUNNING, WAITING, Phase


def git_cell(git: dict[str, Any] | None) -> str:
    """``Δ3 ↑2 ↓0 feat/x`` (changed files, commits ahead, behind), ``+2`` for commits made in the run."""
    if not git:
        return "-"
    text = f"Δ{git['changed']} ↑{git['ahead']} ↓{git['behind']} {git['branch']}"
    return text + (f" +{git['commits_made']}" if git.get("commits_made") else "")


def task_json(phase: Phase | None) -> dict[str, Any]:
    if phase is None:
        return {"phase": "pending", "exit_code": None, "started": None, "ended": None, "duration": None,
                "reason": None, "runs": 0, "commits_made": None}
    return {"phase": phase.phase, "exit_code": phase.exit_code, "started": phase.started, "ended": phase.ended,
            "duration": None if phase.duration is None else round(phase.duration, 3),
            "reason": phase.reason, "runs": phase.runs, "commits_made": phase.commits}


def status_text(view: ServiceView, phase: Phase | None, role: str) -> str:
    """A task shows its phase (``failed (3)``); an entry held by its dependencies ``waiting: db healthy``."""
    if phase is None or view.status in ("FAILED", "unknown"):
        return view.status
    if phase.phase == WAITING and phase.reason:
        return phase.reason
    if role != "task":
        return f"failed: {phase.reason}" if phase.phase == "failed" and phase.reason else view.status
    text = phase.phase
    if phase.exit_code is not None and phase.phase != "succeeded":
        text += f" ({phase.exit_code})"
    elif phase.phase == "failed" and phase.reason:  # no exit code to show: why, as a service's says
        text += f": {phase.reason}"
    return text


def git_json(record: ServiceRecord, phase: Phase | None, jail=None) -> dict[str, Any] | None:
    from pathlib import Path

    from maestro_runtime.tasks import workspace as ws

    if not record.workspace or not record.directory:
        return None
    store, branch = Path(record.workspace.get("store", "")), record.workspace.get("branch", "")
    upstream = ws.branch_tip(store, branch) if store.is_dir() else None
    jail = jail or ws.no_jail
    status = ws.status(record.uid, record.gid, record.home, record.directory, upstream, store=store,
                       base=record.workspace.get("base"), jail=jail)
    if status is None:
        return {"branch": branch, "changed": 0, "ahead": 0, "behind": 0, "last_commit": None,
                "commits_made": None, "error": "workspace unreadable"}
    made = phase.commits if phase else None
    if phase and phase.phase == RUNNING and phase.start_commit:  # live count during the run
        made = ws.commits_since(record.uid, record.gid, record.home, record.directory, phase.start_commit, jail)
    return {"branch": status.branch, "changed": status.changed, "ahead": status.ahead, "behind": status.behind,
            "last_commit": status.last_commit, "head": status.head, "upstream": upstream,
            "commits_made": made if record.role == "task" else None}


def enrich(views: list[ServiceView], records: list[ServiceRecord], phases: dict[str, Phase],
           jail=None, *, git: bool = True) -> list[ServiceView]:
    """``jail``: where git reads a workspace (``workspace.sandbox_jail``); None: unconfined (tests).
    ``git=False``: no workspace is read (``list-services --ready`` shows none)."""
    from concurrent.futures import ThreadPoolExecutor

    by_id = {r.id: r for r in records}
    reading = [r for r in records if git and r.ready and r.workspace and r.directory]
    # All at once: a hostile checkout holds its reads for GIT_TIMEOUT, and N of them must not cost N times that.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(reading)))) as pool:
        gits = dict(zip([r.id for r in reading],
                        pool.map(lambda r: git_json(r, phases.get(r.id), jail), reading), strict=True))
    out = []
    for v in views:
        r = by_id.get(v.name)
        if r is None:
            out.append(v)
            continue
        phase = phases.get(r.id)
        out.append(replace(
            v, role=r.role, depends_on=dict(r.depends_on) or None,
            task={**task_json(phase), "schedule": r.schedule} if r.role == "task" else None,
            git=gits.get(r.id),
            status=status_text(v, phase, r.role),
        ))
    return out


def matches(view: ServiceView, kind: str | None, state: str | None) -> bool:
    """``--kind task|service`` and ``--state`` (a supervisord state or a task phase, any case)."""
    if kind and view.role != kind:
        return False
    if state:
        wanted = state.lower()
        phase = (view.task or {}).get("phase")
        return wanted in (view.status.lower(), str(phase).lower()) or view.status.lower().startswith(wanted)
    return True


def stamp(seconds: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds)) if seconds else "-"
