"""Names, program ids, user names and port choice (pure)."""

import pytest

from maestro_runtime.ops.reconcile import assign_ids
from maestro_runtime.spec import parse_services_string
from maestro_runtime.spec.naming import default_user, env_key, name_from_repo, sanitize_name, unique_id, valid_user
from maestro_runtime.state.ports import PortError, PortLedger, choose_port


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("My App", "my-app"), ("web.api", "web-api"), ("Ünïcödé", "unicode"), ("a;b\nc", "a-b-c"),
     ("%(ENV_HOME)s", "env_home-s"), ("--x--", "x"), ("日本", ""), ("a" * 100, "a" * 48)],
)
def test_sanitize_name(raw, expected):
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize(
    ("repo", "name"),
    [("https://github.com/acme/Web-Site.git", "web-site"), ("git@github.com:acme/api.git", "api"),
     ("https://x.org/pkg/app-1.2.tar.gz", "app-1-2"), ("/srv/src/blog/", "blog"), ("file:///a/b.zip", "b")],
)
def test_name_from_repo(repo, name):
    assert name_from_repo(repo) == name


def test_ids_are_unique_stable_and_users_distinct():
    specs = parse_services_string("/a/web;/b/web;/c/web|0||web").specs
    first = assign_ids(specs, reserved=["web"])
    assert [a.id for a in first] == ["web-1", "web-2", "web-3"]
    assert [a.id for a in assign_ids(specs, reserved=["web"])] == [a.id for a in first]
    assert len({a.user for a in first}) == 3 and first[0].user == "svc_web-1"


def test_long_user_names_stay_valid_and_distinct():
    a, b = default_user("x" * 40 + "a"), default_user("x" * 40 + "b")
    assert a != b and len(a) <= 32 and valid_user(a) and valid_user(b)
    assert unique_id("x", ["x", "x-1"]) == "x-2"
    assert env_key("my-app.web") == "MY_APP_WEB"


def test_choose_port_rules():
    def free(_p):
        return True

    ledger = {"a": 8000, "b": 8001}
    assert choose_port("c", None, ledger, (8000, 8010), free) == 8002
    assert choose_port("a", None, ledger, (8000, 8010), free) == 8000  # remembered
    assert choose_port("c", None, ledger, (8000, 8010), lambda p: p != 8002) == 8003  # busy on the host
    assert choose_port("a", 9000, ledger, (8000, 8010), free) == 9000
    with pytest.raises(PortError, match="already used by service 'b'"):
        choose_port("a", 8001, ledger, (8000, 8010), free)
    with pytest.raises(PortError, match="no free port"):
        choose_port("c", None, ledger, (8000, 8001), free)


def test_ledger_persists_atomically_and_releases(tmp_path):
    ledger = PortLedger(tmp_path / "ports.json")
    assert ledger.assign("a", None, (8500, 8600), lambda p: True) == 8500
    assert ledger.assign("b", None, (8500, 8600), lambda p: True) == 8501
    assert PortLedger(tmp_path / "ports.json").read() == {"a": 8500, "b": 8501}
    assert ledger.release("a") == 8500
    assert ledger.read() == {"b": 8501}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_corrupt_ledger_is_a_clear_error(tmp_path):
    (tmp_path / "ports.json").write_text("{not json")
    with pytest.raises(PortError, match="not valid JSON"):
        PortLedger(tmp_path / "ports.json").read()


def test_missing_identity_caps_reads_the_effective_set():
    from maestro_runtime.ops.accounts import missing_identity_caps

    assert missing_identity_caps("CapEff:\t000001ffffffffff\n") == []
    assert missing_identity_caps("CapEff:\t0000000000000000\n") == [
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"]
    assert missing_identity_caps("CapEff:\t00000000000000c0\n") == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL"]
