"""Sub-settings, one parser each: fetch, build, sandbox and operations (restart, probes, logs, alerts)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from maestro_runtime.sandbox.cgroups import Limits
from maestro_runtime.sources.extract import Caps
from maestro_runtime.spec.sizes import parse_size

if TYPE_CHECKING:
    from maestro_runtime.settings import Settings

LOG_LEVELS = ("debug", "info", "warn", "error")
PRESEEDED_MODES = ("auto", "always", "never")
SANDBOX_MODES = ("auto", "require", "off")  # sandbox.MODES (not imported: it is a heavy module)
NET_POLICIES = ("deny", "allow")  # netpolicy.DENY, netpolicy.ALLOW
BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
TRUTHY = tuple(word for word, on in BOOLEANS.items() if on)
# Variables a build gets from the operator's environment (package indexes, proxies, certificates).
BUILD_PASS_PREFIXES = ("PIP_", "npm_config_", "NPM_CONFIG_", "UV_", "COREPACK_")
BUILD_PASS_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                   "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
BUILD_NEVER_PASS = frozenset({"PIP_INSTALL_OPTIONS", "NPM_INSTALL_OPTIONS"})
# Memory one build may take beside the services already running: two Node builds at once, with
# nine sample apps running, overflowed the README's 1 GiB hardened container (exit 137).
BUILD_MEMORY = 1 << 30


class SettingsError(ValueError):
    """Every bad setting at once, one line each: ``KEY='value': expected <accepted form>``."""

    def __init__(self, problems: list[str]):
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


def truthy(raw: str | None) -> bool:
    """The one reading of an on/off variable: 1, true or yes (any case) mean on."""
    return (raw or "").strip().lower() in TRUTHY


def inherited_environ(*, drop_prefix: str = "") -> dict[str, str]:
    """This process's environment (minus ``drop_prefix`` variables), for a child that inherits it."""
    return {k: v for k, v in os.environ.items() if not (drop_prefix and k.startswith(drop_prefix))}


def _value(env: Mapping[str, str], key: str, default, problems: list[str], parse: Callable = int):
    raw = env.get(key, "").strip()
    try:
        return parse(raw) if raw else default
    except ValueError:
        kind = "an integer" if parse is int else "a number"
        problems.append(f"{key} must be {kind}, got {raw[:30]!r}")
        return default


@dataclass(frozen=True)
class FetchSettings:
    """Fetch knobs (``sources.fetch`` uses this class itself, as ``FetchOptions``)."""

    token: str | None = None  # MAESTRO_GIT_TOKEN: GitHub and any https git server
    github_token: str | None = None  # MAESTRO_GIT_TOKEN or GITHUB_TOKEN: github.com only
    max_bytes: int = 1024**3  # MAESTRO_FETCH_MAX_BYTES: download size cap
    connect_timeout: float = 10.0  # MAESTRO_FETCH_CONNECT_TIMEOUT
    read_timeout: float = 60.0  # MAESTRO_FETCH_READ_TIMEOUT
    retries: int = 3  # MAESTRO_FETCH_RETRIES: extra attempts on transient errors
    backoff: float = 1.0  # MAESTRO_FETCH_BACKOFF: first wait, doubled each retry
    git_timeout: float = 600.0  # MAESTRO_GIT_TIMEOUT
    caps: Caps = field(default_factory=Caps)  # MAESTRO_EXTRACT_MAX_FILES / MAESTRO_EXTRACT_MAX_BYTES
    github_api: str = "https://api.github.com"  # MAESTRO_GITHUB_API_URL (GitHub Enterprise, tests)
    github_codeload: str = "https://codeload.github.com"  # MAESTRO_GITHUB_CODELOAD_URL
    progress_bytes: int = 8 * 1024**2  # a progress line every this many bytes
    # The environment git runs in: HOME (ssh keys, known_hosts) and proxies, never GIT_* steering.
    # None: this process's own.
    git_base_env: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None) -> FetchSettings:
        return cls() if settings is None else settings.fetch

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.github_token) if s]


def fetch_settings(env: Mapping[str, str], problems: list[str]) -> FetchSettings:
    token = env.get("MAESTRO_GIT_TOKEN", "").strip() or None
    d = FetchSettings()
    return FetchSettings(
        token=token,
        github_token=token or env.get("GITHUB_TOKEN", "").strip() or None,
        max_bytes=_value(env, "MAESTRO_FETCH_MAX_BYTES", d.max_bytes, problems),
        connect_timeout=_value(env, "MAESTRO_FETCH_CONNECT_TIMEOUT", d.connect_timeout, problems, float),
        read_timeout=_value(env, "MAESTRO_FETCH_READ_TIMEOUT", d.read_timeout, problems, float),
        retries=max(0, _value(env, "MAESTRO_FETCH_RETRIES", d.retries, problems)),
        backoff=_value(env, "MAESTRO_FETCH_BACKOFF", d.backoff, problems, float),
        git_timeout=_value(env, "MAESTRO_GIT_TIMEOUT", d.git_timeout, problems, float),
        caps=Caps(max_files=_value(env, "MAESTRO_EXTRACT_MAX_FILES", d.caps.max_files, problems),
                  max_bytes=_value(env, "MAESTRO_EXTRACT_MAX_BYTES", d.caps.max_bytes, problems)),
        github_api=env.get("MAESTRO_GITHUB_API_URL", d.github_api).rstrip("/"),
        github_codeload=env.get("MAESTRO_GITHUB_CODELOAD_URL", d.github_codeload).rstrip("/"),
        git_base_env=tuple(sorted((k, v) for k, v in env.items() if not k.startswith("GIT_"))),
    )


@dataclass(frozen=True)
class BuildSettings:
    pip_options: tuple[str, ...] = ()  # PIP_INSTALL_OPTIONS
    npm_options: tuple[str, ...] = ()  # NPM_INSTALL_OPTIONS
    include_dev: bool = False  # MAESTRO_NPM_INCLUDE_DEV
    python: str = ""  # MAESTRO_BUILD_PYTHON; empty: chosen by what the project asks for
    extra_pythons: tuple[str, ...] = ()  # MAESTRO_PYTHONS: more interpreters to choose among
    installer: str = "auto"  # MAESTRO_PYTHON_INSTALLER: auto | uv | pip
    uv: str = ""  # MAESTRO_UV: the uv binary (empty: the uv package's own)
    timeout: float = 1800.0  # MAESTRO_BUILD_TIMEOUT (seconds, per command)
    # Where the exact Python a project pins is installed from (uv python install); empty: never.
    python_install_mirror: str = ""  # MAESTRO_PYTHON_INSTALL_MIRROR (uv's UV_PYTHON_INSTALL_MIRROR)
    python_downloads_json: str = ""  # MAESTRO_PYTHON_DOWNLOADS_JSON_URL (uv's UV_PYTHON_DOWNLOADS_JSON_URL)
    python_install_dir: str = "/usr/local/lib/maestro/python"  # MAESTRO_PYTHON_INSTALL_DIR (root's, shared)
    python_install_timeout: float = 180.0  # MAESTRO_PYTHON_INSTALL_TIMEOUT (seconds, per install)
    # Registry mirrors and proxies passed from the container to builds, never secrets of ours.
    passthrough: tuple[tuple[str, str], ...] = ()
    operator_pythonpath: str = ""  # the operator's PYTHONPATH (a development checkout), for the wrapper
    project_dotenv: bool = True  # MAESTRO_PROJECT_DOTENV: a project's own .env reaches its processes


def build_settings(env: Mapping[str, str], problems: list[str]) -> BuildSettings:
    options = {}
    for key in ("PIP_INSTALL_OPTIONS", "NPM_INSTALL_OPTIONS"):
        try:
            options[key] = tuple(shlex.split(env.get(key, "")))
        except ValueError as exc:
            problems.append(f"{key} must be shell words (quotes closed), got {env[key][:30]!r}: {exc}")
            options[key] = ()
    return BuildSettings(
        pip_options=options["PIP_INSTALL_OPTIONS"],
        npm_options=options["NPM_INSTALL_OPTIONS"],
        include_dev=truthy(env.get("MAESTRO_NPM_INCLUDE_DEV")),
        project_dotenv=env.get("MAESTRO_PROJECT_DOTENV", "1").strip().lower() not in ("0", "false", "no", "off"),
        python=env.get("MAESTRO_BUILD_PYTHON", "").strip(),
        extra_pythons=tuple(env.get("MAESTRO_PYTHONS", "").replace(":", " ").split()),
        installer=env.get("MAESTRO_PYTHON_INSTALLER", "").strip().lower() or "auto",
        uv=env.get("MAESTRO_UV", "").strip(),
        timeout=_value(env, "MAESTRO_BUILD_TIMEOUT", 1800.0, problems, float),
        python_install_mirror=env.get("MAESTRO_PYTHON_INSTALL_MIRROR", "").strip().rstrip("/"),
        python_downloads_json=env.get("MAESTRO_PYTHON_DOWNLOADS_JSON_URL", "").strip(),
        python_install_dir=env.get("MAESTRO_PYTHON_INSTALL_DIR", "").strip() or BuildSettings.python_install_dir,
        python_install_timeout=_value(env, "MAESTRO_PYTHON_INSTALL_TIMEOUT", 180.0, problems, float),
        passthrough=tuple(sorted(
            (k, v) for k, v in env.items()
            if (k.startswith(BUILD_PASS_PREFIXES) or k in BUILD_PASS_KEYS) and k not in BUILD_NEVER_PASS
        )),
        operator_pythonpath=env.get("PYTHONPATH", ""),
    )


@dataclass(frozen=True)
class SandboxSettings:
    mode: str = "auto"  # MAESTRO_SANDBOX_MODE
    limits: Limits = field(default_factory=Limits)  # MAESTRO_SANDBOX_MEMORY, _CPU_QUOTA_US, _CPU_PERIOD_US, _PIDS_MAX
    cgroup_root: Path | None = None  # MAESTRO_CGROUP_ROOT
    net_policy: str = "deny"  # MAESTRO_SANDBOX_NET_POLICY
    net_allow_file: Path = Path("/etc/maestro/sandbox-net-allow")  # MAESTRO_SANDBOX_NET_ALLOW_FILE
    firewall_disabled: bool = False  # MAESTRO_FIREWALL_DISABLE
    problems: tuple[str, ...] = ()  # bad values: warned about at boot, a safe default used


def sandbox_settings(env: Mapping[str, str]) -> SandboxSettings:
    problems: list[str] = []
    mode = env.get("MAESTRO_SANDBOX_MODE", "auto").strip().lower() or "auto"
    if mode not in SANDBOX_MODES:
        problems.append(f"MAESTRO_SANDBOX_MODE={mode[:20]!r} is not one of {', '.join(SANDBOX_MODES)}; "
                        "using 'require' (fail closed)")
        mode = "require"
    defaults = Limits()

    def number(key: str, fallback: int | None, parse=int) -> int | None:
        raw = env.get(key, "").strip()
        if not raw:
            return fallback
        try:
            if parse is int and raw.lower() == "max":
                return None
            value = parse(raw)
            if value is not None and value <= 0:
                raise ValueError("must be positive")
            return value
        except ValueError as exc:
            problems.append(f"{key}={raw[:20]!r} ignored ({exc}); using the default")
            return fallback

    period = number("MAESTRO_SANDBOX_CPU_PERIOD_US", defaults.cpu_period_us)
    limits = Limits(
        memory=number("MAESTRO_SANDBOX_MEMORY", defaults.memory, parse_size),
        cpu_quota_us=number("MAESTRO_SANDBOX_CPU_QUOTA_US", None),
        cpu_period_us=period or defaults.cpu_period_us,
        pids_max=number("MAESTRO_SANDBOX_PIDS_MAX", defaults.pids_max),
    )
    net = env.get("MAESTRO_SANDBOX_NET_POLICY", "deny").strip().lower() or "deny"
    if net not in NET_POLICIES:
        problems.append(f"MAESTRO_SANDBOX_NET_POLICY={net[:20]!r} is not deny or allow; using deny")
        net = "deny"
    root = env.get("MAESTRO_CGROUP_ROOT", "").strip()
    return SandboxSettings(
        mode=mode, limits=limits, cgroup_root=Path(root) if root else None, net_policy=net,
        net_allow_file=Path(env.get("MAESTRO_SANDBOX_NET_ALLOW_FILE", "") or "/etc/maestro/sandbox-net-allow"),
        firewall_disabled=truthy(env.get("MAESTRO_FIREWALL_DISABLE")),
        problems=tuple(problems),
    )


# ---------------------------------------------------------------- operations (issue 13)
# A separate, additive block: restart policy, probes, logs, alerts and metrics defaults.


def _duration(env: Mapping[str, str], key: str, default: str) -> float:
    from maestro_runtime.spec.durations import parse_duration

    raw = env.get(key, "").strip() or default  # empty means the default, as for every setting
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _whole_number(env: Mapping[str, str], key: str, default: int, low: int = 0) -> int:
    raw = env.get(key, "").strip() or str(default)
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
        restart = env.get("MAESTRO_RESTART", "").strip().lower() or "always"
        if restart not in ("always", "on-failure", "never"):
            raise ValueError(f"MAESTRO_RESTART must be always, on-failure or never, got {restart[:20]!r}")
        try:
            factor = float(env.get("MAESTRO_BACKOFF_FACTOR", "").strip() or "2")
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
            max_restarts=_whole_number(env, "MAESTRO_MAX_RESTARTS", _whole_number(env, "MAESTRO_STARTRETRIES", 3)),
            health_interval=_duration(env, "MAESTRO_HEALTH_INTERVAL", "10s"),
            health_timeout=_duration(env, "MAESTRO_HEALTH_TIMEOUT", "3s"),
            health_retries=_whole_number(env, "MAESTRO_HEALTH_RETRIES", 3, low=1),
            health_start_period=_duration(env, "MAESTRO_HEALTH_START_PERIOD", "20s"),
            log_max_bytes=_whole_number(env, "MAESTRO_LOG_MAX_BYTES", 10 * 1024 * 1024, low=1024),
            log_backups=_whole_number(env, "MAESTRO_LOG_BACKUPS", 3, low=1),
            alert_webhook=webhook,
            alert_secret=env.get("MAESTRO_ALERT_SECRET", ""),
            exit_on_fatal=fatal,
            metrics_addr=metrics,
        )


def default_build_jobs(cores: int, memory_limit: int | None) -> tuple[int, int]:
    """(builds, Node builds) at once when MAESTRO_BUILD_JOBS is unset: one build per core, and
    at most one Node build (250-700 MB, against 100-200 MB for pip or uv) per BUILD_MEMORY of
    the container's memory limit (``--memory``); at least one of each."""
    jobs = max(1, cores)
    return jobs, max(1, jobs if memory_limit is None else min(jobs, memory_limit // BUILD_MEMORY))
