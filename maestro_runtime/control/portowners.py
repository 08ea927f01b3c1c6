"""Who listens on a TCP port, by user id: ``/proc/net/tcp`` and ``tcp6`` (parse pure, read bounded).

Services share the container's network namespace, and a port is anyone's who binds it first:
while a service is down (a crash, a restart, the boot's order) another service can bind its
port and answer its clients, and the service then cannot start again. Nothing here can refuse
that bind (no network namespace per service; a cgroup bind hook needs cgroup v2 and BPF), so
the controller looks while a service is down and before it starts again (``Controller.guard_ports``,
``evict_squatters``) and stops the squatter.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maestro_runtime.state.records import ServiceRecord

LISTEN = "0A"  # TCP_LISTEN in the tables' ``st`` column
READ_LIMIT = 8 << 20  # ~50,000 sockets: a service opening more only hides itself, never stalls us


def listener_uids(table: str, ports: set[int]) -> dict[int, set[int]]:
    """For each of ``ports`` with a listening socket in one table (its header line skipped), the
    sockets' uids. A line: ``sl local_address rem_address st tx:rx tr:when retrnsmt uid ...``,
    the address as ``HEXADDR:HEXPORT``."""
    held: dict[int, set[int]] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[3] != LISTEN:
            continue
        try:
            port, uid = int(fields[1].rpartition(":")[2], 16), int(fields[7])
        except ValueError:
            continue
        if port in ports:
            held.setdefault(port, set()).add(uid)
    return held


def listeners(ports: set[int], proc_net: Path = Path("/proc/net")) -> dict[int, set[int]]:
    """The uids listening on each of ``ports`` over IPv4 and IPv6 in our network namespace: one
    read of each table however many ports are asked about."""
    held: dict[int, set[int]] = {}
    for name in ("tcp", "tcp6"):
        try:
            with (proc_net / name).open("rb") as table:
                found = listener_uids(table.read(READ_LIMIT).decode("ascii", "replace"), ports)
        except OSError:  # no IPv6 in this kernel or namespace
            continue
        for port, uids in found.items():
            held.setdefault(port, set()).update(uids)
    return held


def squatters(records: Iterable[ServiceRecord], owner: ServiceRecord,
              holders: set[int]) -> tuple[list[ServiceRecord], set[int]]:
    """The programs of other services whose users listen on ``owner``'s port (every program of such
    a user: its process types too), and the holders' uids that are no service's (root's own ...).
    The owner's own user never squats, nor does a service the operator runs as that same user."""
    others = holders - {owner.uid}
    found = [r for r in records if r.uid in others and r.uid >= 0 and r.id != owner.id]
    return found, others - {r.uid for r in found}
