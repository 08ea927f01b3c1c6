"""Running a build plan's steps as the project's user (the imperative part of :mod:`builds`).

Each step runs after the drop to the project's user (or behind the sandbox wrapper), with the
build's environment applied only by the last exec, at the highest ``oom_score_adj``; its output
goes through a pipe to the service's build log (bounded: :mod:`buildlog`), and a failure raises
:class:`BuildError` with the log's tail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from maestro_runtime.engine.launch import (
    ROOT_ENVIRONMENT,
    SYSTEM_PATH,
    drop_privileges_argv,
    service_env_argv,
    shims_dir,
)
from maestro_runtime.ops.logs import tail_bytes
from maestro_runtime.sandbox.netpolicy import is_proxy_key
from maestro_runtime.sources import pybuild
from maestro_runtime.sources.buildlog import CappedLog
from maestro_runtime.sources.buildplan import STEP_HEADER, BuildError, Plan, steps_file, tail
from maestro_runtime.sources.declared import platform_env

if TYPE_CHECKING:
    from maestro_runtime.sources.builds import BuildOptions


def build_environment(directory: Path, account, opts: BuildOptions) -> dict[str, str]:
    cache = Path(account.cache_dir)
    env = {**platform_env(directory), **dict(opts.passthrough)}  # the platform's, then the operator's
    env.update(
        HOME=str(account.home),
        USER=account.user,
        LOGNAME=account.user,
        LANG="C.UTF-8",
        PATH=f"{account.venv_dir}/bin:{directory}/node_modules/.bin:{SYSTEM_PATH}:{shims_dir(str(account.home))}",
        TMPDIR=str(account.tmp_dir),
        XDG_CACHE_HOME=str(cache),
        PIP_CACHE_DIR=str(cache / "pip"),
        npm_config_cache=str(cache / "npm"),
        npm_config_update_notifier="false",
        COREPACK_HOME=str(cache / "corepack"),
        COREPACK_ENABLE_DOWNLOAD_PROMPT="0",
        COREPACK_ENABLE_AUTO_PIN="0",  # never a packageManager field written into package.json
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(pybuild.uv_environment(account, env))
    return env


def command_prefix(account, directory: Path, policy) -> list[str]:
    """Sandbox wrapper (when the policy offers one), then the drop to the project's user."""
    wrapper = getattr(policy, "build_wrapper", None)
    prefix = list(wrapper(account, directory) or ()) if callable(wrapper) else []
    if prefix:
        return prefix  # the sandbox wrapper drops to the account itself
    if os.geteuid() == 0:  # to the project's user, or (degraded mode) root with no capability
        return drop_privileges_argv(account.uid, account.gid)
    return []


def wrap(prefix: list[str], step: Sequence[str], env: Mapping[str, str], opts: BuildOptions,
         ) -> tuple[list[str], dict[str, str]]:
    """argv and process environment of one step.

    The build's environment (HOME, PATH into the project's venv, caches) is applied only by
    the last exec, after the drop: the root processes before it (the sandbox wrapper,
    setpriv) get a fixed environment, so nothing the project can write (a ``.pth`` in
    ``~/.local``, a venv on PATH, loader variables) is seen by root. The sandbox wrapper
    gets its config as a file (``--config``), never as variables to parse again.

    Behind the sandbox wrapper that last exec is a plain ``env K=V`` (no ``-i``): the wrapper
    already starts its command, after its own drop, with ``env -i`` and the sandbox's
    environment, whose proxy variables are the only way out of the sandbox's network
    namespace; the build's variables are added to it, never a replacement for it.
    """
    wrapped = bool(prefix) and prefix[0] != "/usr/bin/setpriv"
    if wrapped:
        # Proxy variables go to the wrapper (--env), which keeps them only where its network
        # is not its own proxy's; after it they would override that proxy, the only way out.
        proxy = [f"--env={k}={v}" for k, v in env.items() if is_proxy_key(k)]
        if proxy and prefix[-1] == "--":
            prefix = [*prefix[:-1], *proxy, "--"]
        last = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items() if not is_proxy_key(k))]
    else:
        last = service_env_argv(env)
    argv = [*prefix, *last, *step]
    if not prefix:
        return argv, dict(env)
    root_env = dict(ROOT_ENVIRONMENT)
    # The sandbox wrapper gets the operator's own PYTHONPATH (a development checkout), never the build's.
    if wrapped and opts.operator_pythonpath:
        root_env["PYTHONPATH"] = opts.operator_pythonpath
    return argv, root_env


# Every build step (and release phase) at the highest oom_score_adj, inherited by all it starts:
# when the container runs out of memory, the kernel ends a build (which fails, or runs again alone:
# ops/buildslots.py), not a running service or the runtime. Raising it needs no privilege.
FIRST_TO_GO = ("/usr/bin/choom", "-n", "1000", "--") if os.access("/usr/bin/choom", os.X_OK) else ()


# A step's output has no bound (one line of 300 MB took a failed deploy to 2 GB): its error
# quotes the last lines of at most this much of the log's end.
QUOTED_END = 64 * 1024

# A step's output comes to root through a pipe, written to the log by root (sources/buildlog.py
# keeps it bounded). Handing the child the log file as its stdout would let it write without
# bound; an RLIMIT_FSIZE would kill a legitimate build that prints a lot.
PIPE_SIZE = 1024 * 1024  # fewer, larger reads (the unprivileged maximum, fs.pipe-max-size)
TICK = 0.5  # how often a quiet step is checked for its end (a step that exits closes the pipe: no wait)
DRAIN = 1.0  # after the step ends, what is in the pipe is read, for this long at most: a process it
# left behind that holds the pipe keeps no build waiting (its writes fail once root closes the pipe)


def run_plan(plan: Plan, directory: Path, account, policy, opts: BuildOptions, logfile: Path) -> None:
    build_env = build_environment(directory, account, opts)
    prefix = command_prefix(account, directory, policy)
    with CappedLog(logfile) as out, open(steps_file(logfile), "a") as steps:

        def mark(line: str) -> None:  # in the log for people, in the steps file for readers
            line = line.replace("\n", " ").replace("\r", " ") + "\n"
            out.write(line.encode(errors="backslashreplace"))
            steps.write(line)
            steps.flush()

        mark(f"{STEP_HEADER}{plan.ecosystem}")  # list-services' PROVISIONING rows name it (ops/inventory.py)
        for step in plan.steps:
            mark(f"$ {shlex.join(step)}")
            started = time.monotonic()
            try:
                argv, env = wrap(prefix, step, build_env, opts)
                code = run_step([*FIRST_TO_GO, *argv], directory, env, out, opts.timeout)
            except OSError as exc:
                out.write(f"cannot run {step[0]}: {exc}\n".encode(errors="backslashreplace"))
                code = 127
            mark(f"# exit {code} after {time.monotonic() - started:.1f}s")
            if code != 0:
                killed = code in (-9, 137)  # SIGKILL: what the kernel's OOM killer sends
                if code is None:
                    what = "timed out"
                elif killed:
                    what = f"was killed (exit {code}: out of memory?)"
                else:
                    what = f"failed (exit {code})"
                raise BuildError(
                    f"{plan.ecosystem} build {what}: {shlex.join(step[:4])}...; log {logfile}, last lines:\n"
                    + tail("\n".join(tail_bytes(logfile, QUOTED_END, keep_cut=True))), killed=killed)


def run_step(argv: list[str], directory: Path, env: Mapping[str, str], out: CappedLog,
             timeout: float | None) -> int | None:
    """Run one step, its stdout and stderr into ``out``; its exit code, or None when it timed out."""
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a smaller pipe works too, with more reads
            fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        try:
            proc = subprocess.Popen(argv, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=write_end,
                                    stderr=write_end)
        finally:
            os.close(write_end)
        try:
            return _pump(read_end, proc, out, time.monotonic() + timeout if timeout else float("inf"))
        except BaseException:
            _end(proc)
            raise
    finally:
        os.close(read_end)


def _pump(fd: int, proc: subprocess.Popen, out: CappedLog, deadline: float) -> int | None:
    poller = select.poll()  # not select(): a busy runtime may have descriptors past 1024
    poller.register(fd, select.POLLIN)
    ended = None  # when the step's process ended
    while True:
        now = time.monotonic()
        if ended is None and proc.poll() is not None:
            ended = now
        if ended is None and now >= deadline:
            _end(proc)
            return None
        if ended is not None and now > ended + DRAIN:
            break
        # Once it ended, what it wrote is in the pipe already: no wait for more.
        wait = min(TICK, deadline - now) if ended is None else 0
        if not poller.poll(wait * 1000):
            if ended is not None:
                break  # ended, and the pipe is empty
            continue
        chunk = os.read(fd, PIPE_SIZE)
        if not chunk:
            break  # every writer closed it
        out.write(chunk)
    try:  # the pipe closed, the step may still run (its output sent elsewhere)
        return proc.wait(max(0.0, deadline - time.monotonic()) if deadline != float("inf") else None)
    except subprocess.TimeoutExpired:
        _end(proc)
        return None


def _end(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
