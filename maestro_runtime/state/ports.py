"""Port choice (pure) and the persisted port ledger (atomic writes under a file lock)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from maestro_runtime.state.records import atomic_write


class PortError(Exception):
    pass


def choose_port(
    service_id: str,
    requested: int | None,
    ledger: Mapping[str, int],
    port_range: tuple[int, int],
    is_free: Callable[[int], bool],
) -> int:
    """The port for ``service_id``.

    An explicit port must not belong to another service. Otherwise the port the
    ledger remembers wins (so a project keeps its port across reboots), then the
    lowest free port of the range that no other service holds.
    """
    owners = {port: sid for sid, port in ledger.items() if sid != service_id}
    if requested is not None:
        if requested in owners:
            raise PortError(f"port {requested} is already used by service {owners[requested]!r}")
        return requested
    remembered = ledger.get(service_id)
    if remembered is not None and remembered not in owners:
        return remembered
    low, high = port_range
    for port in range(low, high + 1):
        if port not in owners and is_free(port):
            return port
    raise PortError(f"no free port left in {low}-{high}")


def port_is_free(port: int) -> bool:
    """True when nothing listens on the port (we bind briefly, on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class PortLedger:
    """``{service_id: port}`` in a JSON file; every change happens under an exclusive lock."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise PortError(f"port ledger {self.path} is not valid JSON: {exc}") from exc
        return {str(k): int(v) for k, v in data.items()}

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, int]]:
        """Yield the ledger for editing; it is written back atomically on success."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ledger = self.read()
            before = dict(ledger)
            yield ledger
            if ledger != before:
                atomic_write(self.path, json.dumps(ledger, indent=1, sort_keys=True))

    def assign(
        self,
        service_id: str,
        requested: int | None,
        port_range: tuple[int, int],
        is_free: Callable[[int], bool] = port_is_free,
    ) -> int:
        with self.locked() as ledger:
            port = choose_port(service_id, requested, ledger, port_range, is_free)
            ledger[service_id] = port
            return port

    def release(self, service_id: str) -> int | None:
        with self.locked() as ledger:
            return ledger.pop(service_id, None)
