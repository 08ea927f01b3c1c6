"""Inside supervisord: start a service's program with one exec instead of the launch script's chain.

A service's launch script (engine/launch.py) runs ``sh -> env -i -> [bubblewrap] -> setpriv ->
env -i -> command``: four execs of small dynamic programs (five with the sandbox) before the
service's own, about 3 ms of CPU alone and far more on a loaded boot (benchmarks/README.md). Its second line
carries the same launch as JSON. When supervisord forks a program whose command is such a script
in the launch folder, the child, already an interpreter and still root, does what the chain does
and execs the command itself:

1. joins the service's cgroups (so everything it starts is counted; one it cannot join is said on
   stderr and the service starts, as the script's ``echo $$ > PATH`` does);
2. without a sandbox: drops to the service's user and group with no supplementary groups,
   sets no_new_privs, enters the service's folder (as the service: root never walks a path
   the service owns) and execs the command with exactly the service's environment, looked up
   on that environment's PATH (as ``env -i`` does); nothing of supervisord's environment;
3. with a sandbox: enters the folder and execs the wrapper as root with the fixed root
   environment, as the script does (setpriv and ``env -i`` run inside it).

Any doubt (another folder, no plan line, a plan that does not parse) runs the script as
supervisord would. Installed by control/rpc.py's interface factory (``launch`` in
``[rpcinterface:maestro]``); stdlib and supervisor only: an import error here would keep
supervisord from starting.
"""

from __future__ import annotations

import ctypes
import json
import os
from typing import Any

PLAN_PREFIX = "# maestro-launch-plan: "  # the second line of a launch script
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What root's processes of a launch (env, bwrap, setpriv) run with: fixed, nothing from the spec.
ROOT_ENVIRONMENT = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAPABILITY_V3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)  # once, in supervisord: the children only call prctl
_PLAN_KEYS = {"cgroup_procs": list, "directory": str, "uid": int, "gid": int, "env": dict, "argv": list}


def read_plan(script: str) -> dict[str, Any] | None:
    """The plan on the script's second line; None when there is none or it is not whole."""
    try:
        with open(script, encoding="utf-8") as handle:
            handle.readline()
            line = handle.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if not line.startswith(PLAN_PREFIX):
        return None
    try:
        plan = json.loads(line[len(PLAN_PREFIX):])
    except ValueError:
        return None
    if not isinstance(plan, dict) or any(not isinstance(plan.get(k), t) for k, t in _PLAN_KEYS.items()):
        return None
    if not plan["argv"] or not all(isinstance(a, str) for a in plan["argv"]):
        return None
    root_argv = plan.get("root_argv")
    if root_argv is not None and not (isinstance(root_argv, list) and root_argv
                                      and all(isinstance(a, str) for a in root_argv)):
        return None
    return plan


def script_of(argv: list[str], launch_dir: str) -> str | None:
    """The launch script a program's argv runs (``/bin/sh <launch_dir>/<id>.sh [revision]``), else None."""
    if len(argv) < 2 or argv[0] != "/bin/sh" or not argv[1].endswith(".sh"):
        return None
    return argv[1] if os.path.dirname(argv[1]) == launch_dir else None


def exec_plan(plan: dict[str, Any]) -> None:
    """Steps 1-3 of the module's docstring, in the forked child; returns only by raising."""
    pid = str(os.getpid())
    for path in plan["cgroup_procs"]:
        try:
            with open(path, "w") as procs:
                procs.write(pid)
        except OSError as exc:  # as the script's `echo $$ > PATH`: said on stderr, the service still starts
            os.write(2, f"maestro: cannot join the cgroup {path}: {exc.strerror}\n".encode())
    if plan.get("root_argv"):
        os.chdir(plan["directory"])
        os.execve(plan["root_argv"][0], plan["root_argv"], ROOT_ENVIRONMENT)
    uid, gid = plan["uid"], plan["gid"]
    if uid != 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    else:  # degraded mode (an identity capability is missing): root, but with no capability left
        drop_capabilities()
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.chdir(plan["directory"])
    try:
        os.execvpe(plan["argv"][0], plan["argv"], plan["env"])
    except FileNotFoundError:  # execvpe names only the last folder of PATH it tried
        raise FileNotFoundError(f"{plan['argv'][0]}: command not found") from None


def drop_capabilities() -> None:
    """Empty permitted, effective, inheritable and ambient sets. With no_new_privs (set next),
    the exec as root gains none back: the kernel caps them at the permitted set it had.
    Dropping needs no capability, so it works whatever the container was given."""
    if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_V3, 0)
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}: all empty
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def install(launch_dir: str) -> None:
    """Spawn maestro's programs from their plans (once per supervisord, whatever reloads)."""
    from supervisor.process import Subprocess

    original = Subprocess._spawn_as_child
    if getattr(original, "maestro_launch", False):
        return
    launch_dir = os.path.abspath(launch_dir)

    def _spawn_as_child(self, filename, argv):
        script = script_of(argv, launch_dir)
        plan = read_plan(script) if script else None
        if plan is None:
            return original(self, filename, argv)
        options = self.config.options
        try:
            os.setpgrp()  # as supervisord's own child: signals to supervisord are not the service's
            os.dup2(self.pipes["child_stdin"], 0)
            os.dup2(self.pipes["child_stdout"], 1)
            os.dup2(self.pipes["child_stdout" if self.config.redirect_stderr else "child_stderr"], 2)
            os.closerange(3, options.minfds)  # one close_range(2), not a thousand close(2) calls
            exec_plan(plan)
        except BaseException as exc:  # the child must end here, whatever happened
            options.write(2, f"maestro: cannot start {self.config.name}: {exc}\n")
        finally:
            options._exit(127)  # supervisord's code for "not spawned"

    _spawn_as_child.maestro_launch = True  # type: ignore[attr-defined]
    Subprocess._spawn_as_child = _spawn_as_child
