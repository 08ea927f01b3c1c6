"""Test-wide isolation: integration tests create real users, so as root the whole
session runs in a private mount namespace with a throwaway copy of /etc.
Nothing the tests do to /etc (useradd, userdel) reaches the machine."""

from __future__ import annotations

import os

from fixtures.host import isolate_etc


def pytest_configure(config):
    # The firewall edits the iptables of the machine it runs on: never this one's from tests
    # (firewall tests make their own network namespaces; image tests pass their own env).
    os.environ.setdefault("MAESTRO_FIREWALL_DISABLE", "1")
    isolate_etc()  # as root: a private mount namespace with a throwaway copy of /etc
