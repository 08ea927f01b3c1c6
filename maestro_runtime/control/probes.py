"""Health probes: the verdicts and state transitions (pure) and the async runners.

One asyncio loop runs every service's probe (no thread or process per service).
An exec probe runs ``<runtime>/launch/<id>.probe.sh``, rendered by provisioning
through the service's own launch chain: its sandbox, its cgroup, its user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

from maestro_runtime.control.policy import Probe
from maestro_runtime.control.runstate import HEALTHY, STARTING, UNHEALTHY, RunState


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str = ""


def http_verdict(head: bytes, expect: int | None) -> Result:
    """Any answer below 500 is healthy, unless ``expect`` names the one status wanted."""
    parts = head.split(b"\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return Result(False, "no HTTP answer")
    status = int(parts[1])
    ok = status == expect if expect is not None else status < 500
    return Result(ok, f"HTTP {status}")


@dataclass(frozen=True)
class Transition:
    state: RunState
    event: str = ""  # "" | unhealthy | recovered
    restart: bool = False  # liveness: restart_on_unhealthy and it just turned unhealthy


def judge(state: RunState, probe: Probe, result: Result, now: float, restart_on_unhealthy: bool) -> Transition:
    """Failures in a row count only after ``start_period`` since the run started."""
    if result.ok:
        fresh = replace(state, health=HEALTHY, health_fails=0, health_detail=result.detail,
                        health_since=state.health_since if state.health == HEALTHY else now,
                        health_alerted=False)
        return Transition(fresh, "recovered" if state.health_alerted else "")
    young = state.last_start is not None and now - state.last_start < probe.start_period
    if young and state.health != HEALTHY:
        return Transition(replace(state, health=STARTING, health_detail=result.detail))
    fails = state.health_fails + 1
    if fails < probe.retries or state.health == UNHEALTHY:
        return Transition(replace(state, health_fails=fails, health_detail=result.detail))
    bad = replace(state, health=UNHEALTHY, health_fails=fails, health_detail=result.detail, health_since=now,
                  health_alerted=True)
    return Transition(bad, "" if state.health_alerted else "unhealthy", restart=restart_on_unhealthy)


def new_run(state: RunState) -> RunState:
    """A new run of the process starts its health afresh (the alert flag stays until it recovers)."""
    return replace(state, health=STARTING, health_fails=0, health_since=None)


# ---------------------------------------------------------------- runners


async def probe_http(port: int, path: str, expect: int | None, timeout: float) -> Result:
    async def go() -> Result:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: maestro-probe\r\n\r\n".encode())
            await writer.drain()
            return http_verdict(await reader.readline(), expect)
        finally:
            writer.close()

    return await _timed(go(), timeout, f"port {port}")


async def probe_tcp(port: int, timeout: float) -> Result:
    async def go() -> Result:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        return Result(True, "connected")

    return await _timed(go(), timeout, f"port {port}")


async def probe_exec(script: Path, timeout: float) -> Result:
    if not script.exists():
        return Result(False, "probe script missing (redeploy the service)")
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", str(script), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole probe: shell, sandbox and command
        await proc.wait()
        return Result(False, f"no answer in {timeout:g}s")
    return Result(code == 0, f"exit {code}")


async def _timed(coro, timeout: float, what: str) -> Result:
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        return Result(False, f"{what}: no answer in {timeout:g}s")
    except ConnectionRefusedError:
        # Trial 15: an app serving a port of its own (hapi's 3000, gunicorn's config 8080) is RUNNING
        # and unreachable; "Connect call failed" did not say why.
        return Result(False, f"{what}: connection refused, nothing listens there (does the app listen on $PORT?)")
    except OSError as exc:
        return Result(False, f"{what}: {exc.strerror or exc}")
    except ValueError:  # a status line longer than the reader's limit (64 KiB): the service's answer
        return Result(False, f"{what}: no HTTP answer")


async def run_probe(probe: Probe, port: int, script: Path) -> Result:
    if probe.kind == "exec":
        return await probe_exec(script, probe.timeout)
    if probe.kind == "tcp":
        return await probe_tcp(port, probe.timeout)
    return await probe_http(port, probe.path, probe.expect, probe.timeout)
