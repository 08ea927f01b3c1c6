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
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.sandbox.cgroups import memory_limit
from maestro_runtime.settings.checks import RULES, check_environ, port_range
from maestro_runtime.settings.parts import (
    BOOLEANS,
    LOG_LEVELS,
    NET_POLICIES,
    PRESEEDED_MODES,
    SANDBOX_MODES,
    BuildSettings,
    FetchSettings,
    OpsSettings,
    SandboxSettings,
    SettingsError,
    build_settings,
    default_build_jobs,
    fetch_settings,
    inherited_environ,
    sandbox_settings,
    truthy,
)

__all__ = [
    "BOOLEANS", "LOG_LEVELS", "NET_POLICIES", "PRESEEDED_MODES", "RULES", "SANDBOX_MODES", "BuildSettings",
    "FetchSettings", "OpsSettings", "SandboxSettings", "Settings", "SettingsError", "build_settings", "check_environ",
    "fetch_settings", "inherited_environ", "load_or_exit", "read_only", "runtime_location", "sandbox_settings",
    "truthy",
]


def _split_roots(raw: str) -> tuple[Path, ...]:
    """Roots are separated by whitespace, commas or colons."""
    parts = raw.replace(",", " ").replace(":", " ").split()
    return tuple(Path(p) for p in parts)



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


def build_jobs(given: str) -> dict[str, int]:
    """MAESTRO_BUILD_JOBS as given (for every build, Node's too), else the defaults."""
    if given:
        return {"build_jobs": int(given), "node_build_jobs": int(given)}
    jobs, node_jobs = default_build_jobs(os.cpu_count() or 1, memory_limit())
    return {"build_jobs": jobs, "node_build_jobs": node_jobs}


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
    # Builds at once: MAESTRO_BUILD_JOBS, default the core count; Node builds at most one per GiB
    # of --memory when it is unset (settings.parts.default_build_jobs), else as many.
    build_jobs: int = 1
    node_build_jobs: int = 1
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

    @property
    def service_log_dir(self) -> Path:
        """The log listener's files: ``<program>.log`` (and rotated ones) per program (engine/log_listener.py)."""
        return self.state_dir / "logs"

    @property
    def build_log_dir(self) -> Path:
        """Root's 0700 folder of build logs, one ``<id>.build.log`` per service (sources/builds.py)."""
        return self.state_dir / "builds"

    def build_log(self, service_id: str) -> Path:
        return self.build_log_dir / f"{service_id}.build.log"

    def build_steps(self, service_id: str) -> Path:
        """Root's markers of the last build (sources/buildplan.py steps_file), never the build's output."""
        return self.build_log_dir / f"{service_id}.build.steps"

    @property
    def accounts_registry(self) -> Path:
        """Root's list of the accounts services run as (ops/accounts.py AccountRegistry)."""
        return self.state_dir / "accounts.json"

    @property
    def provisioning_list(self) -> Path:
        """The services a boot is still provisioning (ops/reconcile.py), for list-services."""
        return self.runtime_dir / "provisioning.json"

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
            port_range=port_range(get("MAESTRO_PORT_RANGE", "8000-8999")),
            log_level="warn" if level == "warning" else level,
            supervisord_bin=get("MAESTRO_SUPERVISORD", "supervisord"),
            startsecs=int(get("MAESTRO_STARTSECS", "1")),
            startretries=int(get("MAESTRO_STARTRETRIES", "3")),
            stopwaitsecs=int(get("MAESTRO_STOPWAITSECS", "5")),
            **build_jobs(get("MAESTRO_BUILD_JOBS", "")),
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
              "(see README, Configuration reference)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


