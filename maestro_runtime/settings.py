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
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.sandbox.cgroups import Limits
from maestro_runtime.sources.extract import Caps
from maestro_runtime.spec.sizes import parse_size

LOG_LEVELS = ("debug", "info", "warn", "error")
PRESEEDED_MODES = ("auto", "always", "never")
SANDBOX_MODES = ("auto", "require", "off")  # sandbox.MODES (not imported: it is a heavy module)
NET_POLICIES = ("deny", "allow")  # netpolicy.DENY, netpolicy.ALLOW
BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
# What supervisord's INI can hold safely (supervisor.SAFE_PATH_RE): these paths are written into it.
_INI_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)  # cgroups._SIZE

TRUTHY = ("1", "true", "yes")
# Variables a build gets from the operator's environment (package indexes, proxies, certificates).
BUILD_PASS_PREFIXES = ("PIP_", "npm_config_", "NPM_CONFIG_", "UV_", "COREPACK_")
BUILD_PASS_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                   "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
BUILD_NEVER_PASS = frozenset({"PIP_INSTALL_OPTIONS", "NPM_INSTALL_OPTIONS"})


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
        extra_pythons=tuple(env.get("MAESTRO_PYTHONS", "").replace(":", " ").split()),
        installer=env.get("MAESTRO_PYTHON_INSTALLER", "").strip().lower() or "auto",
        uv=env.get("MAESTRO_UV", "").strip(),
        timeout=_value(env, "MAESTRO_BUILD_TIMEOUT", 1800.0, problems, float),
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


def _port_range(raw: str) -> tuple[int, int]:
    low_text, sep, high_text = raw.partition("-")
    if not (sep and low_text.strip().isdigit() and high_text.strip().isdigit()):
        raise ValueError("not two numbers")
    low, high = int(low_text), int(high_text)
    if not (1 <= low <= high <= 65535):
        raise ValueError("out of order or out of bounds")
    return low, high


# ---------------------------------------------------------------- validation (pure)
# Each check takes the stripped, non-empty text and raises ValueError when it is bad; the
# message then names the variable, the value and the accepted form (the second element).
# An empty value means "the default" everywhere, as it always has.


def _whole(minimum: int, *, allow_max: bool = False):
    def check(text: str) -> int | None:
        if allow_max and text.lower() == "max":
            return None
        if not (text.isascii() and text.isdigit()) or int(text) < minimum:
            raise ValueError(text)
        return int(text)
    return check


def _number(*, positive: bool):
    def check(text: str) -> float:
        value = float(text)  # ValueError for words
        if value != value or value in (float("inf"), float("-inf")) or value < 0 or (positive and value == 0):
            raise ValueError(text)
        return value
    return check


def _choice(choices: tuple[str, ...]):
    def check(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(text)
        return text.lower()
    return check


def _size(text: str) -> None:
    if text.lower() in ("max", "none", "unlimited"):
        return
    match = _SIZE.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(text)


def _absolute(*, ini_safe: bool = False):
    def check(text: str) -> None:
        if not text.startswith("/") or (ini_safe and not _INI_SAFE_PATH.match(text)):
            raise ValueError(text)
    return check


def _absolute_list(text: str) -> None:
    if not all(part.startswith("/") for part in text.replace(",", " ").split()):
        raise ValueError(text)


def _shell_words(text: str) -> None:
    shlex.split(text)


def _url(text: str) -> None:
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ValueError(text)


def _ports(text: str) -> None:
    for part in re.split(r"[\s,;]+", text):
        if part and not (part.isdigit() and 1 <= int(part) <= 65535):
            raise ValueError(text)


_WHOLE_0, _WHOLE_1 = "a whole number >= 0", "a whole number >= 1"
_SECONDS = "a number of seconds > 0 (e.g. 600 or 2.5)"
_PATH = "an absolute path"
_INI_PATH = "an absolute path of letters, digits and . _ / + - only (supervisord's config holds it)"
_BOOL = "1, 0, true, false, yes or no"

# Every setting the runtime reads whose value has a form (free text such as tokens and
# SERVICES has its own parser, which names the entry and the field).
RULES: tuple[tuple[str, str, object], ...] = (
    ("ENTRYPOINT_LOG_LEVEL", "debug, info, warn (or warning) or error", _choice((*LOG_LEVELS, "warning"))),
    ("MAESTRO_PRESEEDED_MODE", "auto, always or never", _choice(PRESEEDED_MODES)),
    ("MAESTRO_PORT_RANGE", "LOW-HIGH with 1 <= LOW <= HIGH <= 65535 (e.g. 8000-8999)", _port_range),
    ("MAESTRO_STARTSECS", _WHOLE_0 + " (seconds, e.g. 1)", _whole(0)),
    ("MAESTRO_STARTRETRIES", _WHOLE_0 + " (e.g. 3)", _whole(0)),
    ("MAESTRO_STOPWAITSECS", _WHOLE_0 + " (seconds, e.g. 5)", _whole(0)),
    ("MAESTRO_BUILD_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_NPM_INCLUDE_DEV", _BOOL, _choice(tuple(BOOLEANS))),
    ("PIP_INSTALL_OPTIONS", "shell words with balanced quotes", _shell_words),
    ("NPM_INSTALL_OPTIONS", "shell words with balanced quotes", _shell_words),
    ("MAESTRO_FETCH_MAX_BYTES", _WHOLE_1 + " (bytes)", _whole(1)),
    ("MAESTRO_FETCH_CONNECT_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_FETCH_READ_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_FETCH_RETRIES", _WHOLE_0 + " (extra attempts)", _whole(0)),
    ("MAESTRO_FETCH_BACKOFF", "a number of seconds >= 0", _number(positive=False)),
    ("MAESTRO_GIT_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_EXTRACT_MAX_FILES", _WHOLE_1, _whole(1)),
    ("MAESTRO_EXTRACT_MAX_BYTES", _WHOLE_1 + " (bytes)", _whole(1)),
    ("MAESTRO_GITHUB_API_URL", "an http:// or https:// URL", _url),
    ("MAESTRO_GITHUB_CODELOAD_URL", "an http:// or https:// URL", _url),
    ("MAESTRO_SANDBOX_MODE", "auto, require or off", _choice(SANDBOX_MODES)),
    ("MAESTRO_SANDBOX_MEMORY", "a size like 512M, 1G or 1048576, or max", _size),
    ("MAESTRO_SANDBOX_CPU_QUOTA_US", _WHOLE_1 + " (microseconds) or max", _whole(1, allow_max=True)),
    ("MAESTRO_SANDBOX_CPU_PERIOD_US", _WHOLE_1 + " (microseconds, e.g. 100000)", _whole(1)),
    ("MAESTRO_SANDBOX_PIDS_MAX", _WHOLE_1 + " or max", _whole(1, allow_max=True)),
    ("MAESTRO_SANDBOX_NET_POLICY", "deny or allow", _choice(NET_POLICIES)),
    ("MAESTRO_FIREWALL_DISABLE", _BOOL, _choice(tuple(BOOLEANS))),
    ("HEALTHCHECK_BUDGET", _SECONDS, _number(positive=True)),
    ("HEALTHCHECK_START_PERIOD", "a number of seconds >= 0", _number(positive=False)),
    ("HEALTHCHECK_PORTS", "port numbers 1-65535 separated by spaces, commas or semicolons", _ports),
    ("MAESTRO_ALLOW_SYSTEM_PATHS", _BOOL, _choice(tuple(BOOLEANS))),
    ("MAESTRO_PYTHON_INSTALLER", "auto, uv or pip", _choice(("auto", "uv", "pip"))),
    ("MAESTRO_LOG_TIMESTAMPS", _BOOL + " (or off)", _choice((*BOOLEANS, "off", "on"))),
    ("MAESTRO_LOCAL_SOURCE_ROOTS", "absolute paths separated by spaces or commas", _absolute_list),
    ("MAESTRO_STATE_DIR", _PATH, _absolute()),
    ("MAESTRO_RUNTIME_DIR", _INI_PATH, _absolute(ini_safe=True)),
    ("SUPERVISOR_CONF_DIR", _INI_PATH, _absolute(ini_safe=True)),
    ("MAESTRO_PORT_LEDGER", _PATH, _absolute()),
    ("MAESTRO_PROJECTS_DIR", _PATH, _absolute()),
    ("MAESTRO_HOME_ROOT", _PATH, _absolute()),
    ("MAESTRO_USERADD_PREFIX", _PATH, _absolute()),
    ("MAESTRO_SERVICES_FILE", _PATH, _absolute()),
    ("MAESTRO_CGROUP_ROOT", _PATH, _absolute()),
    ("MAESTRO_SANDBOX_NET_ALLOW_FILE", _PATH, _absolute()),
)


def check_environ(env: Mapping[str, str]) -> list[str]:
    """One line per bad value, in a fixed order: the variable, what it holds, what it accepts."""
    problems = []
    for key, accepted, check in RULES:
        text = env.get(key, "").strip()
        if not text:
            continue
        try:
            check(text)  # type: ignore[operator]
        except ValueError:
            shown = text if len(text) <= 40 else text[:39] + "…"
            problems.append(f"{key}={shown!r} is not valid: expected {accepted}")
    return problems


def read_only(path: Path) -> bool:
    """True when ``path`` (or, when missing, its nearest existing parent) is on a read-only mount.
    Asked of the mount, not of our rights, so that every command (root or not) decides alike."""
    for candidate in (path, *path.parents):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return False


def runtime_location(configured: Path, state_dir: Path) -> tuple[Path, str | None]:
    """The runtime dir, and why it is not the configured one. A read-only root with no tmpfs on
    /run (Docker's --read-only) cannot hold /run/maestro: the state dir, which must be writable
    anyway, holds it instead. Every command resolves it the same way, so they all find the socket."""
    if not read_only(configured):
        return configured, None
    fallback = state_dir / "run"
    if read_only(fallback):
        return configured, None  # nowhere better: the entrypoint says so when it cannot write
    return fallback, f"{configured} is on a read-only file system: runtime files are in {fallback} instead"


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
    # Set when the configured runtime dir is read-only and the state dir holds it (said at boot).
    runtime_note: str | None = None
    log_timestamps: bool = True  # MAESTRO_LOG_TIMESTAMPS: ISO 8601 times on the runtime's own lines
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
        """Parse and check every setting at once; :class:`SettingsError` lists all bad ones."""
        env = dict(os.environ if environ is None else environ)
        problems = check_environ(env)
        if problems:
            raise SettingsError(problems)

        def get(key: str, default: str) -> str:
            return env.get(key, "").strip() or default

        state_dir = Path(get("MAESTRO_STATE_DIR", "/var/lib/maestro"))
        configured_runtime = Path(get("MAESTRO_RUNTIME_DIR", "/run/maestro"))
        runtime_dir, runtime_note = runtime_location(configured_runtime, state_dir)
        conf_dir = Path(get("SUPERVISOR_CONF_DIR", "/etc/supervisor/conf.d"))
        if runtime_dir != configured_runtime and conf_dir.is_relative_to(configured_runtime):
            conf_dir = runtime_dir / conf_dir.relative_to(configured_runtime)  # moves along (image default)
        level = get("ENTRYPOINT_LOG_LEVEL", "info").lower()
        mode = get("MAESTRO_PRESEEDED_MODE", "auto").lower()
        services_file = get("MAESTRO_SERVICES_FILE", "")
        problems = []  # check_environ refused every bad value above; the parsers below repeat none
        settings = cls(
            environ=env,
            preseeded_roots=_split_roots(env.get("MAESTRO_PRESEEDED_ROOTS", "/opt/projects")),
            preseeded_mode=mode,
            preseeded_mode_raw=mode,
            services_file=Path(services_file or "/etc/maestro/services.yml"),
            services_file_explicit=bool(services_file),
            supervisor_conf_dir=conf_dir,
            runtime_dir=runtime_dir,
            state_dir=state_dir,
            port_ledger=Path(get("MAESTRO_PORT_LEDGER", str(state_dir / "ports.json"))),
            projects_dir=Path(get("MAESTRO_PROJECTS_DIR", str(state_dir / "projects"))),
            home_root=Path(get("MAESTRO_HOME_ROOT", "/home")),
            accounts_prefix=Path(env["MAESTRO_USERADD_PREFIX"].strip()) if get("MAESTRO_USERADD_PREFIX", "") else None,
            port_range=_port_range(get("MAESTRO_PORT_RANGE", "8000-8999")),
            log_level="warn" if level == "warning" else level,
            supervisord_bin=get("MAESTRO_SUPERVISORD", "supervisord"),
            startsecs=int(get("MAESTRO_STARTSECS", "1")),
            startretries=int(get("MAESTRO_STARTRETRIES", "3")),
            stopwaitsecs=int(get("MAESTRO_STOPWAITSECS", "5")),
            runtime_note=runtime_note,
            fetch=fetch_settings(env, problems),
            build=build_settings(env, problems),
            sandbox=sandbox_settings(env),
            allowed_users=env.get("MAESTRO_ALLOWED_USERS", ""),
            allow_system_paths=truthy(env.get("MAESTRO_ALLOW_SYSTEM_PATHS")),
            local_source_roots=tuple(
                Path(r) for r in env.get("MAESTRO_LOCAL_SOURCE_ROOTS", "").replace(",", " ").split()),
            term=env.get("TERM"),
            log_timestamps=env.get("MAESTRO_LOG_TIMESTAMPS", "1").strip().lower() not in ("0", "false", "no", "off"),
        )
        if problems:
            raise SettingsError(problems)
        return settings


def load_or_exit(program: str) -> Settings:
    """For every command's start: the settings, or each bad value on its own line and exit 2
    (usage error) before anything has started. Never a traceback."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"{program}: error: {problem}", file=sys.stderr)
        print(f"{program}: error: {len(exc.problems)} bad setting(s), nothing was started "
              "(see README, Configuration)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


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
