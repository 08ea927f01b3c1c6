"""Service egress for real, in network namespaces made here: DNS only to the container's resolvers."""

import os
import shutil
import subprocess
import sys

import pytest

from maestro_runtime.sandbox import firewall

from .test_firewall_netns import CONNECT, SERVE, _py, netns  # noqa: F401 (netns is a fixture)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not shutil.which("iptables") or not shutil.which("ip"), reason="needs iptables")]


def test_dns_egress_only_to_the_resolvers_of_resolv_conf(netns, tmp_path):  # noqa: F811
    a, b = netns
    links = subprocess.run(["ip", "-n", b, "-o", "link", "show", "type", "veth"], capture_output=True, text=True)
    dev = links.stdout.split(":")[1].strip().split("@")[0]
    # b answers on port 53 at two addresses: the resolver named in resolv.conf, and any other host.
    subprocess.run(["ip", "-n", b, "addr", "add", "10.233.0.3/24", "dev", dev], check=True)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# written by the test\nnameserver 10.233.0.2\nnameserver 127.0.0.11\noptions ndots:1\n")
    fw = firewall.Firewall(prefix=("ip", "netns", "exec", a), resolv_conf=conf)
    # UID 4242 may reach one allowlisted address (so it needs DNS), nothing else.
    fw.apply([], [firewall.Egress(4242, ("10.233.0.9",))])
    server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SERVE, "53"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "up"
        assert _py(a, CONNECT, "10.233.0.2", "53", uid=4242) == "open"  # the resolver
        assert _py(a, CONNECT, "10.233.0.3", "53", uid=4242) == "blocked"  # port 53 elsewhere: no
        assert _py(a, CONNECT, "10.233.0.3", "53") == "open"  # root is not restricted
    finally:
        server.kill()
        server.wait()
    rules = subprocess.run(["ip", "netns", "exec", a, "iptables", "-S", "MAESTRO_OUTPUT"], capture_output=True,
                           text=True).stdout
    assert all("-d 10.233.0.2/32" in line for line in rules.splitlines() if "--dport 53" in line), rules


def test_resolvers_parsed_from_resolv_conf():
    text = "nameserver 1.1.1.1\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::1 # x\n" \
           "search example.com\nnameserver bogus\n;nameserver 9.9.9.9\n"
    assert firewall.parse_resolvers(text) == ("1.1.1.1", "2001:db8::1")
    text4 = firewall.restore_text(4, [], [firewall.Egress(7, ("192.0.2.7",))], ("1.1.1.1", "2001:db8::1"))
    dns = [line for line in text4.splitlines() if "--dport 53" in line]
    assert dns == ["-A MAESTRO_OUTPUT -m owner --uid-owner 7 -d 1.1.1.1 -p udp -m udp --dport 53 -j ACCEPT",
                   "-A MAESTRO_OUTPUT -m owner --uid-owner 7 -d 1.1.1.1 -p tcp -m tcp --dport 53 -j ACCEPT"]
