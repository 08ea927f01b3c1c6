"""What the controller knows about each service, kept across container restarts (stdlib only).

``<state dir>/runstate/<id>.json``: one file per service, written atomically by the
controller only, and only when something changed (restart count, last exit, health).
``<id>.stopped``: the operator's ``maestro stop``, written by the CLI; its own file so
the two writers never race on one file. ``status.json``: the controller's heartbeat
and its last CPU/RSS sample of every service, read by list-services and HEALTHCHECK.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from maestro_runtime.state.records import atomic_write

RUNNING, BACKOFF, FATAL, EXITED, STOPPED = "RUNNING", "BACKOFF", "FATAL", "EXITED", "STOPPED"
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")


@dataclass(frozen=True)
class RunState:
    phase: str = ""  # the controller's verdict: RUNNING BACKOFF FATAL EXITED STOPPED ("" = not seen yet)
    attempts: int = 0  # restarts in a row since the last stable run (what max_restarts counts)
    restarts: int = 0  # restarts ever, kept across container restarts
    last_exit_code: int | None = None
    last_exit_signal: str | None = None  # SIGKILL...: the signal that ended the last run
    last_exit_at: float | None = None
    last_start: float | None = None
    handled_start: float = 0.0  # supervisord's start time of the run whose end was handled
    next_restart_at: float | None = None
    health: str = ""  # starting | healthy | unhealthy ("" = not probed)
    health_fails: int = 0
    health_detail: str = ""
    health_since: float | None = None
    health_alerted: bool = False  # an "unhealthy" event went out and no "recovered" yet
    fatal_reason: str = ""  # why the controller gave up (FATAL), in words for list-services

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


ENDED_STATES = frozenset({"EXITED", "FATAL"})


def describe_exit(state: RunState) -> str:
    if state.last_exit_code is None:
        return "could not start"
    if state.last_exit_code < 0:
        return f"killed by {state.last_exit_signal}" if state.last_exit_signal else "killed by a signal"
    return f"exit {state.last_exit_code}"


def display_state(state: RunState, supervisor_state: str) -> str:
    """What list-services shows: the controller's verdict where supervisord's own is too coarse."""
    if supervisor_state in ENDED_STATES | {"STOPPED"} and state.phase in (BACKOFF, FATAL, EXITED, STOPPED):
        return state.phase
    return supervisor_state


class RunStateStore:
    def __init__(self, state_dir: Path):
        self.folder = state_dir / "runstate"

    def _path(self, service_id: str, suffix: str) -> Path:
        if not _ID_RE.match(service_id):
            raise ValueError(f"service id {service_id!r} is not valid")
        return self.folder / f"{service_id}{suffix}"

    def load(self, service_id: str) -> RunState:
        try:
            return RunState.from_dict(json.loads(self._path(service_id, ".json").read_text()))
        except (OSError, ValueError, TypeError):
            return RunState()

    def save(self, service_id: str, state: RunState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self._path(service_id, ".json"), json.dumps(state.to_dict(), sort_keys=True))

    def forget(self, service_id: str) -> None:
        for suffix in (".json", ".stopped"):
            self._path(service_id, suffix).unlink(missing_ok=True)

    # the operator's intent
    def stopped(self, service_id: str) -> bool:
        return self._path(service_id, ".stopped").exists()

    def set_stopped(self, service_id: str, stopped: bool) -> None:
        path = self._path(service_id, ".stopped")
        if stopped:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(path, "stopped by the operator (maestro stop); maestro start clears it\n")
        else:
            path.unlink(missing_ok=True)

    # the controller's heartbeat and samples
    @property
    def status_path(self) -> Path:
        return self.folder / "status.json"

    def save_status(self, status: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.status_path, json.dumps(status, sort_keys=True))

    def load_status(self) -> dict[str, Any]:
        try:
            data = json.loads(self.status_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}
