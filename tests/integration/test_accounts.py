"""Accounts with a read-only /etc: useradd --prefix into a writable folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maestro_runtime.ops import accounts

pytestmark = pytest.mark.integration


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_prefix_accounts_live_outside_etc(tmp_path):
    root = tmp_path
    root.chmod(0o755)
    prefix, homes = root / "nss", root / "home"
    before = Path("/etc/passwd").read_text()
    account = accounts.ensure_account("svc_prefixed", homes, prefix)
    assert Path("/etc/passwd").read_text() == before
    assert "svc_prefixed:" in (prefix / "etc" / "passwd").read_text()
    assert 20000 <= account.uid <= 29999 and account.home == homes / "svc_prefixed"
    assert (account.home.stat().st_mode & 0o777) == 0o700 and account.home.stat().st_uid == account.uid
    assert accounts.ensure_account("svc_prefixed", homes, prefix) == account  # idempotent
    accounts.delete_account("svc_prefixed", prefix)
    assert "svc_prefixed:" not in (prefix / "etc" / "passwd").read_text()
