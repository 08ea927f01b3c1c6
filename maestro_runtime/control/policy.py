"""A service's effective restart and probe policy: its record, with the env defaults filled in (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from maestro_runtime.control.backoff import Backoff
from maestro_runtime.settings import OpsSettings

STABLE_AFTER = 60.0  # a run this long resets the backoff: the next crash starts again at `initial`


@dataclass(frozen=True)
class Probe:
    kind: str  # http | tcp | exec
    path: str
    expect: int | None
    command: str | None
    interval: float
    timeout: float
    retries: int
    start_period: float


@dataclass(frozen=True)
class Policy:
    restart: str  # always | on-failure | never
    backoff: Backoff
    max_restarts: int  # 0: forever
    restart_on_unhealthy: bool
    essential: bool
    probe: Probe | None  # None: nothing to probe (no port and no exec)
    # A web program: it must keep running and listen on its port. A clean exit within `startsecs`
    # of its start is a failed start (FATAL), not a success to restart silently (supervision.py).
    listens: bool = False
    startsecs: float = 1.0

    def should_restart(self, exit_code: int | None, expected: bool) -> bool:
        """``expected``: the exit code is a clean one (0) and no signal ended it."""
        if self.restart == "never":
            return False
        return self.restart == "always" or not expected

    def gives_up(self, attempts: int) -> bool:
        return self.max_restarts > 0 and attempts >= self.max_restarts


def resolve(record: Any, ops: OpsSettings, startsecs: float = 1.0) -> Policy:
    """``record`` is a ServiceRecord (or anything with .policy, .health, .port, .id); ``startsecs``:
    MAESTRO_STARTSECS, how long a run lasts before it counts as started."""
    raw: Mapping[str, Any] = record.policy or {}
    backoff: Mapping[str, Any] = raw.get("backoff") or {}
    health: Mapping[str, Any] = record.health or {}
    kind = str(health.get("kind", "http"))
    probe = None
    if (kind == "exec" and health.get("command")) or (kind in ("http", "tcp") and record.port):
        probe = Probe(
            kind=kind, path=str(health.get("path", "/")), expect=health.get("expect"),
            command=health.get("command"),
            interval=float(health.get("interval", ops.health_interval)),
            timeout=float(health.get("timeout", ops.health_timeout)),
            retries=int(health.get("retries", ops.health_retries)),
            start_period=float(health.get("start_period", ops.health_start_period)),
        )
    essential = bool(raw.get("essential")) or "all" in ops.exit_on_fatal or record.id in ops.exit_on_fatal
    return Policy(
        restart=str(raw.get("restart", ops.restart)),
        backoff=Backoff(
            initial=float(backoff.get("initial", ops.backoff_initial)),
            factor=float(backoff.get("factor", ops.backoff_factor)),
            max=float(backoff.get("max", ops.backoff_max)),
        ),
        max_restarts=int(raw.get("max_restarts", ops.max_restarts)),
        restart_on_unhealthy=bool(raw.get("restart_on_unhealthy")),
        essential=essential,
        probe=probe,
        listens=bool(record.port) and getattr(record, "role", "service") != "task",
        startsecs=float(startsecs),
    )


def for_process_type(service: Policy) -> Policy:
    """A Procfile process type (worker, clock...) of a service: its restart policy and essential flag,
    no probe (the service's port is its web program's) and nothing it must listen on."""
    return replace(service, probe=None, listens=False)
