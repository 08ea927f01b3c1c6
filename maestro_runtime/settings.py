"""Runtime settings: the only module that reads ``os.environ``.

The environment is read once, into a frozen :class:`Settings` holding typed
sub-settings (fetch, build, sandbox); each sub-setting is parsed by one
function. Everything else receives a :class:`Settings` (and, for spec parsing,
the environment mapping it carries), so tests can relocate every path.

Bad values are collected and raised together as one :class:`SettingsError`
naming every bad variable with the form it accepts. The sandbox's settings are
the exception: a bad one is a warning (``SandboxSettings.problems``) and falls
back to a safe default, reported at boot.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.sandbox.cgroups import Limits
from maestro_runtime.sources.extract import Caps
from maestro_runtime.spec.sizes import parse_size

LOG_LEVELS = ("debug", "info", "warn", "error")
PRESEEDED_MODES = ("auto", "always", "never")
SANDBOX_MODES = ("auto", "require", "off")
NET_POLICIES = ("deny", "allow")
TRUTHY = ("1", "true", "yes")
# Variables a build gets from the operator's environment (package indexes, proxies, certificates).
BUILD_PASS_PREFIXES = ("PIP_", "npm_config_", "NPM_CONFIG_", "UV_", "COREPACK_")
BUILD_PASS_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                   "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
BUILD_NEVER_PASS = frozenset({"PIP_INSTALL_OPTIONS", "NPM_INSTALL_OPTIONS"})


class SettingsError(ValueError):
    """One or more bad settings; ``problems`` names each with the form it accepts."""

    def __init__(self, problems: list[str]):
        self.problems = tuple(problems)
        super().__init__("; ".join(problems))


def truthy(raw: str | None) -> bool:
    """The one reading of an on/off variable: 1, true or yes (any case) mean on."""
    return (raw or "").strip().lower() in TRUTHY


def inherited_environ(*, drop_prefix: str = "") -> dict[str, str]:
    """This process's environment (minus ``drop_prefix`` variables), for a child that inherits it."""
    return {k: v for k, v in os.environ.items() if not (drop_prefix and k.startswith(drop_prefix))}


def _number(env: Mapping[str, str], key: str, default, problems: list[str], parse: Callable = int):
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
        max_bytes=_number(env, "MAESTRO_FETCH_MAX_BYTES", d.max_bytes, problems),
        connect_timeout=_number(env, "MAESTRO_FETCH_CONNECT_TIMEOUT", d.connect_timeout, problems, float),
        read_timeout=_number(env, "MAESTRO_FETCH_READ_TIMEOUT", d.read_timeout, problems, float),
        retries=max(0, _number(env, "MAESTRO_FETCH_RETRIES", d.retries, problems)),
        backoff=_number(env, "MAESTRO_FETCH_BACKOFF", d.backoff, problems, float),
        git_timeout=_number(env, "MAESTRO_GIT_TIMEOUT", d.git_timeout, problems, float),
        caps=Caps(max_files=_number(env, "MAESTRO_EXTRACT_MAX_FILES", d.caps.max_files, problems),
                  max_bytes=_number(env, "MAESTRO_EXTRACT_MAX_BYTES", d.caps.max_bytes, problems)),
        github_api=env.get("MAESTRO_GITHUB_API_URL", d.github_api).rstrip("/"),
        github_codeload=env.get("MAESTRO_GITHUB_CODELOAD_URL", d.github_codeload).rstrip("/"),
        git_base_env=tuple(sorted((k, v) for k, v in env.items() if not k.startswith("GIT_"))),
    )


@dataclass(frozen=True)
class BuildSettings:
    pip_options: tuple[str, ...] = ()  # PIP_INSTALL_OPTIONS
    npm_options: tuple[str, ...] = ()  # NPM_INSTALL_OPTIONS
    include_dev: bool = False  # MAESTRO_NPM_INCLUDE_DEV
    python: str = ""  # MAESTRO_BUILD_PYTHON; empty: a system interpreter
    timeout: float = 1800.0  # MAESTRO_BUILD_TIMEOUT (seconds, per command)
    # Registry mirrors and proxies passed from the container to builds, never secrets of ours.
    passthrough: tuple[tuple[str, str], ...] = ()
    operator_pythonpath: str = ""  # the operator's PYTHONPATH (a development checkout), for the wrapper


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
        python=env.get("MAESTRO_BUILD_PYTHON", "").strip(),
        timeout=_number(env, "MAESTRO_BUILD_TIMEOUT", 1800.0, problems, float),
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


def _split_roots(raw: str) -> tuple[Path, ...]:
    """Roots are separated by whitespace, commas or colons."""
    parts = raw.replace(",", " ").replace(":", " ").split()
    return tuple(Path(p) for p in parts)


def _port_range(raw: str, problems: list[str]) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in raw.split("-", 1))
    except ValueError:
        problems.append(f"MAESTRO_PORT_RANGE must look like 8000-8999, got {raw!r}")
        return 8000, 8999
    if not (1 <= low <= high <= 65535):
        problems.append(f"MAESTRO_PORT_RANGE out of bounds: {raw!r}")
        return 8000, 8999
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
    fetch: FetchSettings = field(default_factory=FetchSettings)
    build: BuildSettings = field(default_factory=BuildSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    allowed_users: str = ""  # MAESTRO_ALLOWED_USERS
    allow_system_paths: bool = False  # MAESTRO_ALLOW_SYSTEM_PATHS: local repos under /etc, /root, state...
    local_source_roots: tuple[Path, ...] = ()  # MAESTRO_LOCAL_SOURCE_ROOTS
    term: str | None = None  # TERM, handed to sandboxed commands

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
        problems: list[str] = []
        settings = cls(
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
            port_range=_port_range(env.get("MAESTRO_PORT_RANGE", "8000-8999"), problems),
            log_level=level if level in LOG_LEVELS else "info",
            supervisord_bin=env.get("MAESTRO_SUPERVISORD", "supervisord"),
            startsecs=_number(env, "MAESTRO_STARTSECS", 1, problems),
            startretries=_number(env, "MAESTRO_STARTRETRIES", 3, problems),
            stopwaitsecs=_number(env, "MAESTRO_STOPWAITSECS", 5, problems),
            fetch=fetch_settings(env, problems),
            build=build_settings(env, problems),
            sandbox=sandbox_settings(env),
            allowed_users=env.get("MAESTRO_ALLOWED_USERS", ""),
            allow_system_paths=truthy(env.get("MAESTRO_ALLOW_SYSTEM_PATHS")),
            local_source_roots=tuple(
                Path(r) for r in env.get("MAESTRO_LOCAL_SOURCE_ROOTS", "").replace(",", " ").split()),
            term=env.get("TERM"),
        )
        if problems:
            raise SettingsError(problems)
        return settings
