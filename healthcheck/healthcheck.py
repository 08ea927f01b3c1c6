#!/usr/bin/python3 -IS
"""maestro-runtime HEALTHCHECK: probe every registered service at once.

Exit 0 healthy, 1 unhealthy; one summary line naming what fails. ``--live`` asks only
whether the runtime itself works (supervisord answers, its controller runs): a liveness
probe, which must not restart every service because one of them failed.

Startup time is most of a healthcheck's cost, so this file is standalone and
imports almost nothing (run it with ``python3 -I -S``): no maestro_runtime,
no http.client or xmlrpc.client (they pull in the email package), no threads.
All probes, and the question to supervisord (a hand-written XML-RPC request over
its UNIX socket), run concurrently on non-blocking sockets under one selector.
It resolves the same two paths settings.py does (MAESTRO_STATE_DIR,
MAESTRO_RUNTIME_DIR) from the environment by itself.

A service counts as *starting*, not failing, while it is younger than
HEALTHCHECK_START_PERIOD seconds (default 20) or supervisord still has it
STARTING. A service whose provisioning failed counts as failing.
HEALTHCHECK_PORTS (space, comma or semicolon separated) replaces the list with
plain HTTP probes of those ports.

When the controller is alive (its status.json is fresh), the probe states it keeps
in <state>/runstate/<id>.json are the answer: no second round of probes, only the
supervisord query. A service it has not probed yet, or any service when the
controller is not there, is probed here. A service the operator stopped
(``maestro stop``) is neither healthy nor failing.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import sys
import time

try:
    BUDGET, BUDGET_ERROR = float(os.environ.get("HEALTHCHECK_BUDGET", "").strip() or "4.0"), ""
except ValueError as _exc:
    BUDGET, BUDGET_ERROR = 4.0, str(_exc)  # main() reports it in its one line
DEADLINE = time.monotonic() + BUDGET
# maestro.processStates (control/rpc.py): the process table as one JSON string, ~10x fewer bytes than
# getAllProcessInfo, which supervisord sends 4 KB per turn of its loop; getAllProcessInfo is the fallback.
RPC_BODIES = tuple(b"<?xml version='1.0'?><methodCall><methodName>%s</methodName><params></params></methodCall>" % m
                   for m in (b"maestro.processStates", b"supervisor.getAllProcessInfo"))


# ---------------------------------------------------------------- supervisord


def _parse_value(node) -> object:
    child = node[0] if len(node) else None
    if child is None:
        return node.text or ""
    if child.tag in ("int", "i4"):
        return int(child.text or 0)
    if child.tag == "boolean":
        return child.text == "1"
    return child.text or ""


def parse_process_info(xml_text: bytes) -> list[dict]:
    from xml.etree import ElementTree  # ~3 ms, and only when supervisord answered

    root = ElementTree.fromstring(xml_text)
    if root.find("fault") is not None:
        raise ValueError("supervisord returned a fault")
    compact = root.find("params/param/value/string")
    if compact is not None:  # maestro.processStates
        rows = json.loads(compact.text or "")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
            raise ValueError("maestro.processStates: not a list of processes")
        return rows
    processes = []
    for struct in root.iter("struct"):
        processes.append({m.findtext("name"): _parse_value(m.find("value")) for m in struct.findall("member")})
    return processes


class SupervisorQuery:
    """getAllProcessInfo over supervisord's UNIX socket, run in the same selector as the probes
    so its answer time overlaps theirs."""

    def __init__(self, socket_path: str, body: bytes = RPC_BODIES[0]):
        self.socket_path, self.body = socket_path, body
        self.chunks: list[bytes] = []
        self.processes: dict[str, dict] | None = None
        self.answered = False  # supervisord sent an HTTP answer (perhaps a fault)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def start(self, selector: selectors.BaseSelector) -> None:
        request = (b"POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(self.body), self.body))
        try:
            self.sock.settimeout(max(0.5, DEADLINE - time.monotonic()))
            self.sock.connect(self.socket_path)
            self.sock.sendall(request)  # small: the socket buffer takes it at once
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            return
        selector.register(self.sock, selectors.EVENT_READ, self)

    def on_event(self, selector: selectors.BaseSelector, _mask: int) -> None:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.chunks.append(chunk)
            return
        selector.unregister(self.sock)
        self.sock.close()
        head, _, body = b"".join(self.chunks).partition(b"\r\n\r\n")
        try:
            if head.startswith(b"HTTP/1.") and head.split(None, 2)[1] == b"200":
                self.answered = True
                self.processes = {p["name"]: p for p in parse_process_info(body)}
        except (ValueError, IndexError, KeyError):
            self.processes = None


# ---------------------------------------------------------------- probes


class Probe:
    """One service's probe: connect, (for http) send GET, read the status line."""

    def __init__(self, name: str, port: int, kind: str, path: str):
        self.name, self.port, self.kind = name, port, kind
        self.request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: maestro-healthcheck\r\n\r\n".encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.buffer = b""
        self.result: str | None = "no answer in time"  # None: healthy

    def start(self, selector: selectors.BaseSelector) -> None:
        code = self.sock.connect_ex(("127.0.0.1", self.port))
        if code not in (0, 115):  # 115: EINPROGRESS
            self.finish(selector, f"port {self.port}: {os.strerror(code)}", registered=False)
            return
        selector.register(self.sock, selectors.EVENT_WRITE, self)

    def finish(self, selector: selectors.BaseSelector, result: str | None, registered: bool = True) -> None:
        self.result = result
        if registered:
            selector.unregister(self.sock)
        self.sock.close()

    def on_event(self, selector: selectors.BaseSelector, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self.finish(selector, f"port {self.port}: {os.strerror(error)}")
            elif self.kind == "tcp":
                self.finish(selector, None)
            else:
                self.sock.send(self.request)  # tiny: fits the socket buffer at once
                selector.modify(self.sock, selectors.EVENT_READ, self)
            return
        try:
            chunk = self.sock.recv(4096)
        except OSError as exc:
            self.finish(selector, f"port {self.port}: {exc.strerror}")
            return
        self.buffer += chunk
        if b"\n" in self.buffer or not chunk:
            self.finish(selector, http_verdict(self.port, self.buffer))


def http_verdict(port: int, head: bytes) -> str | None:
    """Any answer below 500 counts as healthy."""
    parts = head.split(b"\n", 1)[0].split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        status = int(parts[1])
        return None if status < 500 else f"HTTP {status}"
    return f"port {port}: no HTTP answer"


def probe_all(targets: list[tuple[str, int, str, str]], *also) -> dict[str, str | None]:
    """Run every probe (and ``also``: e.g. the supervisord query) until done or out of time."""
    selector = selectors.DefaultSelector()
    probes = [Probe(*target) for target in targets]
    for participant in (*also, *probes):
        participant.start(selector)
    while selector.get_map() and (remaining := DEADLINE - time.monotonic()) > 0:
        for key, mask in selector.select(remaining):
            key.data.on_event(selector, mask)
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    return {p.name: p.result for p in probes}


# ---------------------------------------------------------------- the verdict


def load_records(state_dir: str) -> list[dict]:
    """Every service record; one unreadable (or not an object) counts as none, never as an error."""
    folder = os.path.join(state_dir, "services")
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [record for name in names if name.endswith(".json") and (record := _read_json(os.path.join(folder, name)))]


CONTROLLER_FRESH = 20.0
JUDGED = ("healthy", "unhealthy")  # "starting" or nothing: not judged yet, probe here


def _read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def controller_states(state_dir: str, now: float) -> dict[str, dict] | None:
    """{service id: run state} when the controller's heartbeat is fresh, else None."""
    folder = os.path.join(state_dir, "runstate")
    if now - float(_read_json(os.path.join(folder, "status.json")).get("updated") or 0) > CONTROLLER_FRESH:
        return None
    states = {}
    for name in os.listdir(folder):
        if name.endswith(".json") and name != "status.json":
            states[name[:-5]] = _read_json(os.path.join(folder, name))
        elif name.endswith(".stopped"):
            states.setdefault(name[:-8], {})
    return states


def summary(failing: list[str], healthy: int, starting: list[str], what: str = "service(s)") -> tuple[int, str]:
    if failing:
        return 1, "unhealthy: " + ", ".join(failing)
    note = f", {len(starting)} starting ({', '.join(starting)})" if starting else ""
    return 0, f"healthy: {healthy} {what} answering{note}"


def _read_only(path: str) -> bool:
    while True:
        try:
            return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except FileNotFoundError:
            if path in ("/", ""):
                return False
            path = os.path.dirname(path)
        except OSError:
            return False


def runtime_location(configured: str, state_dir: str) -> str:
    """settings.runtime_location, restated (this file imports nothing of maestro_runtime): a
    runtime dir on a read-only mount is replaced by <state dir>/run."""
    fallback = os.path.join(state_dir, "run")
    return fallback if _read_only(configured) and not _read_only(fallback) else configured


def runtime_dir(env: dict[str, str], state_dir: str) -> str:
    return runtime_location(env.get("MAESTRO_RUNTIME_DIR", "").strip() or "/run/maestro", state_dir)


def provisioning(runtime_dir: str) -> list[str]:
    """The services a live boot is still fetching or building (ops/reconcile.py lists them in
    the runtime dir, with its pid: a list a dead boot left behind counts for nothing)."""
    try:
        with open(os.path.join(runtime_dir, "provisioning.json"), encoding="utf-8") as fh:
            listed = json.load(fh)
        if not os.path.exists(f"/proc/{int(listed['pid'])}"):
            return []
        return [str(name) for name in listed["services"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def supervisor_socket(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, "control", "supervisor.sock")


def process_table(query: SupervisorQuery) -> dict[str, dict] | None:
    """The answer of a query already run; getAllProcessInfo when supervisord lacks maestro.processStates."""
    if query.processes is None and query.answered:  # a supervisord of another config
        query = SupervisorQuery(query.socket_path, RPC_BODIES[1])
        probe_all([], query)
    return query.processes


def check_live(env: dict[str, str]) -> tuple[int, str]:
    """Liveness (``--live``): is the runtime itself working? supervisord answers and the controller,
    which restarts services and stops the container when an essential one gives up, runs. A service
    that failed or is unhealthy is not a reason to restart every other one with the container."""
    state_dir = env.get("MAESTRO_STATE_DIR", "").strip() or "/var/lib/maestro"
    query = SupervisorQuery(supervisor_socket(runtime_dir(env, state_dir)))
    probe_all([], query)
    processes = process_table(query)
    if processes is None:
        return 1, "unhealthy: supervisord is not answering"
    controller = processes.get("maestro-controller", {}).get("statename", "NOT_LOADED")
    if controller not in ("RUNNING", "STARTING"):
        return 1, f"unhealthy: maestro-controller {controller}"
    return 0, f"live: supervisord answers, maestro-controller {controller}"


def check(env: dict[str, str]) -> tuple[int, str]:
    override = [int(p) for p in re.split(r"[\s,;]+", env.get("HEALTHCHECK_PORTS", "").strip()) if p]
    if override:
        results = probe_all([(f"port {p}", p, "http", "/") for p in override])
        return summary([f"{n} ({why})" for n, why in results.items() if why], len(override), [], "port(s)")

    state_dir = env.get("MAESTRO_STATE_DIR", "").strip() or "/var/lib/maestro"
    start_period = float(env.get("HEALTHCHECK_START_PERIOD", "20"))
    now = time.time()
    stopped = os.path.join(state_dir, "runstate", "{}.stopped")
    every = load_records(state_dir)
    records = [r for r in every
               if r.get("autostart", True) and r.get("role") != "task"  # a task's phase is in list-services
               and not os.path.exists(stopped.format(r.get("id", "")))]
    states = controller_states(state_dir, now) or {}
    ready = [r for r in records if r.get("state") == "ready" and r.get("port")
             and states.get(r["id"], {}).get("health") not in JUDGED]  # what the controller has not judged
    targets = [(r["id"], int(r["port"]), (r.get("health") or {}).get("kind", "http"),
                (r.get("health") or {}).get("path", "/")) for r in ready
               if (r.get("health") or {}).get("kind", "http") in ("http", "tcp")]
    run_dir = runtime_dir(env, state_dir)  # once: it may walk up to find a read-only mount
    query = SupervisorQuery(supervisor_socket(run_dir))
    answers = probe_all(targets, query)  # probes and the supervisord query run together
    processes = process_table(query)
    if processes is None:
        return 1, "unhealthy: supervisord is not answering"
    failing, starting, healthy = [], [], 0
    for record in records:
        name = record["id"]
        if record.get("state") != "ready":
            failing.append(f"{name} (FAILED)")
            continue
        info = processes.get(name)
        state = info["statename"] if info else "NOT_LOADED"
        run = states.get(name, {})
        if state in ("EXITED", "FATAL", "STOPPED") and run.get("phase") in ("BACKOFF", "FATAL", "EXITED"):
            state = run["phase"]  # the controller's verdict: waiting to restart, or given up
        young = info is not None and now - info.get("start", 0) < start_period
        # A service held back by its dependencies (depends_on) is still starting until it first starts.
        held = state == "STOPPED" and bool(record.get("depends_on")) and not (info or {}).get("start")
        health = run.get("health") if state == "RUNNING" else None
        if health in JUDGED:
            why = None if health == "healthy" else (run.get("health_detail") or health)
        else:  # an exec probe only the controller runs (in the service's sandbox): the process state decides
            exec_probe = (record.get("health") or {}).get("kind") == "exec"
            why = answers.get(name, None if exec_probe else "no port")
        if state == "RUNNING" and why is None:
            healthy += 1
        elif state == "STARTING" or (state in ("RUNNING", "BACKOFF") and young) or held:
            starting.append(name)
        elif state == "RUNNING":
            failing.append(f"{name} ({why})")
        else:
            failing.append(f"{name} ({state})")
    # Still being fetched or built (a build can take minutes): starting, as a young service is.
    recorded = {r.get("id") for r in every}
    starting += [f"{name} (provisioning)" for name in provisioning(run_dir) if name not in recorded]
    if not every:
        # Nothing registered (tasks are): supervisord answering and every program RUNNING is health.
        failing += [f"{n} ({p['statename']})" for n, p in processes.items() if p["statename"] != "RUNNING"]
    return summary(failing, healthy, starting)


USAGE = """usage: maestro-healthcheck [--live]

Probe every registered service at once (the image's HEALTHCHECK): exit 0 healthy,
1 unhealthy, with one line naming what fails. --live: only whether the runtime itself
works (supervisord answers, its controller runs), for a liveness probe.
Settings: HEALTHCHECK_START_PERIOD, HEALTHCHECK_PORTS, HEALTHCHECK_BUDGET (README)."""


def main() -> None:
    unknown = [a for a in sys.argv[1:] if a != "--live"]
    if unknown:  # --help above all: print the usage, never run a check the caller did not ask for
        print(USAGE, file=sys.stdout if unknown[0] in ("-h", "--help") else sys.stderr)
        sys.exit(0 if unknown[0] in ("-h", "--help") else 2)
    # A bad HEALTHCHECK_* value (the entrypoint refuses them at start, exec may still pass one).
    try:
        if BUDGET_ERROR:
            raise ValueError(BUDGET_ERROR)
        code, line = (check_live if "--live" in sys.argv[1:] else check)(dict(os.environ))
    except ValueError as exc:
        code, line = 1, f"unhealthy: bad HEALTHCHECK_* setting: {exc}"
    print(line, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
