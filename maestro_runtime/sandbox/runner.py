"""One sandboxed command (shell): ``maestro-sandbox`` and builds run a child with its network policy."""

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
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.engine.launch import ROOT_ENVIRONMENT, SYSTEM_PATH, drop_privileges_argv, service_env_argv
from maestro_runtime.ops.accounts import missing_identity_caps
from maestro_runtime.sandbox import cgroups, netpolicy
from maestro_runtime.sandbox.bwrap import (
    PROXY_PORT,
    SandboxConfig,
    SandboxError,
    Shape,
    bwrap_argv,
    system_view,
    wrap,
)
from maestro_runtime.sandbox.policy import SandboxPolicy

log = logging.getLogger("maestro.sandbox")

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
    """A clean environment: nothing of the caller's passes except TERM.

    Proxied (a network namespace with only loopback), the sandbox's proxy is the only way out:
    a proxy variable in ``extra`` (an operator's https_proxy or no_proxy passed to a build)
    would send a client to a host it cannot resolve (getaddrinfo EAI_AGAIN), so it is dropped.
    Not proxied, ``extra``'s proxy variables pass."""
    env = {"PATH": SYSTEM_PATH, "HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
           "TMPDIR": "/tmp", "SHELL": "/bin/sh"}
    if term:
        env["TERM"] = term
    env.update((k, v) for k, v in extra.items() if not (proxied and netpolicy.is_proxy_key(k)))
    if proxied:
        url = f"http://127.0.0.1:{PROXY_PORT}"
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "npm_config_proxy", "npm_config_https_proxy"):
            env[key] = url
        env["no_proxy"] = env["NO_PROXY"] = "localhost,127.0.0.1,::1"
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
