"""Port choice (pure) and the persisted port ledger (atomic writes under a file lock)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from maestro_runtime.state.records import atomic_write

log = logging.getLogger("maestro")
_MAX_LEDGER_BYTES = 4 << 20


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


class LedgerCorrupt(PortError):
    pass


class PortLedger:
    """``{service_id: port}`` in a JSON file; every change happens under an exclusive lock.

    A ledger that cannot be used (torn, a directory, not a mapping of ports) is moved aside
    and rebuilt from ``rebuild()`` (the ports in the service records), with one warning line.
    """

    def __init__(self, path: Path, rebuild: Callable[[], dict[str, int]] | None = None):
        self.path = path
        self.rebuild = rebuild

    def read(self) -> dict[str, int]:
        """The ledger; {} when absent; LedgerCorrupt (one line naming the file) when unusable."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LedgerCorrupt(f"port ledger {self.path}: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LedgerCorrupt(f"port ledger {self.path}: not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read(_MAX_LEDGER_BYTES + 1)
        except OSError as exc:
            raise LedgerCorrupt(f"port ledger {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise LedgerCorrupt(f"port ledger {self.path} is not valid JSON: {str(exc)[:80]}") from None
        if not isinstance(data, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535 for v in data.values()):
            raise LedgerCorrupt(f"port ledger {self.path} is not a map of service names to ports")
        return {str(k): v for k, v in data.items()}

    def _recover(self, problem: LedgerCorrupt) -> dict[str, int]:
        """Set the unusable ledger aside and start again from the records (or refuse, if we cannot)."""
        if self.rebuild is None:
            raise problem
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time():.0f}")
        try:
            os.rename(self.path, aside)
        except OSError as exc:
            raise PortError(f"{problem}; moving it aside failed: {exc.strerror}") from None
        ledger = self.rebuild()
        log.warning("%s; moved to %s and rebuilt from the service records (%d port(s))",
                    problem, aside.name, len(ledger))
        return ledger

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, int]]:
        """Yield the ledger for editing; it is written back atomically on success."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                ledger = self.read()
                before = dict(ledger)
            except LedgerCorrupt as problem:
                ledger = self._recover(problem)
                before = None  # the rebuilt ledger is written even if nothing else changes
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

    def reserve(
        self,
        requests: Sequence[tuple[str, int | None]],
        port_range: tuple[int, int],
        is_free: Callable[[int], bool] = port_is_free,
    ) -> dict[str, int]:
        """:meth:`assign` for many services in one locked write, in the order given (the boot does
        this before it provisions in parallel, so ports never depend on which build ends first).
        A service whose port cannot be given is left out: its own :meth:`assign` raises why."""
        given: dict[str, int] = {}
        with self.locked() as ledger:
            for service_id, requested in requests:
                try:
                    port = choose_port(service_id, requested, ledger, port_range, is_free)
                except PortError:
                    continue
                ledger[service_id] = given[service_id] = port
        return given

    def release(self, service_id: str) -> int | None:
        with self.locked() as ledger:
            return ledger.pop(service_id, None)
