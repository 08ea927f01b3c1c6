"""The launch script supervisord runs for a service (rendering is pure).

supervisord's program stanza only says ``command=/bin/sh <runtime>/launch/<id>.sh``.
The script, rendered here with every value passed through ``shlex.quote``,
joins the service's cgroup, enters its folder and execs, in one chain with no
resident helper process: ``env -i`` with a fixed root environment -> the
sandbox wrapper (bubblewrap, when enabled) -> ``setpriv`` (drop to the
service's user) -> ``env -i`` with the service's environment -> the command.
The service's environment (which the spec controls: ``LD_PRELOAD``,
``LD_LIBRARY_PATH``...) is applied only at that last exec, after the drop, so
no root process of the chain ever loads what it names.

Its second line carries the same launch as JSON (:data:`PLAN_PREFIX`): supervisord
with maestro's plugin (engine/spawn.py) performs it in the child it forks, with one
exec (the command's) instead of the chain's four or five; any other supervisord runs the script.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence

from maestro_runtime.engine.spawn import PLAN_PREFIX, ROOT_ENVIRONMENT, SYSTEM_PATH
from maestro_runtime.state.records import ServiceRecord

SETPRIV = "/usr/bin/setpriv"
CAP_SETPCAP = 8
_SHELL_SYNTAX = re.compile(r"[;&|<>()`\n{}]")
# "=" needs no shell past the leading words (checked as assignments): --port=80 is a plain word.
_NEEDS_SHELL = re.compile(r"[;&|<>()`\n{}$*?\[\]~#\\'\"]")
# Keywords, and the builtins no program on PATH stands in for: they run in a shell (`exit 3`
# exec'd as a program ended 127, "env: 'exit': No such file or directory").
_SHELL_WORDS = frozenset((
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done", "in",
    "function", "select", "time", "cd", "export", "set", "unset", "exec", "eval", "source", ".",
    "alias", "ulimit", "umask", "trap", "read", "shift", "wait", "exit", "return", "break", "continue",
    ":", "readonly", "local", "times", "command", "getopts", "hash", "type", "unalias", "jobs", "fg", "bg",
))


_PORT_REF = re.compile(r"\$\{PORT\}|\$PORT(?![A-Za-z0-9_])")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^'\"\\$`]*$")
# When the shell must stay, it waits for the running command before it exits on a signal
# (POSIX defers traps until the foreground command ends): inside a bubblewrap PID namespace
# the shell's exit would otherwise SIGKILL the service in the middle of its graceful stop.
_WAIT_THEN_EXIT = "trap 'exit 143' TERM; trap 'exit 130' INT; trap 'exit 129' HUP\n"


def command_argv(command: str, port: str | None = None) -> list[str]:
    """How to exec a user command so that, where possible, no shell stays behind.

    Plain words are exec'd directly, and so are words whose only expansion is ``$PORT``
    (``gunicorn -b 0.0.0.0:$PORT app:app``, the static server): ``port`` is the value the
    shell would have put there, so one shell fewer starts per service. A simple command
    that needs other expansion (variables, quotes, globs, leading VAR=value) runs as
    ``sh -c '... exec ...'`` so the shell replaces itself; anything else (pipes, lists,
    multi-line scripts) keeps ``sh -c``, and supervisord signals the whole process group on stop.
    """
    if port is not None and port.isdigit():
        expanded = _PORT_REF.sub(port, command)
        if expanded != command and not _NEEDS_SHELL.search(expanded):
            command = expanded
    words = command.split()
    lead = 0
    while lead < len(words) and _ASSIGNMENT.match(words[lead]):
        lead += 1
    program = words[lead] if lead < len(words) else ""
    simple = bool(program) and "=" not in program and program not in _SHELL_WORDS
    if simple and lead == 0 and not _NEEDS_SHELL.search(command):
        return words
    if simple and not _SHELL_SYNTAX.search(command):
        return ["/bin/sh", "-c", " ".join([*words[:lead], "exec", command.strip().split(None, lead)[-1]])]
    return ["/bin/sh", "-c", _WAIT_THEN_EXIT + command]


def shims_dir(home: str) -> str:
    """Where a build puts corepack's ``yarn``/``pnpm`` shims (``corepack enable``), as the
    project's user: on the PATH of its build steps and processes, after the system's."""
    return f"{home}/.maestro/bin"


def service_path(record: ServiceRecord) -> str:
    parts = []
    if record.venv_dir:
        parts.append(f"{record.venv_dir}/bin")
    parts.append(f"{record.directory}/node_modules/.bin")
    tail = [shims_dir(record.home)] if getattr(record, "home", "") else []
    return ":".join([*parts, SYSTEM_PATH, *tail])


def corepack_environment(cache_dir: str) -> dict[str, str]:
    """The package managers the build fetched through corepack, as the build had them: its
    COREPACK_HOME (the versions it installed, and the one it chose), never a download (a
    service starting must not depend on a registry), never a packageManager field added."""
    return {"COREPACK_HOME": f"{cache_dir}/corepack", "COREPACK_ENABLE_NETWORK": "0",
            "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0", "COREPACK_ENABLE_AUTO_PIN": "0"}


def service_environment(record: ServiceRecord) -> dict[str, str]:
    """The whole environment of the service: nothing of the container's leaks in."""
    env = {
        "PATH": service_path(record),
        "LANG": "C.UTF-8",
        "SHELL": "/bin/sh",
        "HOST": "0.0.0.0",
        "TMPDIR": record.tmp_dir,
        "XDG_CACHE_HOME": record.cache_dir,
        "PYTHONUNBUFFERED": "1",
        "MAESTRO_SERVICE": record.id,
    }
    if record.venv_dir:
        env["VIRTUAL_ENV"] = record.venv_dir
    if record.cache_dir:
        env.update(corepack_environment(record.cache_dir))
    env.update(record.env)
    # Set last: the service cannot change where and as whom it runs.
    env.update(PORT=str(record.port), HOME=record.home, USER=record.user, LOGNAME=record.user)
    return env


def root_env_argv() -> list[str]:
    return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in ROOT_ENVIRONMENT.items())]


def service_env_argv(env: Mapping[str, str]) -> list[str]:
    """The last exec, already as the service's user: its whole environment, nothing inherited."""
    return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]


def drop_privileges_argv(uid: int, gid: int) -> list[str]:
    if uid == 0:
        # Degraded mode (an identity capability is missing): nothing to drop to; no capability
        # kept and none gained (engine/spawn.py drop_capabilities does the same without setpriv).
        return [SETPRIV, *root_caps_options(), "--no-new-privs", "--"]
    return [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", "--"]


def effective_capabilities(status_text: str | None = None) -> int:
    """This process's effective capability bits (``CapEff`` of /proc/self/status)."""
    if status_text is None:
        with open("/proc/self/status") as status:
            status_text = status.read()
    return next((int(line.split()[1], 16) for line in status_text.splitlines() if line.startswith("CapEff:")), 0)


def root_caps_options(status_text: str | None = None) -> list[str]:
    """setpriv options that leave root no capability after its exec: the bounding set emptied
    (which needs CAP_SETPCAP, in Docker's and podman's defaults), then with no_new_privs root's
    exec gains none. Without CAP_SETPCAP only the inheritable and ambient sets can go."""
    bounding = ["--bounding-set=-all"] if effective_capabilities(status_text) >> CAP_SETPCAP & 1 else []
    return ["--inh-caps=-all", "--ambient-caps=-all", *bounding]


def launch_plan_json(record: ServiceRecord, *, cgroup_procs: Sequence[str], env: Mapping[str, str],
                     command: Sequence[str], root_argv: Sequence[str] | None) -> str:
    """What the script's chain does, as data for engine/spawn.py (one line of JSON: newlines escaped).
    ``root_argv``: with a sandbox wrapper, what to exec as root (the wrapper drops privileges
    inside); None: the child drops to ``uid``/``gid`` itself and execs ``command`` with ``env``."""
    return json.dumps({
        "cgroup_procs": list(cgroup_procs), "directory": record.directory, "uid": record.uid, "gid": record.gid,
        "env": dict(env), "argv": list(command), "root_argv": list(root_argv) if root_argv else None,
    }, separators=(",", ":"))


def render_launch_script(
    record: ServiceRecord,
    *,
    wrapper: Sequence[str] = (),
    cgroup_procs: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
) -> str:
    """The /bin/sh script for one service. ``wrapper`` is the sandbox argv (ending in ``--``)."""
    env = service_environment(record) if environment is None else environment
    q = shlex.quote
    command = command_argv(record.command, env.get("PORT"))
    chain = [*wrapper, *drop_privileges_argv(record.uid, record.gid), *service_env_argv(env), *command]
    plan = launch_plan_json(record, cgroup_procs=cgroup_procs, env=env, command=command,
                            root_argv=chain if wrapper else None)
    lines = [
        "#!/bin/sh",
        PLAN_PREFIX + plan,
        f"# Launch script of service {record.id}, generated by maestro-runtime: do not edit.",
    ]
    # Join the cgroups first so every process the service starts is counted.
    lines += [f"echo $$ > {q(path)}" for path in cgroup_procs]
    lines += [
        f"cd {q(record.directory)} || exit 1",
        "exec " + " ".join(q(arg) for arg in [*root_env_argv(), *chain]),
        "",
    ]
    return "\n".join(lines)
