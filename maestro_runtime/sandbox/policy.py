"""Sandbox policy: bubblewrap, resource limits and network policy for services and builds.

Functional core: :class:`SandboxConfig` (typed settings), :func:`bwrap_argv`
and :func:`service_wrapper` (pure argv building), :func:`service_report`.
Imperative shell: :func:`probe` (does bwrap work here? cached in the runtime
dir), :class:`SandboxPolicy` (what provisioning calls) and :func:`run`
(``maestro-sandbox`` and builds: a sandboxed child with its network policy).

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
import ctypes
import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.engine.launch import ROOT_ENVIRONMENT, drop_privileges_argv, service_env_argv
from maestro_runtime.ops.accounts import missing_identity_caps
from maestro_runtime.sandbox import cgroups, netpolicy

log = logging.getLogger("maestro.sandbox")

MODES = ("auto", "require", "off")
BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
FORWARDED = "TERM,INT,HUP"
IGNORE_SIGNALS = ("/usr/bin/env", f"--ignore-signal={FORWARDED}")
DEFAULT_SIGNALS = ("/usr/bin/env", f"--default-signal={FORWARDED}")
PROXY_PORT = 3128  # inside the sandbox's own network namespace, so a fixed port cannot clash
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
    argv += ["--dev", "/dev"]
    if shape.mask_tty:
        # No controlling terminal to push input into (TIOCSTI) through /dev/tty.
        argv += ["--ro-bind", "/dev/null", "/dev/tty"]
    # A private /proc needs a mount the container may forbid (masked /proc paths); then
    # the host's is bound read-only and the report says the PID view is not private.
    argv += ["--proc", "/proc"] if shape.private_proc else ["--ro-bind", "/proc", "/proc"]
    for folder in ("/tmp", "/run", "/var/tmp"):
        argv += ["--tmpfs", folder]
    ro = [dest for kind, _, dest in view.entries if kind == "ro"]
    argv += _parents([*shape.writable, *shape.writable_try], ro, ("/tmp", "/run", "/var", "/var/tmp"))
    for folder in shape.writable:
        argv += ["--bind", folder, folder]
    for folder in shape.writable_try:
        argv += ["--bind-try", folder, folder]
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


# ---------------------------------------------------------------- services


@dataclass(frozen=True)
class LaunchPlan:
    wrapper: tuple[str, ...] = ()  # argv placed before the privilege drop, ending in "--"
    cgroup_procs: tuple[str, ...] = ()  # cgroup.procs files the launch script joins
    report: dict = field(default_factory=dict)  # what is enforced, for record.sandbox / list-services


class SandboxPolicy:
    """What provisioning uses. Probes and cgroup detection happen once, on first use."""

    def __init__(self, config: SandboxConfig):
        self.config = config
        self._lock = threading.Lock()
        self._probe: Probe | None = None
        self._layout: cgroups.Layout | None = None
        self._firewall = None

    @property
    def mode(self) -> str:
        return self.config.mode

    @classmethod
    def from_settings(cls, settings) -> SandboxPolicy:
        return cls(SandboxConfig.from_settings(settings))

    # -- lazily measured facts
    def probe(self) -> Probe:
        with self._lock:
            if self._probe is None:
                self._probe = Probe(False, error="sandbox mode is off") if self.mode == "off" \
                    else probe(self.config)
            return self._probe

    def layout(self) -> cgroups.Layout:
        with self._lock:
            if self._layout is None:
                self._layout = cgroups.detect(self.config.cgroup_root)
            return self._layout

    def firewall(self):
        from maestro_runtime.sandbox import firewall

        with self._lock:
            if self._firewall is None:
                self._firewall = firewall.Firewall.from_config(self.config)
            return self._firewall

    def sandboxed(self) -> tuple[bool, str]:
        """(sandbox or not, why not); raises SandboxError in require mode when bwrap cannot work."""
        if self.mode == "off":
            return False, "MAESTRO_SANDBOX_MODE=off"
        result = self.probe()
        if result.ok:
            return True, ""
        if self.mode == "require":
            raise SandboxError(f"MAESTRO_SANDBOX_MODE=require: {CAPABILITY_HINT} ({result.error})")
        return False, f"bubblewrap unusable: {result.error}"

    def service_net(self, record) -> netpolicy.NetDecision:
        extra = netpolicy.extra_hosts(self.config.runtime_dir, self.config.state_dir, record.id)
        check = netpolicy.read_policy_file(self.config.net_allow_file)
        return netpolicy.decide(self.config.net_policy, check, (*record.allow_hosts, *extra))

    def plan(self, record) -> LaunchPlan:
        on, why = self.sandboxed()
        try:
            limits = cgroups.resolve_limits(self.config.limits, record.limits)
        except ValueError as exc:
            raise SandboxError(f"limits of {record.id}: {exc}") from exc
        prepared = cgroups.prepare(self.layout(), record.id, limits)
        for error in prepared.errors:
            log.warning("service %s: %s", record.id, error)
        if on:
            view = system_view(self.config)
            argv = bwrap_argv(self.config.bwrap, view, service_shape(record, self.probe().private_proc))
            wrapper = wrap(argv, prepared.prlimit)
        else:
            wrapper = tuple(prepared.prlimit)
        net = self.service_net(record)
        egress = self.firewall().egress_status(net)
        report = {
            "sandbox": "bubblewrap" if on else "none",
            "mode": self.mode,
            "reason": why or None,
            "private_proc": bool(on and self.probe().private_proc),
            "limits": limits_report(limits, prepared.enforced),
            "network": {**net.describe(), "namespace": "shared with the container (ports reachable)",
                        "egress_enforced_by": egress},
        }
        return LaunchPlan(wrapper=wrapper, cgroup_procs=prepared.procs, report=report)

    def forget(self, record) -> None:
        cgroups.remove(self.layout(), record.id)
        netpolicy.forget_extra_hosts(self.config.runtime_dir, self.config.state_dir, record.id)

    def sync_firewall(self, records: Sequence) -> list[str]:
        """Rebuild MAESTRO_INPUT (ports) and the per-UID egress chain; call after every deploy/remove."""
        ready = [r for r in records if getattr(r, "ready", True) and r.port]
        return self.firewall().sync(ready, {r.id: self.service_net(r) for r in ready})

    # -- builds
    def build_wrapper(self, account, directory: Path | str) -> tuple[str, ...]:
        """argv prefix for one build step, ending in ``--``: append only the command (the
        wrapper drops to ``account`` itself). The build gets the build network policy."""
        # Ids and home from the account, never a name lookup: in degraded identity the account
        # was never created. -s: no user site-packages in this root process.
        return (sys.executable, "-s", "-m", "maestro_runtime.sandbox.cli", "--workdir", str(directory),
                "--user", account.user, "--uid", str(account.uid), "--gid", str(account.gid),
                "--home", str(account.home), "--")


def boot_report(config: SandboxConfig) -> list[str]:
    """Warnings to log once at boot: every setting ignored, every limit or policy not enforced."""
    policy = SandboxPolicy(config)
    warnings = list(config.problems)
    try:
        on, why = policy.sandboxed()
    except SandboxError as exc:
        return [*warnings, str(exc)]
    if not on and config.mode == "auto":
        warnings.append(f"SANDBOX DISABLED: every service runs unsandboxed ({why}). {CAPABILITY_HINT}")
    if on and not policy.probe().private_proc:
        warnings.append(f"sandboxes share the container's /proc (a private /proc mount was refused: "
                        f"{policy.probe().error}); grant --security-opt systempaths=unconfined")
    layout = policy.layout()
    chosen = cgroups.choose(layout, config.limits)
    for kind, mech in chosen.items():
        if mech is None:
            warnings.append(f"{kind} limit {config.limits.describe()[kind]} is NOT enforced "
                            f"(no writable cgroup controller: {'; '.join(layout.notes) or 'none found'})")
        elif mech.startswith("rlimit"):
            warnings.append(f"{kind} limit {config.limits.describe()[kind]} is enforced only by {mech} "
                            "(no writable cgroup controller)")
    if config.net_policy == netpolicy.ALLOW:
        decision = netpolicy.decide(netpolicy.ALLOW, netpolicy.read_policy_file(config.net_allow_file))
        if decision.warning:
            warnings.append(decision.warning)
    warnings += policy.firewall().boot_warnings()
    return warnings


# ---------------------------------------------------------------- one sandboxed command (shell)

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class RunRequest:
    argv: tuple[str, ...]
    user: str
    workdir: Path
    # The account's ids and home as the runtime recorded them: no name lookup (in degraded
    # identity there is no account to look up). None: look ``user`` up in passwd.
    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    net: str = netpolicy.DENY
    allow_hosts: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    label: str = "maestro-sandbox"


def sandbox_env(home: str, user: str, proxied: bool, extra: Mapping[str, str], term: str | None) -> dict:
    """A clean environment: nothing of the caller's passes except TERM."""
    env = {"PATH": SYSTEM_PATH, "HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
           "TMPDIR": "/tmp", "SHELL": "/bin/sh"}
    if term:
        env["TERM"] = term
    if proxied:
        url = f"http://127.0.0.1:{PROXY_PORT}"
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "npm_config_proxy", "npm_config_https_proxy"):
            env[key] = url
        env["no_proxy"] = env["NO_PROXY"] = "localhost,127.0.0.1,::1"
    env.update(extra)
    return env


def _listen_in(pid: int) -> socket.socket:
    """A TCP listener on 127.0.0.1:PROXY_PORT inside ``pid``'s network namespace.

    setns() in a short-lived thread: only that thread switches namespace, and a socket
    keeps the namespace it was created in. IP_FREEBIND: the loopback may not be up yet."""
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, object] = {}

    def work():
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the sandbox's network namespace failed")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
            sock.bind(("127.0.0.1", PROXY_PORT))
            sock.listen(64)
            box["sock"] = sock
        except OSError as exc:
            box["error"] = exc
        finally:
            os.close(target)
        # The thread ends here, still in the sandbox's namespace: it never runs anything else.

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in box:
        raise SandboxError(f"cannot start the egress proxy: {box['error']}")
    return box["sock"]  # type: ignore[return-value]


def _read_info(fd: int) -> dict:
    data = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return json.loads(data)
    raise SandboxError("bubblewrap exited before starting the sandbox")


def _identity(request: RunRequest) -> tuple[int, int, str, str]:
    """(uid, gid, home, name) to run as. Root only in degraded identity (no CAP_SETUID here:
    the runtime's services run as root without capabilities too, and there is no one to drop to)."""
    if request.uid is not None:
        uid, gid = request.uid, request.gid if request.gid is not None else request.uid
        home, user = request.home or str(request.workdir), request.user
    else:
        try:
            entry = pwd.getpwnam(request.user)
        except KeyError as exc:
            raise SandboxError(f"no such user: {request.user!r}") from exc
        uid, gid, home, user = entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_name
    if uid == 0 and "SETUID" not in missing_identity_caps():
        raise SandboxError("refusing to run a sandboxed command as root: pass a project's --user")
    return uid, gid, home, user


def run(config: SandboxConfig, request: RunRequest, *, term: str | None = None) -> int:
    """Run one command in a sandbox as ``request.user`` with the network policy; its exit status."""
    uid, gid, home, user = _identity(request)
    policy = SandboxPolicy(config)
    on, why = policy.sandboxed()
    check = netpolicy.read_policy_file(config.net_allow_file)
    net = netpolicy.decide(request.net, check, request.allow_hosts)
    if net.warning:
        log.warning("%s: %s", request.label, net.warning)
    if not on:
        log.warning("%s: running UNSANDBOXED (%s); network policy %s not enforced",
                    request.label, why, net.policy)
    name = f"sandbox-{os.getpid()}"
    prepared = cgroups.prepare(policy.layout(), name, config.limits)
    env = sandbox_env(home, user, on and net.proxied, request.env, term)
    info_r = info_w = block_r = block_w = -1
    if on:
        info_r, info_w = os.pipe()
        fds = ["--info-fd", str(info_w)]
        if net.proxied:
            block_r, block_w = os.pipe()
            fds += ["--block-fd", str(block_r)]
        workdir = str(request.workdir.resolve())
        shape = Shape(writable=tuple(dict.fromkeys((workdir, home))), chdir=workdir,
                      unshare_net=not (net.policy == netpolicy.ALLOW and not net.hosts),
                      new_session=True, private_proc=policy.probe().private_proc, fds=tuple(fds))
        prefix = wrap(bwrap_argv(config.bwrap, system_view(config), shape), prepared.prlimit)
    else:
        prefix = tuple(prepared.prlimit)
    # Root's processes (prlimit, env, bwrap, setpriv) get a fixed environment; the command's own
    # (request.env included) is set only after the drop, so no loader variable reaches root.
    argv = [*prefix, *drop_privileges_argv(uid, gid), *service_env_argv(env), *request.argv]
    passed = tuple(fd for fd in (info_w, block_r) if fd >= 0)
    proxy = None
    child_pid = 0
    # Forward TERM/INT/HUP to the sandbox's session (the outer bwrap ignores them).
    previous = {}

    def forward(signum, _frame):
        target = -child_pid if child_pid else proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signum)

    try:
        # bwrap changes into the workdir itself (--chdir); unsandboxed, the process must start there.
        proc = subprocess.Popen(argv, env=dict(ROOT_ENVIRONMENT), pass_fds=passed,
                                cwd="/" if on else str(request.workdir),
                                preexec_fn=lambda: cgroups.join(prepared.procs))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread: nothing to forward
                previous[sig] = signal.signal(sig, forward)
        for fd in passed:
            os.close(fd)
        if on:
            info = _read_info(info_r)
            child_pid = int(info["child-pid"])
            if net.proxied:
                from maestro_runtime.sandbox.proxy import ProxyThread

                listener = _listen_in(child_pid)
                proxy = ProxyThread(listener, lambda host, port: netpolicy.endpoint_allowed(host, port, net.hosts),
                                    request.label).start()
                os.write(block_w, b"go")
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for fd in (info_r, block_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if proxy is not None:
            proxy.stop()
        cgroups.remove(policy.layout(), name)
    return 128 - code if code < 0 else code
