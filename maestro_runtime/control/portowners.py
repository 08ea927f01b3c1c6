"""Who holds a TCP port, by user id: the kernel's sock_diag (else ``/proc/net/tcp{,6}``); parse pure.

Services share the container's network namespace, and a port is anyone's who binds it first:
while a service is down (a crash, a restart, the boot's order) another service can bind its
port and answer its clients, and the service then cannot start again. Nothing here can refuse
that bind (no network namespace per service; a cgroup bind hook needs cgroup v2 and BPF), so
the controller looks while a service is down and before it starts again (``Controller.guard_ports``,
``evict_squatters``) and stops the squatter.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maestro_runtime.state.records import ServiceRecord

LISTEN = "0A"  # TCP_LISTEN in the tables' ``st`` column
READ_LIMIT = 8 << 20  # the fallback's bound: ~50,000 sockets (the netlink query has none to need)

# A port is held by any socket bound to it, not only by a listener: a socket bound and never
# listening (invisible in /proc/net/tcp) or one bound then connected from it keeps the owner's
# bind() failing (EADDRINUSE) all the same. Not counted: TIME_WAIT (no process holds it; the kernel
# shows uid 0) and half-open requests (their listener is counted).
TIME_WAIT, SYN_RECV, CLOSE, LISTEN_STATE, NEW_SYN_RECV, BOUND_INACTIVE = 6, 3, 7, 10, 12, 13
STATES = 0xFFFFFFFF & ~(1 << TIME_WAIT | 1 << SYN_RECV | 1 << NEW_SYN_RECV)
EXPLICIT = frozenset({LISTEN_STATE, CLOSE, BOUND_INACTIVE})  # only an explicit bind() makes these
SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLMSG_ERROR, NLMSG_DONE = 4, 20, 2, 3
DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP


def diag_request(port: int, family: int) -> bytes:
    """A sock_diag dump of the TCP sockets whose local port is ``port`` (the kernel filters them:
    however many sockets others hold, only these come back). inet_diag_req_v2, then a bytecode
    ``sport >= port and sport <= port`` (each op: code, jump if true, jump if false; past the end: no)."""
    code = (struct.pack("=BBH", 2, 8, 20) + struct.pack("=BBH", 0, 0, port)  # S_GE
            + struct.pack("=BBH", 3, 8, 12) + struct.pack("=BBH", 0, 0, port))  # S_LE
    body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, STATES) + bytes(48)
    body += struct.pack("=HH", 4 + len(code), 1) + code  # INET_DIAG_REQ_BYTECODE
    return struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, DUMP, 1, 0) + body


def diag_replies(data: bytes) -> tuple[list[tuple[int, int]], bool]:
    """(state, uid) of each inet_diag_msg in one read, and whether the dump is done."""
    found, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR:
            raise OSError(-struct.unpack_from("=i", data, off + 16)[0], "sock_diag refused the query")
        if length < 16 + 72:
            raise OSError("sock_diag: a short reply")
        found.append((data[off + 17], struct.unpack_from("=I", data, off + 16 + 64)[0]))
        off += (length + 3) & ~3
    return found, False


def counted(state: int, port: int, ephemeral: tuple[int, int]) -> bool:
    """A connection's socket counts only off the kernel's ephemeral range: within it, another
    service's outgoing connection may have been given the port while its owner was down."""
    return state in EXPLICIT or not ephemeral[0] <= port <= ephemeral[1]


def listener_uids(table: str, ports: set[int], ephemeral: tuple[int, int] = (0, -1)) -> dict[int, set[int]]:
    """For each of ``ports`` held by a socket in one /proc table (its header line skipped), the
    sockets' uids. A line: ``sl local_address rem_address st tx:rx tr:when retrnsmt uid ...``,
    the address as ``HEXADDR:HEXPORT``."""
    held: dict[int, set[int]] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            port, state, uid = int(fields[1].rpartition(":")[2], 16), int(fields[3], 16), int(fields[7])
        except ValueError:
            continue
        if port in ports and STATES >> state & 1 and counted(state, port, ephemeral):
            held.setdefault(port, set()).add(uid)
    return held


def listeners(ports: set[int], proc: Path = Path("/proc")) -> dict[int, set[int]]:
    """The uids of the sockets holding each of ``ports`` (IPv4 and IPv6, our network namespace):
    asked of the kernel, two small queries a port (sock_diag; bound-only sockets since Linux 6.8),
    else one read of /proc/net/tcp{,6} (which shows no socket bound without listening or connecting)."""
    ephemeral = _ephemeral(proc)
    held: dict[int, set[int]] = {}
    try:
        for port in ports:
            uids = {uid for family in (socket.AF_INET, socket.AF_INET6)
                    for state, uid in _diag(port, family) if counted(state, port, ephemeral)}
            if uids:
                held[port] = uids
        return held
    except OSError:
        held = {}
    for name in ("tcp", "tcp6"):
        try:
            with (proc / "net" / name).open("rb") as table:
                found = listener_uids(table.read(READ_LIMIT).decode("ascii", "replace"), ports, ephemeral)
        except OSError:  # no IPv6 in this kernel or namespace
            continue
        for port, uids in found.items():
            held.setdefault(port, set()).update(uids)
    return held


def _diag(port: int, family: int) -> list[tuple[int, int]]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, SOCK_DIAG) as nl:
        nl.settimeout(5)
        nl.sendto(diag_request(port, family), (0, 0))
        found: list[tuple[int, int]] = []
        done = False
        while not done:
            more, done = diag_replies(nl.recv(1 << 16))
            found += more
        return found


def _ephemeral(proc: Path) -> tuple[int, int]:
    try:
        low, high = (proc / "sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # the kernel's default


def squatters(records: Iterable[ServiceRecord], owner: ServiceRecord,
              holders: set[int]) -> tuple[list[ServiceRecord], set[int]]:
    """The programs of other services whose users hold ``owner``'s port (every program of such a
    user: its process types too; its tasks, which the controller cannot stop but ends with the
    user's processes), and the holders' uids that are no service's (root's own ...). The owner's
    own user never squats, nor does a service the operator runs as that same user. ``records``
    may name one id twice (the controller's services and the store's records): listed once."""
    others = holders - {owner.uid}
    found = {r.id: r for r in records if r.uid in others and r.uid >= 0 and r.id != owner.id}
    return list(found.values()), others - {r.uid for r in found.values()}
