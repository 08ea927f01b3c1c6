"""No DNS where no rules are made; otherwise once per name, in parallel, within a deadline, cached.

socket.getaddrinfo is replaced by a counter: the count is the number of DNS lookups.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from maestro_runtime.sandbox import firewall
from maestro_runtime.sandbox.netpolicy import NetDecision


class Lookups:
    def __init__(self, slow: dict[str, float] | None = None):
        self.calls: list[str] = []
        self.slow = slow or {}
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, host, *args, **kwargs):
        with self.lock:
            self.calls.append(host)
        if host in self.slow:
            self.release.wait(self.slow[host])  # a resolver that does not answer
        if host.startswith("bad"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", 0))]


@pytest.fixture
def lookups(monkeypatch):
    counter = Lookups()
    monkeypatch.setattr(socket, "getaddrinfo", counter)
    yield counter
    counter.release.set()


class RulesMade(firewall.Firewall):
    """A firewall whose iptables works, recording what it would feed to iptables-restore."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fed: list[str] = []

    def problem(self, family):
        return None

    def _run(self, argv, stdin=None):
        if stdin:
            self.fed.append(stdin)
        return SimpleNamespace(returncode=0, stderr="", stdout="")


def _services(*allowlists):
    records = [SimpleNamespace(id=f"s{i}", uid=1000 + i, port=8000 + i) for i in range(len(allowlists))]
    nets = {r.id: NetDecision("allow", hosts) for r, hosts in zip(records, allowlists, strict=True)}
    return records, nets


def test_no_dns_when_the_firewall_is_disabled(lookups):
    records, nets = _services(("a.test", "b.test"), ("a.test",))
    assert firewall.Firewall(disabled=True).sync(records, nets) == []
    assert lookups.calls == []


def test_no_dns_when_iptables_is_unusable(lookups):
    fw = firewall.Firewall(prefix=("/nonexistent/maestro-no-such-tool",))
    records, nets = _services(("a.test",))
    problems = fw.sync(records, nets)
    assert problems and all("skipped" in p for p in problems)
    assert lookups.calls == []


def test_each_name_once_for_all_services_and_cached_for_the_run(lookups):
    fw = RulesMade()
    records, nets = _services(("a.test", "b.test"), ("a.test",), ("b.test", "a.test"))
    assert fw.sync(records, nets) == []
    assert sorted(lookups.calls) == ["a.test", "b.test"]
    assert any("-d 192.0.2.10 -j ACCEPT" in text for text in fw.fed)
    fw.sync(records, nets)  # the next change in the same run: no new lookups
    assert sorted(lookups.calls) == ["a.test", "b.test"]


def test_unreachable_resolver_is_waited_on_once_within_the_deadline(lookups):
    lookups.slow = {"hang.test": 30.0}
    fw = RulesMade(resolve_timeout=0.5)
    records, nets = _services(("hang.test", "a.test"), ("bad.test",))
    started = time.monotonic()
    problems = fw.sync(records, nets)
    assert time.monotonic() - started < 2.0
    assert [p for p in problems if "hang.test" in p] == [
        "egress allowlist: hang.test did not resolve within 0.5s; it stays blocked until the next deploy or boot"]
    assert [p for p in problems if "bad.test" in p] == ["egress allowlist: bad.test does not resolve; it stays blocked"]
    started = time.monotonic()
    again = fw.sync(records, nets)
    assert time.monotonic() - started < 0.3  # never waited on twice
    assert not [p for p in again if "hang.test" in p or "bad.test" in p]  # reported once
    assert lookups.calls.count("hang.test") == 1 and lookups.calls.count("bad.test") == 1


def test_names_resolve_in_parallel(lookups):
    hosts = tuple(f"h{i}.test" for i in range(8))
    lookups.slow = dict.fromkeys(hosts, 0.4)
    fw = RulesMade(resolve_timeout=5)
    records, nets = _services(hosts)
    started = time.monotonic()
    assert fw.sync(records, nets) == []
    assert time.monotonic() - started < 1.5  # serial would take 3.2 s
    assert sorted(lookups.calls) == sorted(hosts)


def test_problems_are_returned_not_logged_so_callers_print_each_once(lookups, caplog):
    # Every caller (boot, deploy, remove-service, allow-host) logs what sync returns; apply used
    # to log them too, so each "firewall skipped" line appeared twice per command.
    fw = firewall.Firewall(prefix=("/nonexistent/maestro-no-such-tool",))
    records, nets = _services(("a.test",))
    with caplog.at_level("DEBUG"):
        problems = fw.sync(records, nets)
    assert [p.split(":")[0] for p in problems] == ["IPv4 firewall skipped", "IPv6 firewall skipped"]
    assert caplog.records == []
