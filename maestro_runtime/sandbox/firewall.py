"""Inbound firewall (MAESTRO_INPUT) and per-service egress (MAESTRO_OUTPUT, owner match on UID).

Pure: :func:`plan_egress`, :func:`restore_text`. Imperative shell: :class:`Firewall`,
which feeds ``iptables-restore --noflush`` (atomic per table; declaring our
chains flushes only them) for IPv4 and IPv6 and makes sure INPUT/OUTPUT jump
to them. ``prefix`` lets tests run every command inside a network namespace
they created (``ip netns exec NS``), never on the machine's own tables.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime.sandbox import netpolicy

CHAIN_IN = "MAESTRO_INPUT"
CHAIN_OUT = "MAESTRO_OUTPUT"
TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}


@dataclass(frozen=True)
class Egress:
    """Egress of one UID: ``None`` addresses means unrestricted; () means loopback only."""

    uid: int
    addresses: tuple[str, ...] | None


def egress_kind(net: netpolicy.NetDecision) -> str:
    if net.policy == netpolicy.DENY:
        return "deny"
    if not net.hosts:
        return "all"
    if any(h.startswith("*.") for h in net.hosts):
        return "wildcard"
    return "list"


def hosts_to_resolve(records: Sequence, nets: Mapping[str, netpolicy.NetDecision]) -> list[str]:
    """Every name the egress rules need addresses for (exact names of allowlists), once each."""
    hosts: dict[str, None] = {}
    for record in records:
        net = nets.get(record.id)
        if record.uid >= 0 and net is not None and egress_kind(net) == "list":
            hosts.update(dict.fromkeys(netpolicy.entry_host(h) for h in net.hosts))  # ports: the proxy's
    return list(hosts)


def plan_egress(records: Sequence, nets: Mapping[str, netpolicy.NetDecision],
                resolve: Callable[[str], list[str]], local: frozenset[str] = frozenset()) -> list[Egress]:
    """One entry per UID; services sharing a user share the union of their allowances. An
    allowed name whose DNS answers lead back into the machine or its cloud (loopback,
    link-local: the metadata service) does not open those, unless the operator named them
    (an address, ``localhost``, a name of root's /etc/hosts: ``local``), as in the proxy."""
    by_uid: dict[int, set[str] | None] = {}
    for record in records:
        if record.uid < 0:
            continue
        net = nets[record.id]
        kind = egress_kind(net)
        current = by_uid.get(record.uid, set())
        if current is None or kind in ("all", "wildcard"):
            by_uid[record.uid] = None  # wildcards cannot be matched by IP: reported as not enforced
            continue
        if kind == "list":
            for host in net.hosts:
                name = netpolicy.entry_host(host)
                answers = resolve(name)
                current |= set(answers if netpolicy.named_inward(name, local) else
                               [a for a in answers if not netpolicy.inward(a)])
        by_uid[record.uid] = current
    return [Egress(uid, None if addrs is None else tuple(sorted(addrs))) for uid, addrs in sorted(by_uid.items())]


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def parse_resolvers(text: str) -> tuple[str, ...]:
    """The ``nameserver`` addresses of a resolv.conf (loopback ones need no rule: lo is open)."""
    found: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver" and "%" not in words[1]:  # iptables has no scopes
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_address(words[1])
                if not address.is_loopback:
                    found.append(str(address))
    return tuple(dict.fromkeys(found))


def restore_text(family: int, ports: Sequence[int], egress: Sequence[Egress],
                 resolvers: Sequence[str] = ()) -> str:
    """``iptables-restore --noflush`` input that rebuilds both our chains. DNS is allowed to
    ``resolvers`` only: port 53 to any host would be an exfiltration path."""
    lines = ["*filter", f":{CHAIN_IN} - [0:0]", f":{CHAIN_OUT} - [0:0]",
             f"-A {CHAIN_IN} -i lo -j ACCEPT",
             f"-A {CHAIN_IN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    if family == 6:
        lines.append(f"-A {CHAIN_IN} -p ipv6-icmp -j ACCEPT")  # neighbour discovery: IPv6 needs it
    lines += [f"-A {CHAIN_IN} -p tcp -m tcp --dport {int(p)} -j ACCEPT" for p in sorted(set(ports))]
    lines.append(f"-A {CHAIN_IN} -j DROP")
    lines += [f"-A {CHAIN_OUT} -o lo -j ACCEPT",
              f"-A {CHAIN_OUT} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    for entry in egress:
        if entry.addresses is None:
            continue
        owner = f"-A {CHAIN_OUT} -m owner --uid-owner {int(entry.uid)}"
        addrs = [a for a in entry.addresses if _family(a) == family]
        if entry.addresses:  # names need DNS, from the container's resolvers only
            for resolver in (r for r in resolvers if _family(r) == family):
                lines += [f"{owner} -d {resolver} -p udp -m udp --dport 53 -j ACCEPT",
                          f"{owner} -d {resolver} -p tcp -m tcp --dport 53 -j ACCEPT"]
        lines += [f"{owner} -d {a} -j ACCEPT" for a in addrs]
        lines.append(f"{owner} -j REJECT")
    return "\n".join([*lines, "COMMIT", ""])


def _resolve(host: str) -> list[str]:
    if netpolicy.is_ip(host):
        return [host.strip("[]")]
    with contextlib.suppress(OSError, UnicodeError):
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    return []


RESOLVE_TIMEOUT = 3.0  # seconds for all the names of one deploy together
RESOLVE_WORKERS = 8


class Resolver:
    """Names to addresses for the egress rules: all at once, in parallel (at most
    RESOLVE_WORKERS lookups), within one deadline, each answer kept for the process's life.

    A name that fails or times out is reported once and remembered as unresolvable, so it is
    never waited on twice. Daemon threads by hand rather than concurrent.futures: its pool
    joins its workers at interpreter exit, so one hung lookup would hold a CLI command for
    the whole resolver timeout after its work was done.
    """

    def __init__(self, lookup: Callable[[str], list[str]] = _resolve, timeout: float = RESOLVE_TIMEOUT,
                 workers: int = RESOLVE_WORKERS):
        self.lookup = lookup
        self.timeout = timeout
        self.workers = workers
        self._answers: dict[str, tuple[str, ...]] = {}

    def resolve(self, hosts: Iterable[str]) -> tuple[dict[str, tuple[str, ...]], list[str]]:
        """(addresses per host, problems for names that failed now); cached names cost nothing."""
        todo = [h for h in dict.fromkeys(hosts) if h not in self._answers]
        done: dict[str, tuple[str, ...]] = {}
        problems: list[str] = []
        if todo:
            pending = list(todo)
            cond = threading.Condition()

            def work() -> None:
                while True:
                    with cond:
                        if not pending:
                            return
                        host = pending.pop()
                    try:
                        found = tuple(self.lookup(host))
                    except Exception:  # a lookup must never take the deploy down
                        found = ()
                    with cond:
                        done[host] = found
                        cond.notify_all()

            for _ in range(min(self.workers, len(todo))):
                threading.Thread(target=work, name="maestro-resolve", daemon=True).start()
            deadline = time.monotonic() + self.timeout
            with cond:
                while len(done) < len(todo) and (left := deadline - time.monotonic()) > 0:
                    cond.wait(left)
                answers = {h: done.get(h, ()) for h in todo}
            for host in todo:
                self._answers[host] = answers[host]
                if host not in done:
                    problems.append(f"egress allowlist: {host} did not resolve within {self.timeout:g}s; "
                                    "it stays blocked until the next deploy or boot")
                elif not answers[host]:
                    problems.append(f"egress allowlist: {host} does not resolve; it stays blocked")
        return {h: self._answers[h] for h in dict.fromkeys(hosts)}, problems


class Firewall:
    def __init__(self, *, disabled: bool = False, prefix: Sequence[str] = (),
                 resolve: Callable[[str], list[str]] = _resolve, resolve_timeout: float = RESOLVE_TIMEOUT,
                 resolv_conf: Path = Path("/etc/resolv.conf")):
        self.disabled = disabled
        self.resolv_conf = resolv_conf
        self.prefix = tuple(prefix)
        self.resolver = Resolver(resolve, resolve_timeout)
        self._available: dict[int, str | None] = {}

    @classmethod
    def from_config(cls, config) -> Firewall:
        return cls(disabled=config.firewall_disabled)

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *argv], input=stdin, capture_output=True, text=True, timeout=30)

    def problem(self, family: int) -> str | None:
        """Why this family's table cannot be managed (no tool, no NET_ADMIN), or None."""
        if family not in self._available:
            try:
                proc = self._run([TOOLS[family][0], "-w", "-S", "INPUT"])
                self._available[family] = None if proc.returncode == 0 else \
                    (proc.stderr.strip().splitlines() or ["failed"])[-1]
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._available[family] = str(exc)
        return self._available[family]

    def egress_status(self, net: netpolicy.NetDecision) -> str:
        kind = egress_kind(net)
        if kind == "all":
            return "unrestricted (allow, no host list)"
        if self.disabled:
            return "not enforced (MAESTRO_FIREWALL_DISABLE=1)"
        if (why := self.problem(4)) is not None:
            return f"not enforced (iptables unusable: {why})"
        if kind == "wildcard":
            return "not enforced (wildcard host patterns cannot be matched by address)"
        return "iptables owner match on the service's UID" + (
            " (host names resolved at deploy)" if kind == "list" else "")

    def boot_warnings(self) -> list[str]:
        if self.disabled:
            return ["firewall disabled (MAESTRO_FIREWALL_DISABLE=1): no inbound filtering, "
                    "service egress not enforced"]
        why = self.problem(4)
        if why is not None:
            return [f"firewall skipped: iptables is unusable ({why}); grant --cap-add NET_ADMIN. "
                    "Inbound traffic is not filtered and service egress is not enforced"]
        if (why6 := self.problem(6)) is not None:
            return [f"IPv6 firewall skipped: ip6tables is unusable ({why6})"]
        return []

    def skipped(self) -> list[str]:
        """What :meth:`apply` reports for each family it cannot manage here: a standing condition
        (no iptables, no NET_ADMIN) that the boot says and list-services shows per service."""
        return [f"IPv{family} firewall skipped: {why}" for family in (4, 6) if (why := self.problem(family))]

    def apply(self, ports: Sequence[int], egress: Sequence[Egress]) -> list[str]:
        """Rebuild both chains for each usable family; returns problems (never raises, never logs)."""
        if self.disabled:
            return []
        try:
            resolvers = parse_resolvers(self.resolv_conf.read_text(errors="replace")[:65536])
        except OSError:
            resolvers = ()  # glibc then asks 127.0.0.1, which lo already allows
        problems = self.skipped()
        for family in (4, 6):
            if self.problem(family) is not None:
                continue
            tool, restore = TOOLS[family]
            proc = self._run([restore, "-w", "--noflush"], restore_text(family, ports, egress, resolvers))
            if proc.returncode != 0:
                problems.append(f"{restore} failed: {proc.stderr.strip()[:300]}")
                continue
            for parent, chain in (("INPUT", CHAIN_IN), ("OUTPUT", CHAIN_OUT)):
                if self._run([tool, "-w", "-C", parent, "-j", chain]).returncode != 0:
                    self._run([tool, "-w", "-I", parent, "1", "-j", chain])
        return problems  # the caller logs them (logging here too printed each one twice)

    def sync(self, records: Sequence, nets: Mapping[str, netpolicy.NetDecision]) -> list[str]:
        """Rebuild the rules. Names are resolved only when rules are really made: a disabled or
        unusable firewall costs no DNS at all (an unreachable resolver must not slow deploys)."""
        ports = [r.port for r in records if r.port]
        if self.disabled:
            return []
        if self.problem(4) is not None and self.problem(6) is not None:
            return self.apply(ports, [])  # reports why nothing is made
        answers, problems = self.resolver.resolve(hosts_to_resolve(records, nets))
        return [*problems, *self.apply(ports, plan_egress(records, nets, lambda h: list(answers.get(h, ())),
                                                   netpolicy.local_names()))]
