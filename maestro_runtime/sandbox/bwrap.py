"""Bubblewrap, pure and probed: typed config, the read-only system view, argv building, the probe.

Functional core: :class:`SandboxConfig` (typed settings), :func:`bwrap_argv`, :func:`wrap`,
:func:`service_shape`, :func:`limits_report`. Imperative shell: :func:`probe` (does bwrap
work here? cached in the runtime dir).

Signals: bwrap does not forward SIGTERM (bubblewrap#369) and its outer
process dies of it, and ``--die-with-parent`` then SIGKILLs the sandbox: a
graceful handler would be cut short. So the outer bwrap runs with
TERM/INT/HUP ignored (``env --ignore-signal``), no ``--new-session`` for
services (supervisord signals the whole process group, which then reaches
the service itself), and inside the sandbox ``env --default-signal``
restores the default dispositions before the privilege drop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from maestro_runtime.sandbox import cgroups, netpolicy

log = logging.getLogger("maestro.sandbox")

MODES = ("auto", "require", "off")
BWRAP = "/usr/bin/bwrap"
FORWARDED = "TERM,INT,HUP"
IGNORE_SIGNALS = ("/usr/bin/env", f"--ignore-signal={FORWARDED}")
DEFAULT_SIGNALS = ("/usr/bin/env", f"--default-signal={FORWARDED}")
PROXY_PORT = 3128  # inside the sandbox's own network namespace, so a fixed port cannot clash
NSS_EXTRA_FILES = ("/var/lib/extrausers/passwd", "/var/lib/extrausers/group")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
CAPABILITY_HINT = (
    "bubblewrap cannot create namespaces here: run the container with --cap-add SYS_ADMIN "
    "--cap-add NET_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined "
    "(or --privileged); MAESTRO_SANDBOX_MODE=off runs every service unsandboxed without this warning"
)


class SandboxError(Exception):
    pass


# ---------------------------------------------------------------- configuration (pure)


@dataclass(frozen=True)
class SandboxConfig:
    mode: str = "auto"
    limits: cgroups.Limits = field(default_factory=cgroups.Limits)
    cgroup_root: Path | None = None
    net_policy: str = netpolicy.DENY
    net_allow_file: Path = Path("/etc/maestro/sandbox-net-allow")
    firewall_disabled: bool = False
    runtime_dir: Path = Path("/run/maestro")
    state_dir: Path = Path("/var/lib/maestro")
    masked: tuple[str, ...] = ("/etc/maestro",)  # service specs hold other services' secrets
    bwrap: str = BWRAP
    problems: tuple[str, ...] = ()  # bad settings, reported at boot

    @property
    def cache_dir(self) -> Path:
        return self.runtime_dir / "sandbox"

    def to_json(self) -> str:
        """The whole config, for a subprocess (the build wrapper) that must not re-read the environment."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["limits"] = asdict(self.limits)
        return json.dumps(data, default=str, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxConfig:
        data = json.loads(text)
        root = data.pop("cgroup_root")
        return cls(**{
            **data, "limits": cgroups.Limits(**data["limits"]), "cgroup_root": Path(root) if root else None,
            "net_allow_file": Path(data["net_allow_file"]), "runtime_dir": Path(data["runtime_dir"]),
            "state_dir": Path(data["state_dir"]), "masked": tuple(data["masked"]), "problems": tuple(data["problems"]),
        })

    @classmethod
    def from_settings(cls, settings) -> SandboxConfig:
        sb = settings.sandbox
        services_file = str(getattr(settings, "services_file", ""))
        masked = ["/etc/maestro"]
        if services_file and not services_file.startswith("/etc/maestro/"):
            masked.append(services_file)
        return cls(
            mode=sb.mode, limits=sb.limits, cgroup_root=sb.cgroup_root, net_policy=sb.net_policy,
            net_allow_file=sb.net_allow_file, firewall_disabled=sb.firewall_disabled,
            runtime_dir=settings.runtime_dir, state_dir=settings.state_dir, masked=tuple(masked),
            problems=sb.problems,
        )


# ---------------------------------------------------------------- argv building (pure)


@dataclass(frozen=True)
class View:
    """The read-only system view: (kind, source, dest) with kind 'ro' or 'symlink'."""

    entries: tuple[tuple[str, str, str], ...]
    masked_dirs: tuple[str, ...] = ()
    masked_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shape:
    """What one sandbox looks like; everything else is the same for all sandboxes."""

    writable: tuple[str, ...]  # bound read-write at the same path (must exist)
    writable_try: tuple[str, ...] = ()  # bound read-write if they exist
    readonly: tuple[str, ...] = ()  # bound read-only at the same path (must exist)
    chdir: str | None = None
    unshare_net: bool = True
    new_session: bool = False
    private_proc: bool = True
    mask_tty: bool = False
    fds: tuple[str, ...] = ()  # --info-fd N / --block-fd N


def _parents(paths: Sequence[str], made: Sequence[str], exists: Sequence[str] = ()) -> list[str]:
    """``--perms 0755 --dir`` for the missing parents of bind targets: bwrap would create
    them 0700 root, and the project's user could not reach its own home."""
    out: list[str] = []
    for path in paths:
        parts = Path(path).parents
        for parent in sorted((str(p) for p in parts if str(p) != "/"), key=len):
            covered = any(parent == m or parent.startswith(m + "/") for m in made)
            if not covered and parent not in out and parent not in exists:
                out.append(parent)
    return [arg for parent in out for arg in ("--perms", "0755", "--dir", parent)]


def bwrap_argv(bwrap: str, view: View, shape: Shape) -> list[str]:
    """bwrap and its options, ending in ``--`` (the command follows)."""
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try"]
    if shape.unshare_net:
        argv.append("--unshare-net")  # bwrap brings up the new namespace's loopback itself
    if shape.new_session:
        argv.append("--new-session")
    system = [dest for kind, dest, _ in view.entries if kind == "ro" and dest in SYSTEM_DIRS]
    argv += _parents([dest for kind, _, dest in view.entries if kind == "ro"], system)
    for kind, source, dest in view.entries:
        argv += ["--symlink", source, dest] if kind == "symlink" else ["--ro-bind", source, dest]
    for folder in view.masked_dirs:
        argv += ["--tmpfs", folder, "--remount-ro", folder]
    for path in view.masked_files:
        argv += ["--ro-bind", "/dev/null", path]
    # --dev makes /dev/shm root's 0755: POSIX semaphores and shared memory (multiprocessing's
    # locks, hypercorn, uvicorn --workers) failed with EACCES. A private tmpfs per sandbox,
    # sticky and world-writable like the host's (--perms applies to the next --tmpfs, bwrap >= 0.5).
    argv += ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
    if shape.mask_tty:
        # No controlling terminal to push input into (TIOCSTI) through /dev/tty.
        argv += ["--ro-bind", "/dev/null", "/dev/tty"]
    # A private /proc needs a mount the container may forbid (masked /proc paths); then
    # the host's is bound read-only and the report says the PID view is not private.
    argv += ["--proc", "/proc"] if shape.private_proc else ["--ro-bind", "/proc", "/proc"]
    for folder in ("/tmp", "/run", "/var/tmp"):
        argv += ["--tmpfs", folder]
    ro = [dest for kind, _, dest in view.entries if kind == "ro"]
    argv += _parents([*shape.writable, *shape.writable_try, *shape.readonly], ro, ("/tmp", "/run", "/var", "/var/tmp"))
    for folder in shape.writable:
        argv += ["--bind", folder, folder]
    for folder in shape.writable_try:
        argv += ["--bind-try", folder, folder]
    for folder in shape.readonly:
        argv += ["--ro-bind", folder, folder]
    if shape.chdir:
        argv += ["--chdir", shape.chdir]
    return [*argv, *shape.fds, "--"]


def wrap(bwrap: Sequence[str], prlimit: Sequence[str] = ()) -> tuple[str, ...]:
    """The whole wrapper: signals ignored outside, restored inside, then rlimits; ends in ``--``."""
    inner = (*DEFAULT_SIGNALS, *prlimit) if prlimit else (*DEFAULT_SIGNALS, "--")
    return (*IGNORE_SIGNALS, *bwrap, *inner)


def service_shape(record, private_proc: bool) -> Shape:
    """Services keep the container's network (their ports must stay reachable).

    Only folders whose parent is root's are bound: bwrap resolves a bind's source as root, so
    a folder inside the home (``~/.cache``) could be a link the service planted to anywhere.
    Folders inside a bound one come along with it and need no bind of their own."""
    roots = tuple(dict.fromkeys(p for p in (record.home, record.directory) if p))
    extra = [p for p in (record.venv_dir, record.cache_dir, record.tmp_dir)
             if p and not any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)]
    return Shape(writable=roots,
                 writable_try=tuple(dict.fromkeys(extra)), chdir=record.directory or None,
                 unshare_net=False, new_session=False, private_proc=private_proc, mask_tty=True)


def limits_report(limits: cgroups.Limits, enforced: Mapping[str, str | None]) -> dict[str, dict]:
    values = limits.describe()
    return {kind: {"value": values[kind], "enforced_by": enforced.get(kind) or "not enforced"}
            for kind in cgroups.KINDS}


# ---------------------------------------------------------------- probing (shell)


@dataclass(frozen=True)
class Probe:
    ok: bool
    private_proc: bool = False
    error: str = ""

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "private_proc": self.private_proc, "error": self.error})


def system_view(config: SandboxConfig, extra_ro: Sequence[str] = ()) -> View:
    """Read-only system folders as they are here (merged /usr: /bin is a link), plus our install."""
    entries: list[tuple[str, str, str]] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            entries.append(("symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            entries.append(("ro", path, path))
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    for path in (sys.prefix, sys.base_prefix, package_root, *extra_ro):
        real = os.path.realpath(path)
        if os.path.isdir(real) and not any(real == d or real.startswith(d + "/") for d in SYSTEM_DIRS):
            entries.append(("ro", real, real))
    # Service users may live in libnss-extrausers' files (the image's read-only /etc): name and
    # uid lookups in the sandbox (id, getpwuid, Node's os.userInfo) need them. Never shadow.
    for path in NSS_EXTRA_FILES:
        if os.path.isfile(path):
            entries.append(("ro", os.path.realpath(path), path))
    unique = list(dict.fromkeys(entries))
    masked_dirs = tuple(p for p in config.masked if os.path.isdir(p))
    masked_files = tuple(p for p in config.masked if os.path.isfile(p))
    return View(tuple(unique), masked_dirs, masked_files)


def _try(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"exit status {proc.returncode}")


def probe(config: SandboxConfig, *, refresh: bool = False) -> Probe:
    """Does bubblewrap work here, and with a private /proc? Run once; cached in the runtime dir."""
    cache = config.cache_dir / "probe.json"
    if not refresh:
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(cache.read_text())
            return Probe(bool(data["ok"]), bool(data["private_proc"]), str(data["error"]))
    view = system_view(config)
    result = Probe(False, error=f"{config.bwrap} not found")
    if os.path.exists(config.bwrap):
        shape = Shape(writable=(), private_proc=True)
        error = _try([*bwrap_argv(config.bwrap, view, shape), "/bin/true"])
        if error is None:
            result = Probe(True, True)
        else:
            fallback = _try([*bwrap_argv(config.bwrap, view, Shape(writable=(), private_proc=False)),
                             "/bin/true"])
            result = Probe(True, False, error) if fallback is None else Probe(False, error=error)
    with contextlib.suppress(OSError):
        from maestro_runtime.state.records import atomic_write

        atomic_write(cache, result.to_json())
    return result
