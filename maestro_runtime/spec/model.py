"""What the user asked for: the spec value objects and the one error type (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.spec.naming import name_from_repo, sanitize_name

# Blank: the repository's own default branch (GitHub: the archive of HEAD; git: the remote HEAD).
DEFAULT_REF = ""


class SpecError(Exception):
    """A bad value in one spec: names where it came from and which field."""

    def __init__(self, origin: str, field_name: str, message: str, hint: str = ""):
        super().__init__(f"{origin}: {field_name}: {message}")
        self.origin = origin
        self.field = field_name
        self.message = message
        self.hint = hint  # the name the service would have had, so list-services can show it failed


@dataclass(frozen=True)
class Health:
    kind: str = "http"  # "http", "tcp" or "exec"
    path: str = "/"
    expect: int | None = None  # HTTP status wanted; None: any answer below 500
    command: str | None = None  # exec: run in the service's sandbox as its user
    # None: the MAESTRO_HEALTH_* default
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None

    def as_record(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Backoff:
    """None: the MAESTRO_BACKOFF_* default."""

    initial: float | None = None
    factor: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class RestartPolicy:
    restart: str | None = None  # always | on-failure | never; None: MAESTRO_RESTART
    backoff: Backoff = field(default_factory=Backoff)
    max_restarts: int | None = None  # 0: forever; None: MAESTRO_MAX_RESTARTS
    restart_on_unhealthy: bool = False
    essential: bool = False

    def as_record(self) -> dict[str, object]:
        out: dict[str, object] = {"restart_on_unhealthy": self.restart_on_unhealthy, "essential": self.essential}
        if self.restart is not None:
            out["restart"] = self.restart
        if self.max_restarts is not None:
            out["max_restarts"] = self.max_restarts
        backoff = {k: v for k, v in self.backoff.__dict__.items() if v is not None}
        if backoff:
            out["backoff"] = backoff
        return out


@dataclass(frozen=True)
class Limits:
    """Per-service overrides of the sandbox limits; None means the global default."""

    memory: str | None = None  # canonical size (spec.sizes): "512M", "1G", "max"
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    pids_max: int | None = None

    def overrides(self) -> dict[str, str | int]:
        """What the record keeps (``record.limits``); ``cgroups.resolve_limits`` reads it back."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ServiceSpec:
    origin: str  # human-readable place it came from, used in every error
    kind: str  # "preseeded" | "file" | "env" | "deploy"
    repo: str | None = None  # source; None for a pre-seeded folder used in place
    directory: Path | None = None  # pre-seeded folder
    port: int | None = None  # None: pick one
    ref: str = DEFAULT_REF
    name: str | None = None
    user: str | None = None
    cmd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    autostart: bool = True
    sha256: str | None = None
    keep: tuple[str, ...] = ("data",)
    allow_hosts: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    release: str | None = None  # runs after each build, before the new version starts (Procfile release:)
    processes: Mapping[str, str] = field(default_factory=dict)  # type -> command (Procfile worker: ...)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    allow_system_path: bool = False  # the operator's say-so for a repo like /etc (deploy --allow-system-path)
    # Issue 14: one-shot tasks, schedules, dependencies, branch workspaces (see spec/tasks.py).
    role: str = "service"  # "service" | "task" (YAML ``kind:``, SVC_<i>_KIND, deploy --task)
    schedule: str | None = None  # cron expression (tasks only)
    catch_up: bool = False  # run once for a schedule slot missed while the container was down
    depends_on: Mapping[str, str] = field(default_factory=dict)  # name -> started|healthy|completed
    workspace: bool | None = None  # a writable git checkout; None: yes for a task on a git source

    @property
    def base_name(self) -> str:
        """The sanitised name the program id starts from."""
        if self.name:
            return sanitize_name(self.name)
        if self.directory is not None:
            return sanitize_name(self.directory.name) or "service"
        return name_from_repo(self.repo or "") or "service"


@dataclass
class ParseResult:
    specs: list[ServiceSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.specs += other.specs
        self.errors += other.errors
        self.warnings += other.warnings
