"""A container without NET_ADMIN (Docker's and podman's default) cannot have the firewall: the boot
says so once; deploy, remove-service and allow-host do not say it again each time."""

from __future__ import annotations

import subprocess

from tests.integration.conftest import wait_for

NO_NET_ADMIN = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"]


def test_commands_do_not_repeat_that_the_firewall_is_unusable(maestro):
    # Every deploy printed two warnings (IPv4 and IPv6 "firewall skipped: ... Permission denied"),
    # and allow-host said "web may now reach ..." of a service that could reach any host.
    # The boot keeps the host's own tables out of the test; the commands, run as root without
    # NET_ADMIN, meet a real iptables that refuses them.
    src = maestro.source("web")
    maestro.boot()
    enabled = {"MAESTRO_FIREWALL_DISABLE": "0"}
    probe = maestro.run(*NO_NET_ADMIN, "iptables", "-w", "-S", "INPUT", check=False)
    assert probe.returncode != 0, "iptables works without NET_ADMIN here: nothing to test"

    out = maestro.run(*NO_NET_ADMIN, "deploy", "--yes", "--repo", str(src), "--name", "web", **enabled)
    assert "deployed web" in out.stdout and "firewall" not in out.stderr, out.stderr
    out = maestro.run(*NO_NET_ADMIN, "maestro", "allow-host", "web", "api.example.com", **enabled)
    assert out.stdout == "web may now reach api.example.com (until the next boot)\n"
    assert "firewall skipped" not in out.stderr
    assert "note: web's egress is not enforced (iptables unusable: " in out.stderr, out.stderr
    assert out.stderr.rstrip().endswith("it reaches any host anyway") and len(out.stderr.splitlines()) == 1
    out = maestro.run(*NO_NET_ADMIN, "remove-service", "web", "--yes", **enabled)
    assert "removed web" in out.stdout and "firewall" not in out.stderr, out.stderr


def test_the_boot_says_once_that_the_firewall_is_unusable(maestro):
    # It said it three times: the boot warning, then "IPv4 ..." and "IPv6 firewall skipped" lines.
    maestro.source("web")
    probe = maestro.run(*NO_NET_ADMIN, "iptables", "-w", "-S", "INPUT", check=False)
    assert probe.returncode != 0, "iptables works without NET_ADMIN here: nothing to test"
    maestro.env["MAESTRO_FIREWALL_DISABLE"] = "0"
    log = maestro.log_path.open("a")
    maestro.proc = subprocess.Popen([*NO_NET_ADMIN, "maestro-entrypoint"], env=maestro.env, stdout=log,
                                    stderr=subprocess.STDOUT)
    wait_for(lambda: "prepared 0 service(s)" in maestro.log() or "no services" in maestro.log(), 60,
             what="the boot's summary")
    said = [line for line in maestro.log().splitlines() if "firewall" in line]
    assert len(said) == 1 and "firewall skipped: iptables is unusable" in said[0], said
