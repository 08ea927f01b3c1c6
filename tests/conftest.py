"""Test-wide isolation: integration tests create real users, so as root the whole
session runs in a private mount namespace with a throwaway copy of /etc.
Nothing the tests do to /etc (useradd, userdel) reaches the machine."""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile

CLONE_NEWNS = 0x00020000


def _isolate_etc() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    copy = tempfile.mkdtemp(prefix="maestro-test-etc-")
    subprocess.run(["cp", "-a", "/etc/.", copy], check=True)
    subprocess.run(["mount", "--bind", copy, "/etc"], check=True)
    return copy


def pytest_configure(config):
    # The firewall edits the iptables of the machine it runs on: never this one's from tests
    # (firewall tests make their own network namespaces; image tests pass their own env).
    os.environ.setdefault("MAESTRO_FIREWALL_DISABLE", "1")
    if os.geteuid() == 0 and not os.environ.get("MAESTRO_TEST_ISOLATED"):
        os.environ["MAESTRO_TEST_ISOLATED"] = _isolate_etc()
