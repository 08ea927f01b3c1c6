"""No DNS where no firewall rules are made: a resolver that never answers costs boot, deploy and
remove-service nothing, and is never even asked.

The session runs in a private mount namespace with a throwaway /etc (tests/conftest.py), so this
test points /etc/resolv.conf at a UDP socket that counts queries and never answers.
"""

from __future__ import annotations

import os
import time

import pytest
from fixtures.host import silent_resolver

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.environ.get("MAESTRO_TEST_ISOLATED"), reason="needs the throwaway /etc")]

HOSTS = ("pkg.maestro-dns-test.example", "git.maestro-dns-test.example")


@pytest.fixture
def quiet_resolver():
    # One lookup costs 2 s here (timeout:2): the old code made several per command.
    with silent_resolver("timeout:2 attempts:1") as queries:
        yield queries


def test_firewall_disabled_allowlist_costs_no_dns(maestro, quiet_resolver):
    allow = maestro.root / "sandbox-net-allow"
    allow.write_text("ALLOW_HOST_NETWORK=1\n" + "\n".join(HOSTS) + "\n")
    allow.chmod(0o644)
    maestro.env.update(MAESTRO_SANDBOX_NET_POLICY="allow", MAESTRO_SANDBOX_NET_ALLOW_FILE=str(allow),
                       MAESTRO_FIREWALL_DISABLE="1")
    maestro.preseed("one")
    maestro.preseed("two")
    maestro.boot()
    maestro.wait_running(["one", "two"])
    source = maestro.source("extra")
    started = time.monotonic()
    maestro.run("deploy", "--repo", str(source), "--name", "extra", "--yes", "--wait", "0")
    deploy = time.monotonic() - started
    started = time.monotonic()
    maestro.run("remove-service", "one", "--yes")
    remove = time.monotonic() - started
    assert quiet_resolver == [], f"{len(quiet_resolver)} DNS queries with no rules to make"
    assert deploy < 1.8 and remove < 1.8, (deploy, remove)
