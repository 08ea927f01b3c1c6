"""Running a build plan's steps as the project's user (the imperative part of :mod:`builds`).

Each step runs after the drop to the project's user (or behind the sandbox wrapper), with the
build's environment applied only by the last exec, at the highest ``oom_score_adj``; its output
goes to the service's build log, and a failure raises :class:`BuildError` with the log's tail.
"""

from __future__ import annotations

import os
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


def run_plan(plan: Plan, directory: Path, account, policy, opts: BuildOptions, logfile: Path) -> None:
    build_env = build_environment(directory, account, opts)
    prefix = command_prefix(account, directory, policy)
    with open(logfile, "a") as out, open(steps_file(logfile), "a") as steps:

        def mark(line: str) -> None:  # in the log for people, in the steps file for readers
            line = line.replace("\n", " ").replace("\r", " ") + "\n"
            out.write(line)
            out.flush()
            steps.write(line)
            steps.flush()

        mark(f"{STEP_HEADER}{plan.ecosystem}")  # list-services' PROVISIONING rows name it (ops/inventory.py)
        for step in plan.steps:
            mark(f"$ {shlex.join(step)}")
            started = time.monotonic()
            try:
                argv, env = wrap(prefix, step, build_env, opts)
                proc = subprocess.run([*FIRST_TO_GO, *argv], cwd=directory, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=opts.timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
            except OSError as exc:
                out.write(f"cannot run {step[0]}: {exc}\n")
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
