"""Network policy: the root-owned policy file, host allowlists and ``allow-host``.

Pure: :func:`parse_policy_text`, :func:`validate_host`, :func:`host_allowed`, :func:`endpoint_allowed`,
:func:`decide`. Imperative shell: :func:`read_policy_file` (the ownership and
mode checks), :func:`extra_hosts` / :func:`allow_host` (per-service additions
made at runtime, kept beside the service records).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

FLAG = "ALLOW_HOST_NETWORK"
DENY, ALLOW = "deny", "allow"
# RFC 1123 labels; a pattern may start with "*." to mean any name below a domain.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}$")


class NetPolicyError(ValueError):
    pass


# Variables (any case) that choose how a client leaves the machine: curl/pip/uv/Node clients
# (corepack's proxy-from-env reads npm_config_https_proxy, https_proxy, npm_config_proxy,
# all_proxy, in that order), npm, pip.
PROXY_KEYS = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy", "npm_config_proxy",
                        "npm_config_https_proxy", "npm_config_noproxy", "npm_config_no_proxy", "pip_proxy"})


def is_proxy_key(key: str) -> bool:
    return key.lower() in PROXY_KEYS


DEFAULT_PORTS = (80, 443)  # what an entry without ``:port`` allows through the proxy


def validate_host(raw: str) -> str:
    """An allowlist entry: a lower-cased RFC 1123 host name or ``*.domain`` pattern, optionally
    with ``:PORT`` (1-65535; without one, ports 80 and 443). Raises NetPolicyError."""
    entry = str(raw).strip().lower()
    host, sep, port = entry.partition(":")
    host = host.rstrip(".")
    if len(host) > 253 or not _HOST_RE.match(host):
        raise NetPolicyError(f"{entry[:60]!r} is not a valid host name (RFC 1123, optional leading *., "
                             "optional :port)")
    if not sep:
        return host
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise NetPolicyError(f"{entry[:60]!r}: the port must be a number from 1 to 65535")
    return f"{host}:{int(port)}"


def split_entry(entry: str) -> tuple[str, int | None]:
    """``host[:port]`` -> (host, port or None)."""
    host, sep, port = entry.partition(":")
    return host, int(port) if sep and port.isdigit() else None


def entry_host(entry: str) -> str:
    return split_entry(entry)[0]


def _name_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return name == pattern


def _normal(host: str) -> str:
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]  # IPv6 literal as written in a URL
    return name


def host_allowed(host: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Exact names match themselves; ``*.example.com`` matches any name below example.com (not
    example.com itself). No patterns at all means every destination is allowed. Ports aside."""
    if not patterns:
        return True
    name = _normal(host)
    return any(_name_matches(name, entry_host(p)) for p in patterns)


def endpoint_allowed(host: str, port: int, patterns: tuple[str, ...] | list[str]) -> bool:
    """``host:port`` against the allowlist: an entry with a port allows that port only, one
    without allows :data:`DEFAULT_PORTS`. No patterns at all: every destination."""
    if not patterns:
        return True
    name = _normal(host)
    for pattern in patterns:
        pattern_host, pattern_port = split_entry(pattern)
        if _name_matches(name, pattern_host) and (
                port == pattern_port if pattern_port is not None else port in DEFAULT_PORTS):
            return True
    return False


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PolicyText:
    flag: bool
    hosts: tuple[str, ...]
    problems: tuple[str, ...] = ()


def parse_policy_text(text: str) -> PolicyText:
    """``ALLOW_HOST_NETWORK=1`` plus host patterns, one or more per line; ``#`` starts a comment."""
    flag = False
    hosts: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == FLAG:
                flag = value.strip() == "1"
            else:
                problems.append(f"line {number}: unknown setting {key.strip()[:40]!r}")
            continue
        for word in line.replace(",", " ").split():
            try:
                hosts.append(validate_host(word))
            except NetPolicyError as exc:
                problems.append(f"line {number}: {exc}")
    return PolicyText(flag=flag, hosts=tuple(dict.fromkeys(hosts)), problems=tuple(problems))


@dataclass(frozen=True)
class FileCheck:
    """What the policy file says, or why it is not trusted (``reason``)."""

    text: PolicyText | None
    reason: str | None = None


def check_file_stat(st: os.stat_result, path: Path) -> str | None:
    """Why a policy file with this stat cannot be trusted, or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != 0:
        return f"{path} is owned by uid {st.st_uid}, not root"
    if st.st_mode & 0o022:
        return f"{path} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def read_policy_file(path: Path) -> FileCheck:
    """Open without following links and check the very file that is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return FileCheck(None, f"{path} does not exist")
    except OSError as exc:
        return FileCheck(None, f"{path} cannot be opened ({exc.strerror})")
    with os.fdopen(fd, "rb") as handle:
        reason = check_file_stat(os.fstat(handle.fileno()), path)
        if reason:
            return FileCheck(None, reason)
        data = handle.read(1 << 20)
    return FileCheck(parse_policy_text(data.decode("utf-8", "replace")))


@dataclass(frozen=True)
class NetDecision:
    """The effective policy for one sandbox: ``deny`` or ``allow`` with a host allowlist
    (empty: every destination)."""

    policy: str
    hosts: tuple[str, ...] = ()
    warning: str | None = None

    @property
    def proxied(self) -> bool:
        return self.policy == ALLOW and bool(self.hosts)

    def describe(self) -> dict[str, object]:
        if self.policy == DENY:
            return {"policy": DENY, "detail": "own loopback only"}
        if not self.hosts:
            return {"policy": ALLOW, "detail": "all destinations"}
        return {"policy": ALLOW, "detail": "allowlist", "hosts": list(self.hosts)}


def decide(requested: str, check: FileCheck, extra: tuple[str, ...] = ()) -> NetDecision:
    """Allow only when asked *and* the policy file is trusted and sets the flag."""
    if requested != ALLOW:
        return NetDecision(DENY)
    if check.text is None:
        return NetDecision(DENY, warning=f"network policy 'allow' refused, using deny: {check.reason}")
    if not check.text.flag:
        return NetDecision(DENY, warning=f"network policy 'allow' refused, using deny: the policy file "
                                         f"does not contain {FLAG}=1")
    # The file's hosts plus the sandbox's own (allow_hosts, --allow-host); none at all: everything.
    hosts = tuple(dict.fromkeys((*check.text.hosts, *extra)))
    warning = "; ".join(check.text.problems) or None
    return NetDecision(ALLOW, hosts, warning=warning and f"policy file: {warning}")


# ---------------------------------------------------------------- allow-host (runtime additions)


def _extras_file(folder: Path, service_id: str) -> Path:
    return folder / "allow-hosts" / f"{service_id}.txt"


def extra_hosts(runtime_dir: Path, state_dir: Path, service_id: str) -> tuple[str, ...]:
    """Hosts added with ``allow-host``: saved ones (state dir) and this boot's (runtime dir)."""
    hosts: list[str] = []
    for folder in (state_dir, runtime_dir):
        with contextlib.suppress(OSError):
            for line in _extras_file(folder, service_id).read_text().split():
                with contextlib.suppress(NetPolicyError):
                    hosts.append(validate_host(line))
    return tuple(dict.fromkeys(hosts))


def add_extra_host(runtime_dir: Path, state_dir: Path, service_id: str, host: str, *, save: bool) -> bool:
    """Record one host for a service; False when it was already there."""
    name = validate_host(host)
    folder = state_dir if save else runtime_dir
    path = _extras_file(folder, service_id)
    current = set(path.read_text().split()) if path.exists() else set()
    if name in current:
        return False
    from maestro_runtime.state.records import atomic_write

    atomic_write(path, "".join(f"{h}\n" for h in sorted(current | {name})), mode=0o644)
    return True


def forget_extra_hosts(runtime_dir: Path, state_dir: Path, service_id: str) -> None:
    for folder in (state_dir, runtime_dir):
        _extras_file(folder, service_id).unlink(missing_ok=True)


def allow_host(settings, service_id: str, host: str, *, save: bool = False) -> str:
    """``maestro allow-host SERVICE HOST [--save]``: add HOST to the service's egress allowlist.

    Validates HOST (RFC 1123, ``*.domain`` allowed), records it for this boot (or for good
    with ``save``) and returns the normalised name. The caller (cli) then re-applies the
    firewall (``SandboxPolicy.sync_firewall``) so running services see the change.
    Raises NetPolicyError for a bad host or an unknown service.
    """
    from maestro_runtime.spec.naming import PROGRAM_ID_RE
    from maestro_runtime.state.records import RecordStore

    if not PROGRAM_ID_RE.match(service_id) or RecordStore(settings.records_dir).load(service_id) is None:
        raise NetPolicyError(f"no such service: {service_id[:60]!r}")
    name = validate_host(host)
    add_extra_host(settings.runtime_dir, settings.state_dir, service_id, name, save=save)
    return name


# ---------------------------------------------------------------- addresses inside the machine


def inward(address: str) -> bool:
    """An address that leads back into the machine or its cloud, not out: loopback, link-local
    (169.254.169.254, the metadata service), unspecified, multicast; IPv4-mapped forms too."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast


def hosts_file_names(text: str) -> frozenset[str]:
    """The names of an /etc/hosts text (root's: what it maps is the operator's say, not DNS's)."""
    names = set()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        names.update(w.lower().rstrip(".") for w in words[1:])
    return frozenset(names)


def named_inward(host: str, local: frozenset[str] = frozenset()) -> bool:
    """The allowlist named the machine itself (``localhost``, an address, a name /etc/hosts
    maps): the operator meant it. A name only DNS answers for is the remote's say."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name in local:
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def local_names() -> frozenset[str]:
    """The names root's /etc/hosts maps (read once per call, at most 1 MiB)."""
    try:
        with open("/etc/hosts", encoding="utf-8", errors="replace") as fh:
            return hosts_file_names(fh.read(1 << 20))
    except OSError:
        return frozenset()
