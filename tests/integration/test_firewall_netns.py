"""The firewall for real, only inside network namespaces created here (never the machine's tables)."""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from maestro_runtime.sandbox import firewall, netpolicy

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not shutil.which("iptables") or not shutil.which("ip"), reason="needs iptables")]

SERVE = ("import socket,sys,threading\nfor p in sys.argv[1:]:\n    s=socket.socket(); s.bind(('0.0.0.0',int(p)));"
         " s.listen()\n    threading.Thread(target=lambda s=s: [s.accept()[0].close() for _ in iter(int,1)],"
         " daemon=True).start()\nprint('up',flush=True)\nimport time; time.sleep(60)\n")
CONNECT = ("import socket,sys\ntry:\n    socket.create_connection((sys.argv[1],int(sys.argv[2])),2); print('open')\n"
           "except OSError as e: print('blocked')\n")


@pytest.fixture
def netns():
    tag = uuid.uuid4().hex[:6]
    a, b = f"mfwa{tag}", f"mfwb{tag}"
    run = lambda *argv: subprocess.run(argv, check=True)  # noqa: E731
    run("ip", "netns", "add", a)
    run("ip", "netns", "add", b)
    try:
        run("ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", "name", f"vb{tag}", "netns", b)
        run("ip", "-n", a, "addr", "add", "10.233.0.1/24", "dev", f"va{tag}")
        run("ip", "-n", b, "addr", "add", "10.233.0.2/24", "dev", f"vb{tag}")
        for ns, dev in ((a, f"va{tag}"), (b, f"vb{tag}")):
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a])
        subprocess.run(["ip", "netns", "del", b])


def _py(ns, code, *args, uid=None):
    drop = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"] if uid else []
    return subprocess.run(["ip", "netns", "exec", ns, *drop, sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=30).stdout.strip()


def test_input_chain_and_egress_in_netns(netns):
    a, b = netns
    fw = firewall.Firewall(prefix=("ip", "netns", "exec", a))
    assert fw.problem(4) is None
    # The service (UID 4242) may only talk to loopback; 8080 is a registered port, 9090 is not.
    problems = fw.apply([8080], [firewall.Egress(4242, ())])
    assert not [p for p in problems if p.startswith("IPv4")], problems
    server = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", SERVE, "8080", "9090"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "up"
        assert _py(b, CONNECT, "10.233.0.1", "8080") == "open"
        assert _py(b, CONNECT, "10.233.0.1", "9090") == "blocked"
        assert _py(a, CONNECT, "127.0.0.1", "9090") == "open"  # loopback always
        server_b = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SERVE, "7070"],
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert server_b.stdout.readline().strip() == "up"
            assert _py(a, CONNECT, "10.233.0.2", "7070") == "open"  # root: unrestricted
            assert _py(a, CONNECT, "10.233.0.2", "7070", uid=4242) == "blocked"  # the service's UID
            # Rebuilding replaces the rules (no duplicates), and an allowlisted address opens.
            fw.apply([8080], [firewall.Egress(4242, ("10.233.0.2",))])
            assert _py(a, CONNECT, "10.233.0.2", "7070", uid=4242) == "open"
        finally:
            server_b.kill()
    finally:
        server.kill()
    rules = subprocess.run(["ip", "netns", "exec", a, "iptables", "-S"], capture_output=True, text=True).stdout
    assert rules.count("-A INPUT -j MAESTRO_INPUT") == 1 and rules.count("-A OUTPUT -j MAESTRO_OUTPUT") == 1
    assert rules.count("--dport 8080") == 1
    if fw.problem(6) is None:
        rules6 = subprocess.run(["ip", "netns", "exec", a, "ip6tables", "-S"], capture_output=True, text=True)
        assert "-A INPUT -j MAESTRO_INPUT" in rules6.stdout and "ipv6-icmp" in rules6.stdout


def test_unusable_iptables_is_reported():
    fw = firewall.Firewall(prefix=("/nonexistent-netns-exec",))
    assert fw.problem(4) is not None
    assert "firewall skipped" in fw.boot_warnings()[0] and "NET_ADMIN" in fw.boot_warnings()[0]
    assert fw.apply([80], [])
    assert fw.egress_status(netpolicy.NetDecision("deny")).startswith("not enforced")
