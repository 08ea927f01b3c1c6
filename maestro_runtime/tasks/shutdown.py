"""Shutdown in reverse dependency order: what depends on others stops first, in parallel waves."""

from __future__ import annotations

import contextlib
import time
import xmlrpc.client
from pathlib import Path

STOPPED = frozenset({"STOPPED", "EXITED", "FATAL", "UNKNOWN"})


def stop_dependents_first(socket_path: str, records_dir: Path, wave_timeout: float = 10.0) -> int:
    """Stop every wave but the last, waiting for each; return how many waves were stopped.
    The caller then stops everything left at once (the last wave and our own programs)."""
    from maestro_runtime.engine.supervisord import Supervisor
    from maestro_runtime.spec.depgraph import shutdown_waves
    from maestro_runtime.state.records import RecordStore

    records = RecordStore(records_dir).all()
    graph = {r.id: dict(r.depends_on) for r in records if r.ready}
    if not any(graph.values()):
        return 0
    supervisor = Supervisor(Path(socket_path), timeout=5)
    waves = shutdown_waves(graph)[:-1]
    for wave in waves:
        for name in wave:
            with contextlib.suppress(xmlrpc.client.Fault):  # not running or not loaded
                supervisor.call("supervisor.stopProcess", name, False)
        deadline = time.monotonic() + wave_timeout
        while time.monotonic() < deadline:
            states = supervisor.processes()
            if all(states.get(n, {}).get("statename", "STOPPED") in STOPPED for n in wave):
                break
            time.sleep(0.05)
    return len(waves)
