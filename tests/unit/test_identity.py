"""Identity is the operator's decision: who may run services, and what a service's files can say."""

from __future__ import annotations

import json
import os

import pytest

from maestro_runtime.ops.accounts import AccountError, AccountRegistry, allowed_users
from maestro_runtime.spec import SpecError, parse_preseeded, parse_services_string


def test_new_accounts_belong_to_their_first_service(tmp_path):
    registry = AccountRegistry(tmp_path / "accounts.json")
    registry.admit("svc_nobody_has_this", "service a", explicit=False)
    registry.admit("svc_nobody_has_this", "service a", explicit=False)  # again: fine
    with pytest.raises(AccountError, match="user svc_nobody_has_this already belongs to service a"):
        registry.admit("svc_nobody_has_this", "service b", explicit=True)
    assert registry.created("svc_nobody_has_this")
    assert oct(os.stat(tmp_path / "accounts.json").st_mode & 0o777) == "0o600"


def test_sharing_needs_the_operator_to_name_the_user_for_both(tmp_path):
    registry = AccountRegistry(tmp_path / "accounts.json")
    registry.admit("shared_by_op", "service a", explicit=True)
    registry.admit("shared_by_op", "service b", explicit=True)
    assert json.loads((tmp_path / "accounts.json").read_text())["shared_by_op"]["services"] == [
        "service a", "service b"]


def test_foreign_and_system_accounts_are_refused(tmp_path):
    registry = AccountRegistry(tmp_path / "accounts.json", allowed=allowed_users("daemon, www-data"))
    with pytest.raises(AccountError, match="is a system account"):
        registry.admit("daemon", "service a", explicit=True)
    with pytest.raises(AccountError, match=r"not created by maestro-runtime.*MAESTRO_ALLOWED_USERS"):
        AccountRegistry(tmp_path / "other.json").admit("daemon", "service a", explicit=True)
    assert not registry.created("daemon")


def test_a_corrupt_registry_is_rebuilt_not_fatal(tmp_path):
    (tmp_path / "accounts.json").write_text("{truncated")
    registry = AccountRegistry(tmp_path / "accounts.json")
    registry.admit("svc_fresh_one", "service a", explicit=False)
    assert registry.created("svc_fresh_one")


@pytest.mark.parametrize("name", ["maestro-logs", "maestro", "Maestro-Anything"])
def test_reserved_names_are_refused(name):
    result = parse_services_string(f"/srv/x|||{name}")
    assert not result.specs and "is reserved" in str(result.errors[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")
def test_identity_files_a_service_wrote_are_ignored(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "index.html").write_text("x")
    (folder / ".maestro-user").write_text("svc_other")
    (folder / ".maestro-name").write_text("other")
    os.chown(folder / ".maestro-user", 4242, 4242)
    os.link(folder / ".maestro-name", tmp_path / "second-link")
    result = parse_preseeded([tmp_path], {}, "auto")
    spec = result.specs[0]
    assert spec.user is None and spec.name == "app"
    assert sum(".maestro-user ignored" in w or ".maestro-name ignored" in w for w in result.warnings) == 2


def test_a_fifo_as_metadata_is_an_error_for_that_folder(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "index.html").write_text("x")
    os.mkfifo(folder / ".maestro-port")
    result = parse_preseeded([tmp_path], {}, "auto")
    assert not result.specs and isinstance(result.errors[0], SpecError)
    assert str(result.errors[0]).endswith(".maestro-port: is a FIFO, not a regular file")
