"""supervisord: config rendering (pure, Jinja2) and the XML-RPC client.

Only validated values ever reach the INI files: program ids match
``[a-z0-9][a-z0-9_-]*`` and paths are checked against a conservative
character set, so nothing can add a line, a section, a comment or a
``%(...)s`` expansion. User data lives in launch scripts (see launch.py).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from maestro_runtime.spec.naming import PROGRAM_ID_RE
from maestro_runtime.state.records import atomic_write

_HERE = Path(__file__).resolve().parent.parent  # the package root
# Installed: config/ is packaged as maestro_runtime/config; in a checkout it sits beside the package.
CONFIG_DIR = _HERE / "config" if (_HERE / "config").is_dir() else _HERE.parent / "config"
SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+-]*\Z")
PROGRAM_MARKER = "; maestro-runtime program "
LOGLEVELS = {"debug": "debug", "info": "info", "warn": "warn", "error": "error"}


class RenderError(ValueError):
    pass


def _safe_path(value: str | Path, what: str) -> str:
    text = str(value)
    if not SAFE_PATH_RE.match(text):
        raise RenderError(f"{what} {text!r} has characters supervisord's config cannot hold safely")
    return text


def _safe_id(program_id: str) -> str:
    if not PROGRAM_ID_RE.match(program_id):
        raise RenderError(f"program id {program_id!r} must match {PROGRAM_ID_RE.pattern}")
    return program_id


@cache
def _environment():
    import jinja2  # imported lazily: list-services and the launcher never render

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(CONFIG_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class ProgramOptions:
    autostart: bool = True
    # 0 and 0: every end of a run lands in EXITED with its status; the controller restarts (control/).
    startsecs: int = 0
    startretries: int = 0
    stopwaitsecs: int = 5
    autorestart: bool = False  # never: the controller restarts services with backoff; tasks run once


def render_program(program_id: str, launch_script: Path, options: ProgramOptions, revision: str = "0") -> str:
    """``revision`` is passed to the script as an ignored argument: when it changes, so
    does the program's config, and ``update`` restarts exactly that program."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", revision):
        raise RenderError(f"revision {revision!r} must be hexadecimal")
    return _environment().get_template("program.conf.j2").render(
        id=_safe_id(program_id),
        revision=revision,
        launch_script=_safe_path(launch_script, "launch script"),
        autostart="true" if options.autostart else "false",
        autorestart="true" if options.autorestart else "false",
        startsecs=int(options.startsecs),
        startretries=int(options.startretries),
        stopwaitsecs=int(options.stopwaitsecs),
    )


def log_listener_command(logs_dir: Path | None = None, max_bytes: int = 10 << 20, backups: int = 3) -> str:
    """The log listener, run by the same interpreter as the runtime."""
    script = shutil.which("maestro-logs", path=str(Path(sys.executable).parent)) or shutil.which("maestro-logs")
    command = _safe_path(script, "log listener") if script else (
        f"{_safe_path(sys.executable, 'python')} -m maestro_runtime.engine.log_listener")
    if logs_dir is not None:
        command += f" --dir {_safe_path(logs_dir, 'logs folder')} --max-bytes {int(max_bytes)} --backups {int(backups)}"
    return command


def controller_command() -> str:
    return f"{_safe_path(sys.executable, 'python')} -m maestro_runtime.control.controller"


def render_main_config(
    *, conf_path: Path, socket: Path, include_dir: Path, pidfile: Path, childlogdir: Path, loglevel: str,
    logs_dir: Path | None = None, log_max_bytes: int = 10 << 20, log_backups: int = 3, with_controller: bool = False,
    maestro_rpc: bool = False, launch_dir: Path | None = None,
) -> str:
    """``maestro_rpc``: load the runtime's XML-RPC methods into supervisord (control/rpc.py:
    ``maestro.processStates``, ``maestro.addProgram``); supervisord must then run on an
    interpreter that imports maestro_runtime. Without them, clients fall back to supervisor's own.
    With them, the launch scripts in ``launch_dir`` are performed by supervisord's forked child
    from their plan line (engine/spawn.py) instead of being run."""
    return _environment().get_template("supervisord.conf.j2").render(
        conf_path=_safe_path(conf_path, "config path"),
        socket=_safe_path(socket, "control socket"),
        include_dir=_safe_path(include_dir, "program folder"),
        pidfile=_safe_path(pidfile, "pid file"),
        childlogdir=_safe_path(childlogdir, "child log folder"),
        loglevel=LOGLEVELS.get(loglevel, "info"),
        log_listener=log_listener_command(logs_dir, log_max_bytes, log_backups),
        controller=controller_command() if with_controller else "",
        maestro_rpc=maestro_rpc,
        launch_dir=_safe_path(launch_dir, "launch folder") if launch_dir else "",
    )


def program_file(conf_dir: Path, program_id: str) -> Path:
    return conf_dir / f"{_safe_id(program_id)}.conf"


def remove_orphan_programs(conf_dir: Path, wanted: set[str]) -> None:
    """Drop program files we rendered for services that no longer exist (never foreign files)."""
    if not conf_dir.is_dir():
        return
    for path in conf_dir.glob("*.conf"):
        if path.stem in wanted:
            continue
        try:
            with path.open() as handle:
                ours = handle.readline().startswith(PROGRAM_MARKER)
        except OSError:
            continue
        if ours:
            path.unlink(missing_ok=True)


def write_program(conf_dir: Path, program_id: str, text: str) -> bool:
    """Write atomically; False when the file already says exactly this (nothing to update).
    Not fsynced: each boot writes it again from the record (engine/programs.py says why)."""
    path = program_file(conf_dir, program_id)
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    atomic_write(path, text, durable=False)
    return True


def remove_program(conf_dir: Path, program_id: str) -> None:
    program_file(conf_dir, program_id).unlink(missing_ok=True)


# ---------------------------------------------------------------- XML-RPC


# supervisor.states.ProcessStates: STOPPED, EXITED, FATAL, UNKNOWN (no process left to wait for)
STOPPED_STATES = frozenset({0, 100, 200, 1000})


class SupervisorUnavailable(Exception):
    pass


class Supervisor:
    """supervisord over its UNIX socket, with supervisor's own XML-RPC transport."""

    def __init__(self, socket: Path, timeout: float = 10.0):
        self.socket = socket
        self.timeout = timeout
        self._proxy: Any = None

    @property
    def rpc(self) -> Any:
        if self._proxy is None:
            import xmlrpc.client

            from supervisor.xmlrpc import SupervisorTransport

            transport = SupervisorTransport(None, None, f"unix://{self.socket}")
            self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return self._proxy

    def call(self, method: str, *args: Any) -> Any:
        import http.client
        import xmlrpc.client

        target = self.rpc
        for part in method.split("."):
            target = getattr(target, part)
        try:
            return target(*args)
        except xmlrpc.client.Fault:
            raise
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            # The transport keeps its half-used connection after a failure and would answer
            # every later call with CannotSendRequest (seen at boot on a stale socket file):
            # start afresh next time.
            self._proxy = None
            raise SupervisorUnavailable(f"supervisord is not answering on {self.socket}: {exc!r}") from exc

    def available(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return self.call("supervisor.getState")["statename"] == "RUNNING"
        except SupervisorUnavailable:
            return False

    def processes(self) -> dict[str, dict[str, Any]]:
        return {info["name"]: info for info in self.call("supervisor.getAllProcessInfo")}

    def update(self, *, restart_changed: bool = True) -> tuple[list[str], list[str], list[str]]:
        """Reread the config and apply it like ``supervisorctl update``: only what changed.
        ``restart_changed=False`` (boot's hand-over) leaves a changed program running as it is:
        stop + remove + add of a program that has just started is how one runs twice (see
        tests/integration/test_early_start.py)."""
        added, changed, removed = self.call("supervisor.reloadConfig")[0]
        for group in removed:
            self._stop_and_remove(group)
        for group in changed if restart_changed else ():
            self._stop_and_remove(group)
            self._add(group)
        for group in added:
            self._add(group)
        return added, changed, removed

    def add_programs(self, names: list[str]) -> list[bool | str | None]:
        """``maestro.addProgram`` (engine/rpc_add.py) for each name, all in one request
        (``system.multicall``: one round trip and one turn of supervisord's loop): adds a program
        from its own file without rereading the others or touching one supervisord already has.
        Per name: True when added, False when supervisord had it (read at its start-up and
        started by itself), None when there is no such file, else the fault's text (e.g.
        UNKNOWN_METHOD from a supervisord without our interface)."""
        answers = self.call("system.multicall",
                            [{"methodName": "maestro.addProgram", "params": [name]} for name in names])
        results: list[bool | str | None] = []
        for answer in answers:
            if isinstance(answer, dict):  # a fault
                text = str(answer.get("faultString", answer))
                results.append(None if "BAD_NAME" in text else text)
            else:
                results.append(bool(answer))
        return results

    def _add(self, group: str) -> None:
        # ALREADY_ADDED: an update from outside got there first.
        self._call_allowing("ALREADY_ADDED", "supervisor.addProcessGroup", group)

    def _call_allowing(self, fault: str, method: str, *args: Any) -> Any:
        """call(), where a Fault named ``fault`` is an expected answer: None."""
        import xmlrpc.client

        try:
            return self.call(method, *args)
        except xmlrpc.client.Fault as exc:
            if fault not in exc.faultString:
                raise
            return None

    def remove(self, group: str) -> bool:
        """Stop and drop one program group whose file is already gone, without rereading every
        program file (supervisord's reread costs ~0.7 ms per program). False when unknown."""
        import xmlrpc.client

        try:
            self._stop_and_remove(group)
        except xmlrpc.client.Fault as fault:
            if "BAD_NAME" in fault.faultString:
                return False
            raise
        return True

    def _stop_and_remove(self, group: str, timeout: float = 30.0) -> None:
        """Stop without waiting, then poll: supervisord answers a waiting stop only on its next
        one-second loop tick, while polling sees the process gone within milliseconds."""
        stopping = self._call_allowing("NOT_RUNNING", "supervisor.stopProcessGroup", group, False) or []
        # Poll only the processes being stopped: one small call each, whatever the host's size.
        pending = [f"{group}:{result['name']}" for result in stopping]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = [name for name in pending
                       if self.call("supervisor.getProcessInfo", name)["state"] not in STOPPED_STATES]
            if pending:
                time.sleep(0.02)
        self.call("supervisor.removeProcessGroup", group)
