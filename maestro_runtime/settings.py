"""Runtime settings: the only module that reads ``os.environ``.

Everything else receives a :class:`Settings` (and, for spec parsing, the
environment mapping it carries), so tests can relocate every path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOG_LEVELS = ("debug", "info", "warn", "error")
PRESEEDED_MODES = ("auto", "always", "never")


def _split_roots(raw: str) -> tuple[Path, ...]:
    """Roots are separated by whitespace, commas or colons."""
    parts = raw.replace(",", " ").replace(":", " ").split()
    return tuple(Path(p) for p in parts)


def _port_range(raw: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in raw.split("-", 1))
    except ValueError as exc:
        raise ValueError(f"MAESTRO_PORT_RANGE must look like 8000-8999, got {raw!r}") from exc
    if not (1 <= low <= high <= 65535):
        raise ValueError(f"MAESTRO_PORT_RANGE out of bounds: {raw!r}")
    return low, high


@dataclass(frozen=True)
class Settings:
    environ: Mapping[str, str] = field(repr=False)
    preseeded_roots: tuple[Path, ...]
    preseeded_mode: str
    preseeded_mode_raw: str
    services_file: Path
    services_file_explicit: bool
    supervisor_conf_dir: Path
    runtime_dir: Path
    state_dir: Path
    port_ledger: Path
    projects_dir: Path
    home_root: Path
    accounts_prefix: Path | None  # useradd --prefix, for a read-only /etc (see README)
    port_range: tuple[int, int]
    log_level: str
    supervisord_bin: str
    # How long a service must stay up to count as started, and how often it is retried.
    startsecs: int
    startretries: int
    stopwaitsecs: int

    @property
    def records_dir(self) -> Path:
        """One JSON record per service: what the launcher and list-services read."""
        return self.state_dir / "services"

    @property
    def supervisord_conf(self) -> Path:
        return self.runtime_dir / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.runtime_dir / "control" / "supervisor.sock"

    @property
    def supervisor_url(self) -> str:
        return f"unix://{self.supervisor_socket}"

    @property
    def boot_report(self) -> Path:
        return self.runtime_dir / "boot.json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        state_dir = Path(env.get("MAESTRO_STATE_DIR", "/var/lib/maestro"))
        runtime_dir = Path(env.get("MAESTRO_RUNTIME_DIR", "/run/maestro"))
        level = env.get("ENTRYPOINT_LOG_LEVEL", "info").strip().lower()
        if level == "warning":
            level = "warn"
        mode_raw = env.get("MAESTRO_PRESEEDED_MODE", "auto").strip().lower()
        services_file = env.get("MAESTRO_SERVICES_FILE", "")
        return cls(
            environ=env,
            preseeded_roots=_split_roots(env.get("MAESTRO_PRESEEDED_ROOTS", "/opt/projects")),
            preseeded_mode=mode_raw if mode_raw in PRESEEDED_MODES else "auto",
            preseeded_mode_raw=mode_raw,
            services_file=Path(services_file or "/etc/maestro/services.yml"),
            services_file_explicit=bool(services_file),
            supervisor_conf_dir=Path(env.get("SUPERVISOR_CONF_DIR", "/etc/supervisor/conf.d")),
            runtime_dir=runtime_dir,
            state_dir=state_dir,
            port_ledger=Path(env.get("MAESTRO_PORT_LEDGER", str(state_dir / "ports.json"))),
            projects_dir=Path(env.get("MAESTRO_PROJECTS_DIR", str(state_dir / "projects"))),
            home_root=Path(env.get("MAESTRO_HOME_ROOT", "/home")),
            accounts_prefix=Path(env["MAESTRO_USERADD_PREFIX"]) if env.get("MAESTRO_USERADD_PREFIX") else None,
            port_range=_port_range(env.get("MAESTRO_PORT_RANGE", "8000-8999")),
            log_level=level if level in LOG_LEVELS else "info",
            supervisord_bin=env.get("MAESTRO_SUPERVISORD", "supervisord"),
            startsecs=int(env.get("MAESTRO_STARTSECS", "1")),
            startretries=int(env.get("MAESTRO_STARTRETRIES", "3")),
            stopwaitsecs=int(env.get("MAESTRO_STOPWAITSECS", "5")),
        )


# ---------------------------------------------------------------- operations (issue 13)
# A separate, additive block: restart policy, probes, logs, alerts and metrics defaults.


def _duration(env: Mapping[str, str], key: str, default: str) -> float:
    from maestro_runtime.spec.durations import parse_duration

    raw = env.get(key, default)
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _whole(env: Mapping[str, str], key: str, default: int, low: int = 0) -> int:
    raw = env.get(key, str(default)).strip()
    if not (raw.isascii() and raw.isdigit()) or int(raw) < low:
        raise ValueError(f"{key} must be a whole number >= {low}, got {raw[:20]!r}")
    return int(raw)


@dataclass(frozen=True)
class OpsSettings:
    restart: str  # always | on-failure | never
    backoff_initial: float
    backoff_factor: float
    backoff_max: float
    max_restarts: int  # 0: forever
    health_interval: float
    health_timeout: float
    health_retries: int
    health_start_period: float
    log_max_bytes: int
    log_backups: int
    alert_webhook: str
    alert_secret: str = field(repr=False)
    exit_on_fatal: tuple[str, ...]  # service ids, or ("all",)
    metrics_addr: str  # host:port, "" = off

    @property
    def metrics_bind(self) -> tuple[str, int] | None:
        if not self.metrics_addr:
            return None
        host, _, port = self.metrics_addr.rpartition(":")
        return host or "0.0.0.0", int(port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OpsSettings:
        env = dict(os.environ if environ is None else environ)
        restart = env.get("MAESTRO_RESTART", "always").strip().lower()
        if restart not in ("always", "on-failure", "never"):
            raise ValueError(f"MAESTRO_RESTART must be always, on-failure or never, got {restart[:20]!r}")
        try:
            factor = float(env.get("MAESTRO_BACKOFF_FACTOR", "2"))
        except ValueError:
            factor = 0.0
        if not 1.0 <= factor <= 100.0:
            raise ValueError("MAESTRO_BACKOFF_FACTOR must be a number from 1 to 100")
        metrics = env.get("MAESTRO_METRICS_ADDR", "").strip()
        if metrics and not metrics.rpartition(":")[2].isdigit():
            raise ValueError(f"MAESTRO_METRICS_ADDR must look like 0.0.0.0:9100, got {metrics[:40]!r}")
        webhook = env.get("MAESTRO_ALERT_WEBHOOK", "").strip()
        if webhook and not webhook.startswith(("http://", "https://")):
            raise ValueError("MAESTRO_ALERT_WEBHOOK must be an http:// or https:// URL")
        fatal = tuple(n for n in env.get("MAESTRO_EXIT_ON_FATAL", "").replace(",", " ").split() if n)
        return cls(
            restart=restart,
            backoff_initial=_duration(env, "MAESTRO_BACKOFF_INITIAL", "1s"),
            backoff_factor=factor,
            backoff_max=_duration(env, "MAESTRO_BACKOFF_MAX", "5m"),
            max_restarts=_whole(env, "MAESTRO_MAX_RESTARTS", _whole(env, "MAESTRO_STARTRETRIES", 3)),
            health_interval=_duration(env, "MAESTRO_HEALTH_INTERVAL", "10s"),
            health_timeout=_duration(env, "MAESTRO_HEALTH_TIMEOUT", "3s"),
            health_retries=_whole(env, "MAESTRO_HEALTH_RETRIES", 3, low=1),
            health_start_period=_duration(env, "MAESTRO_HEALTH_START_PERIOD", "20s"),
            log_max_bytes=_whole(env, "MAESTRO_LOG_MAX_BYTES", 10 * 1024 * 1024, low=1024),
            log_backups=_whole(env, "MAESTRO_LOG_BACKUPS", 3, low=1),
            alert_webhook=webhook,
            alert_secret=env.get("MAESTRO_ALERT_SECRET", ""),
            exit_on_fatal=fatal,
            metrics_addr=metrics,
        )
