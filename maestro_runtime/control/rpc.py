"""supervisord's process table, compact, and the signal that ended each run.

Two halves of one small XML-RPC method, ``maestro.processStates``:

- in supervisord (``[rpcinterface:maestro]`` in supervisord.conf.j2): ``make_interface``. It answers
  getAllProcessInfo's rows, cut to the fields the runtime reads, as one JSON string.
  getAllProcessInfo's XML for 100 programs is ~135 KB, which supervisord sends 4 KB per turn of
  its main loop (``deferring_http_channel.ac_out_buffer_size``): ~33 turns, each polling every
  program's pipes, then ~10 ms of parsing in the client. The JSON string is ~12 KB in one value.
  It also keeps what supervisord drops: ``decode_wait_status`` turns a run killed by a signal into
  exit status -1, so the signal's name (``SIGKILL``) is recorded when supervisord reaps the child.
- in the runtime (list-services, the controller): ``process_states``, which falls back to
  getAllProcessInfo when the method is not there (a supervisord started from another config).

Stdlib only on the supervisord side: an import error there would keep supervisord from starting.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

KEYS = ("name", "group", "state", "statename", "pid", "start", "stop", "exitstatus", "spawnerr")
_BODY = (b"<?xml version='1.0'?><methodCall><methodName>maestro.processStates</methodName>"
         b"<params></params></methodCall>")
_REQUEST = (b"POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s"
            % (len(_BODY), _BODY))


# ---------------------------------------------------------------- in supervisord


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _record_signals() -> None:
    """Keep, on each process object, the signal that ended its last run (None: it exited)."""
    from supervisor.process import Subprocess

    if getattr(Subprocess.finish, "maestro_signals", False):
        return
    original = Subprocess.finish

    def finish(self, pid, sts):
        self.maestro_signal = signal_name(os.WTERMSIG(sts)) if os.WIFSIGNALED(sts) else None
        return original(self, pid, sts)

    finish.maestro_signals = True  # type: ignore[attr-defined]
    Subprocess.finish = finish


class MaestroInterface:
    def __init__(self, supervisord: Any, programs: str):
        from supervisor.rpcinterface import SupervisorNamespaceRPCInterface

        from maestro_runtime.engine.rpc_add import AddProgram

        self._main = SupervisorNamespaceRPCInterface(supervisord)
        self._adder = AddProgram(supervisord, programs)

    def addProgram(self, name: str) -> bool:  # camelCase: the XML-RPC name
        """Add program group ``name`` from its own file (engine/rpc_add.py); False when present."""
        return self._adder.addProgram(name)

    def processStates(self) -> str:  # camelCase: the XML-RPC name, as supervisord spells its own
        """getAllProcessInfo's rows (name, group, state, statename, pid, start, stop, exitstatus,
        spawnerr) plus ``signal``, the name of the signal that ended the last run, as a JSON array."""
        # Same order as getAllProcessInfo (lexical), which checks supervisord's state first.
        infos = self._main.getAllProcessInfo()
        processes = self._main._getAllProcesses(lexical=True)
        rows = []
        for info, (_group, process) in zip(infos, processes, strict=False):
            row = {key: info[key] for key in KEYS}
            row["signal"] = getattr(process, "maestro_signal", None)
            rows.append(row)
        return json.dumps(rows, separators=(",", ":"))  # ASCII: control characters escaped for XML


def make_interface(supervisord: Any, **config: Any) -> MaestroInterface:
    """The ``supervisor.rpcinterface_factory`` of ``[rpcinterface:maestro]`` (``programs``: the folder
    of program files; ``launch``: the folder of launch scripts to perform in the child, engine/spawn.py)."""
    _record_signals()
    if config.get("launch"):
        from maestro_runtime.engine import spawn

        spawn.install(config["launch"])
    return MaestroInterface(supervisord, config["programs"])


# ---------------------------------------------------------------- in the runtime


def fetch(socket_path: os.PathLike | str, timeout: float) -> list[dict[str, Any]] | None:
    """The rows, or None when supervisord does not answer the method (absent, fault, not running).
    One HTTP/1.0 request by hand: xmlrpc.client would import http.client and supervisor's
    transport (~25 ms of a 130 ms list-services)."""
    chunks = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(os.fspath(socket_path))
            sock.sendall(_REQUEST)
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or head.split(None, 2)[1:2] != [b"200"]:
        return None
    from xml.etree import ElementTree

    try:
        value = ElementTree.fromstring(body).find("params/param/value")
        if value is None:  # a fault: no such method, or supervisord shutting down
            return None
        text = value.findtext("string") if value.find("string") is not None else value.text
        rows = json.loads(text or "")
    except (ElementTree.ParseError, ValueError):
        return None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else None


def process_states(supervisor: Any) -> dict[str, dict[str, Any]]:
    """{program: info} like ``Supervisor.processes()``, with ``signal`` when supervisord has the method.
    Raises what ``Supervisor.processes()`` raises when supervisord is down."""
    rows = fetch(supervisor.socket, supervisor.timeout)
    found = supervisor.processes() if rows is None else {row["name"]: row for row in rows}
    return {name: _without_restated_exit(row) for name, row in found.items()}


def _without_restated_exit(row: dict[str, Any]) -> dict[str, Any]:
    """supervisord's spawnerr ``Bad exit code 3`` only restates the exit status the row holds: left
    out, it no longer turns every exit into "exit 3: Bad exit code 3" (log, alert, list-services).
    A real spawn error (``can't find command``) stays."""
    if str(row.get("spawnerr") or "").startswith("Bad exit code "):
        return {**row, "spawnerr": ""}
    return row
