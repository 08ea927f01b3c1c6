"""Host validation and matching, the policy file, the decision, proxy heads and firewall rules."""

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from maestro_runtime.sandbox import firewall, netpolicy
from maestro_runtime.sandbox import proxy as egress_proxy
from maestro_runtime.sandbox.netpolicy import FileCheck, NetDecision, PolicyText


@pytest.mark.parametrize("host", ["pypi.org", "*.example.com", "a-b.c", "localhost", "X.ORG."])
def test_valid_hosts(host):
    assert netpolicy.validate_host(host) == host.lower().rstrip(".")


@pytest.mark.parametrize("host", ["", "-a.com", "a..b", "*", "a.*.com", "foo bar", "a_b.com", "x" * 64 + ".com",
                                  "http://x.com", "a.com:0", "a.com:65536", "a.com:x", "a.com:80:1"])
def test_invalid_hosts(host):
    with pytest.raises(netpolicy.NetPolicyError):
        netpolicy.validate_host(host)


def test_matching():
    pats = ("pypi.org", "*.example.com")
    assert netpolicy.host_allowed("PyPI.org.", pats)
    assert netpolicy.host_allowed("a.example.com", pats) and netpolicy.host_allowed("a.b.example.com", pats)
    assert not netpolicy.host_allowed("example.com", pats)
    assert not netpolicy.host_allowed("evilexample.com", pats)
    assert not netpolicy.host_allowed("pypi.org.evil.com", pats)
    assert not netpolicy.host_allowed("127.0.0.1", pats)
    assert netpolicy.host_allowed("anything", ())  # no list: every destination


def test_parse_policy_text():
    text = "# policy\nALLOW_HOST_NETWORK=1\npypi.org *.npmjs.org\nfiles.pythonhosted.org # pip\nbad_host\nFOO=2\n"
    got = netpolicy.parse_policy_text(text)
    assert got.flag and got.hosts == ("pypi.org", "*.npmjs.org", "files.pythonhosted.org")
    assert len(got.problems) == 2
    assert not netpolicy.parse_policy_text("ALLOW_HOST_NETWORK=0\n").flag


def _st(uid=0, mode=0o100644):
    return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


def test_file_stat_checks():
    p = Path("/p")
    assert netpolicy.check_file_stat(_st(), p) is None
    assert "not root" in netpolicy.check_file_stat(_st(uid=1000), p)
    assert "group- or world-writable" in netpolicy.check_file_stat(_st(mode=0o100664), p)
    assert "group- or world-writable" in netpolicy.check_file_stat(_st(mode=0o100646), p)
    assert "not a regular file" in netpolicy.check_file_stat(_st(mode=stat.S_IFDIR | 0o755), p)


def test_decide():
    ok = FileCheck(PolicyText(True, ("a.org",)))
    assert netpolicy.decide("deny", ok) == NetDecision("deny")
    assert netpolicy.decide("allow", ok, ("b.org",)) == NetDecision("allow", ("a.org", "b.org"))
    refused = netpolicy.decide("allow", FileCheck(None, "/p is owned by uid 5, not root"))
    assert refused.policy == "deny" and "owned by uid 5" in refused.warning
    noflag = netpolicy.decide("allow", FileCheck(PolicyText(False, ())))
    assert noflag.policy == "deny" and "ALLOW_HOST_NETWORK=1" in noflag.warning
    everything = netpolicy.decide("allow", FileCheck(PolicyText(True, ())))
    assert everything.policy == "allow" and not everything.proxied


def test_read_policy_file_refuses_links(tmp_path):
    target = tmp_path / "real"
    target.write_text("ALLOW_HOST_NETWORK=1\n")
    (tmp_path / "link").symlink_to(target)
    assert netpolicy.read_policy_file(tmp_path / "link").text is None
    assert "does not exist" in netpolicy.read_policy_file(tmp_path / "none").reason


def test_allowlist_ports():
    assert netpolicy.validate_host("Pkg.Example.com:8443") == "pkg.example.com:8443"
    pats = ("pypi.org", "git.example.com:8443", "*.cdn.example.com:8080")
    assert netpolicy.endpoint_allowed("pypi.org", 443, pats) and netpolicy.endpoint_allowed("pypi.org", 80, pats)
    assert not netpolicy.endpoint_allowed("pypi.org", 22, pats)  # no port given: 80 and 443 only
    assert netpolicy.endpoint_allowed("git.example.com", 8443, pats)
    assert not netpolicy.endpoint_allowed("git.example.com", 443, pats)  # a port given: that one only
    assert netpolicy.endpoint_allowed("a.cdn.example.com", 8080, pats)
    assert not netpolicy.endpoint_allowed("a.cdn.example.com", 443, pats)
    assert netpolicy.endpoint_allowed("anything", 25, ())  # no list: every destination
    assert netpolicy.host_allowed("git.example.com", pats)  # names alone (the firewall) ignore ports
    assert firewall.hosts_to_resolve([SimpleNamespace(id="a", uid=5)],
                                     {"a": NetDecision("allow", pats[:2])}) == ["pypi.org", "git.example.com"]


def test_extra_hosts_roundtrip(tmp_path):
    run, state = tmp_path / "run", tmp_path / "state"
    assert netpolicy.add_extra_host(run, state, "web", "A.org", save=False)
    assert not netpolicy.add_extra_host(run, state, "web", "a.org", save=False)
    netpolicy.add_extra_host(run, state, "web", "*.b.org", save=True)
    assert netpolicy.extra_hosts(run, state, "web") == ("*.b.org", "a.org")
    with pytest.raises(netpolicy.NetPolicyError):
        netpolicy.add_extra_host(run, state, "web", "a b", save=False)
    netpolicy.forget_extra_hosts(run, state, "web")
    assert netpolicy.extra_hosts(run, state, "web") == ()


def test_proxy_heads():
    got = egress_proxy.parse_head(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443")
    assert (got.method, got.host, got.port, got.upstream_head) == ("CONNECT", "pypi.org", 443, None)
    got = egress_proxy.parse_head(b"GET http://a.org:8080/x?y=1 HTTP/1.1\r\nHost: a.org\r\n"
                                  b"Proxy-Connection: keep-alive\r\nAccept: */*")
    assert (got.host, got.port) == ("a.org", 8080)
    assert got.upstream_head == (b"GET /x?y=1 HTTP/1.1\r\nHost: a.org\r\nAccept: */*\r\n"
                                 b"Connection: close\r\n\r\n")
    assert egress_proxy.parse_head(b"CONNECT [::1]:22 HTTP/1.1").host == "::1"
    # A tunnel to port 80 would carry plain HTTP with any Host header, past the check below.
    with pytest.raises(egress_proxy.BadRequest, match="port 80"):
        egress_proxy.parse_head(b"CONNECT a.org:80 HTTP/1.1\r\nHost: a.org:80")
    # The Host header must name the target (the upstream routes on it); a missing one is added.
    with pytest.raises(egress_proxy.BadRequest, match="does not match"):
        egress_proxy.parse_head(b"GET http://a.org/ HTTP/1.1\r\nHost: b.org")
    with pytest.raises(egress_proxy.BadRequest, match="more than one"):
        egress_proxy.parse_head(b"GET http://a.org/ HTTP/1.1\r\nHost: a.org\r\nhost: b.org")
    # A bare LF ends a header line for many servers: a Host header hidden in another line.
    with pytest.raises(egress_proxy.BadRequest, match="bare CR or LF"):
        egress_proxy.parse_head(b"GET http://a.org/ HTTP/1.1\r\nX-A: 1\nHost: b.org\r\nHost: a.org")
    with pytest.raises(egress_proxy.BadRequest, match="bare CR or LF"):
        egress_proxy.parse_head(b"GET http://a.org/ HTTP/1.1\r\nX-A: 1\rHost: b.org")
    with pytest.raises(egress_proxy.BadRequest, match="credentials"):
        egress_proxy.parse_head(b"GET http://u:p@a.org/ HTTP/1.1\r\nHost: a.org")
    assert b"Host: a.org:81\r\n" in egress_proxy.parse_head(b"GET http://a.org:81/ HTTP/1.1").upstream_head
    for bad in (b"GET /relative HTTP/1.1", b"nonsense", b"GET ftp://a/ HTTP/1.1", b"CONNECT a:99999 HTTP/1.1"):
        with pytest.raises(egress_proxy.BadRequest):
            egress_proxy.parse_head(bad)


def test_firewall_rules():
    text = firewall.restore_text(4, [8080, 8000, 8080], [firewall.Egress(990, ()),
                                                          firewall.Egress(991, ("1.2.3.4", "::1")),
                                                          firewall.Egress(992, None)])
    lines = text.splitlines()
    assert lines[:3] == ["*filter", ":MAESTRO_INPUT - [0:0]", ":MAESTRO_OUTPUT - [0:0]"]
    ins = [x for x in lines if x.startswith("-A MAESTRO_INPUT")]
    assert ins[0].endswith("-i lo -j ACCEPT") and "ESTABLISHED" in ins[1] and ins[-1].endswith("-j DROP")
    assert [x.split("--dport ")[1].split()[0] for x in ins if "--dport" in x] == ["8000", "8080"]
    assert "-A MAESTRO_OUTPUT -m owner --uid-owner 990 -j REJECT" in lines
    assert "-A MAESTRO_OUTPUT -m owner --uid-owner 991 -d 1.2.3.4 -j ACCEPT" in lines
    assert not any("::1" in x for x in lines) and not any("992" in x for x in lines)
    assert lines[-1] == "COMMIT" and text.endswith("COMMIT\n")
    assert "-p ipv6-icmp" in firewall.restore_text(6, [], [])


def test_plan_egress_per_uid():
    recs = [SimpleNamespace(id="a", uid=5), SimpleNamespace(id="b", uid=5), SimpleNamespace(id="c", uid=6),
            SimpleNamespace(id="d", uid=7)]
    nets = {"a": NetDecision("deny"), "b": NetDecision("allow", ("x.org",)),
            "c": NetDecision("allow", ("*.x.org",)), "d": NetDecision("deny")}
    got = firewall.plan_egress(recs, nets, lambda h: ["9.9.9.9"])
    assert got == [firewall.Egress(5, ("9.9.9.9",)), firewall.Egress(6, None), firewall.Egress(7, ())]
    fw = firewall.Firewall(disabled=True)
    assert "not enforced" in fw.egress_status(NetDecision("deny"))
    assert fw.egress_status(NetDecision("allow")).startswith("unrestricted")


def test_an_allowed_name_answering_with_an_inside_address_opens_only_the_outside_ones():
    """The firewall as the proxy: DNS for an allowed name may point at the metadata service or
    loopback (a wildcard domain anyone can point, a rebinding name); those stay shut unless the
    operator named them (an address, localhost, a name of root's /etc/hosts)."""
    recs = [SimpleNamespace(id="a", uid=5), SimpleNamespace(id="b", uid=6)]
    nets = {"a": NetDecision("allow", ("api.example.test",)), "b": NetDecision("allow", ("mirror.test", "169.254.1.1"))}
    answers = {"api.example.test": ["169.254.169.254", "93.184.216.34", "127.0.0.1"],
               "mirror.test": ["127.0.0.5"], "169.254.1.1": ["169.254.1.1"]}
    got = firewall.plan_egress(recs, nets, lambda h: answers[h], frozenset({"mirror.test"}))
    assert got == [firewall.Egress(5, ("93.184.216.34",)), firewall.Egress(6, ("127.0.0.5", "169.254.1.1"))]
