#!/usr/bin/env python3
"""maestro-runtime HEALTHCHECK: probe every registered service in parallel.

Exit 0 healthy, 1 unhealthy; one summary line naming what fails.

It must start fast, so it is standalone and stdlib-only (run it with ``python3 -I -S``):
it does not import maestro_runtime, and it resolves the same two paths settings.py
does (MAESTRO_STATE_DIR, MAESTRO_RUNTIME_DIR) from the environment by itself.

A service counts as *starting*, not failing, while it is younger than
HEALTHCHECK_START_PERIOD seconds (default 20) or supervisord still has it STARTING.
HEALTHCHECK_PORTS (space, comma or semicolon separated) replaces the list with plain
HTTP probes of those ports.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import xmlrpc.client

DEADLINE = time.monotonic() + float(os.environ.get("HEALTHCHECK_BUDGET", "4.0"))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str):
        super().__init__()
        self.unix_path = path

    def make_connection(self, host):  # the host is ignored: the socket is the address
        return UnixHTTPConnection(self.unix_path, timeout=max(0.5, DEADLINE - time.monotonic()))


def supervisor_processes(socket_path: str) -> dict[str, dict] | None:
    try:
        proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(socket_path))
        return {p["name"]: p for p in proxy.supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error):
        return None


def probe(port: int, kind: str, path: str) -> str | None:
    """None when the service answers; else why not."""
    timeout = max(0.2, min(2.0, DEADLINE - time.monotonic()))
    try:
        if kind == "tcp":
            socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
            return None
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers={"User-Agent": "maestro-healthcheck"})
        status = conn.getresponse().status
        conn.close()
        return None if status < 500 else f"HTTP {status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"port {port}: {getattr(exc, 'strerror', None) or exc.__class__.__name__}"


def probe_all(targets: list[tuple[str, int, str, str]]) -> dict[str, str | None]:
    results: dict[str, str | None] = {}

    def run(name: str, port: int, kind: str, path: str) -> None:
        results[name] = probe(port, kind, path)

    threads = [threading.Thread(target=run, args=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, DEADLINE - time.monotonic()))
    return {t[0]: results.get(t[0], "no answer in time") for t in targets}


def load_records(state_dir: str) -> list[dict]:
    folder = os.path.join(state_dir, "services")
    records = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as handle:
                    records.append(json.load(handle))
            except (OSError, ValueError):
                continue
    return records


def check(env: dict[str, str]) -> tuple[int, str]:
    state_dir = env.get("MAESTRO_STATE_DIR", "/var/lib/maestro")
    runtime_dir = env.get("MAESTRO_RUNTIME_DIR", "/run/maestro")
    start_period = float(env.get("HEALTHCHECK_START_PERIOD", "20"))
    override = [int(p) for p in re.split(r"[\s,;]+", env.get("HEALTHCHECK_PORTS", "").strip()) if p]
    if override:
        results = probe_all([(f"port {p}", p, "http", "/") for p in override])
        failing = [f"{n} ({why})" for n, why in results.items() if why]
        if failing:
            return 1, "unhealthy: " + ", ".join(failing)
        return 0, f"healthy: {len(override)} port(s) answering"

    processes = supervisor_processes(os.path.join(runtime_dir, "control", "supervisor.sock"))
    if processes is None:
        return 1, "unhealthy: supervisord is not answering"
    records = [r for r in load_records(state_dir) if r.get("state") == "ready" and r.get("autostart", True)]
    now = time.time()
    failing, starting, targets = [], [], []
    for record in records:
        name = record["id"]
        info = processes.get(name)
        young = info is not None and info.get("start", 0) and now - info["start"] < start_period
        state = info["statename"] if info else "NOT_LOADED"
        if state == "RUNNING" and record.get("port"):
            health = record.get("health") or {}
            targets.append((name, int(record["port"]), health.get("kind", "http"), health.get("path", "/")))
        elif state == "STARTING" or (state == "BACKOFF" and young):
            starting.append(name)
        elif state != "RUNNING":
            failing.append(f"{name} ({state})")
    for name, why in probe_all(targets).items():
        if why is None:
            continue
        info = processes[name]
        if now - info.get("start", 0) < start_period:
            starting.append(name)
        else:
            failing.append(f"{name} ({why})")
    if not records:
        # Nothing registered: supervisord answering and every program RUNNING is health.
        failing += [f"{n} ({p['statename']})" for n, p in processes.items() if p["statename"] != "RUNNING"]
    if failing:
        return 1, "unhealthy: " + ", ".join(failing)
    healthy = len(targets) - len([t for t in targets if t[0] in starting])
    note = f", {len(starting)} starting ({', '.join(starting)})" if starting else ""
    return 0, f"healthy: {healthy} service(s) answering{note}"


def main() -> None:
    code, line = check(dict(os.environ))
    print(line, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
