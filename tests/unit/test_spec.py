"""SERVICES, SVC_*, YAML and pre-seeded parsing: validation, defaults, precedence."""

from dataclasses import replace
from pathlib import Path

import pytest

from maestro_runtime.settings import Settings
from maestro_runtime.spec import parse_preseeded, parse_services_string, parse_services_yaml, parse_svc_vars
from maestro_runtime.spec.gather import gather_specs


def test_services_string_fields_and_defaults():
    result = parse_services_string("  /src/a|8080|dev|web|alice|npm start ;  /src/b||||| ; ")
    assert not result.errors
    a, b = result.specs
    assert (a.repo, a.port, a.ref, a.name, a.user, a.cmd) == ("/src/a", 8080, "dev", "web", "alice", "npm start")
    assert (b.repo, b.port, b.ref, b.name, b.user, b.cmd) == ("/src/b", None, "", None, None, None)
    assert a.origin == "SERVICES[1]"


def test_services_command_may_contain_pipes():
    (spec,) = parse_services_string("/src/a|0|||| cat x | grep y").specs
    assert spec.cmd == "cat x | grep y"


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ("/src/a|70000", "port", "70000 is out of range"),
        ("/src/a|-1", "port", "must be a number"),
        ("/src/a|http", "port", "must be a number"),
        ("/src/a|0|bad ref", "ref", "not a valid git ref"),
        ("/src/a|0|../x", "ref", "not a valid git ref"),
        ("/src/a|0|main|%%%", "name", "no letters or digits"),
        ("/src/a|0|main|x|Root User", "user", "not a valid user name"),
        ("/src/a|0|main|x|root", "user", "not a valid user name"),
        ("|8080", "repo", "is required"),
        ("echo b", "repo", "must not contain spaces"),
    ],
)
def test_services_string_bad_entries_are_clear_and_isolated(entry, field, words):
    result = parse_services_string(f"/src/ok|8081;{entry};/src/ok2")
    assert [s.repo for s in result.specs] == ["/src/ok", "/src/ok2"]
    (error,) = result.errors
    assert error.origin == "SERVICES[2]" and error.field == field and words in error.message
    assert str(error).startswith(f"SERVICES[2]: {field}: ")


def test_semicolon_in_a_command_splits_the_entry_into_a_clear_error():
    result = parse_services_string("/src/a|0|||n|echo a; echo b")
    assert [s.cmd for s in result.specs] == ["echo a"]
    assert result.errors[0].field == "repo"


def test_svc_vars_count_skip_and_errors():
    env = {
        "SERVICES_COUNT": "3",
        "SVC_1_REPO": "/src/one", "SVC_1_PORT": "9001", "SVC_1_NAME": "one",
        "SVC_3_REPO": "/src/three", "SVC_3_PORT": "99999",
    }
    result = parse_svc_vars(env)
    assert [(s.repo, s.port, s.name) for s in result.specs] == [("/src/one", 9001, "one")]
    assert "SVC_2_REPO is not set" in result.warnings[0]
    assert result.errors[0].origin == "SVC_3" and result.errors[0].field == "port"


def test_svc_vars_non_numeric_count():
    result = parse_svc_vars({"SERVICES_COUNT": "three"})
    assert result.errors[0].origin == "SERVICES_COUNT" and "whole number" in result.errors[0].message


YAML = """
services:
  - repo: https://example.com/a.tar.gz
    port: 8080
    env: {GREETING: "hi %(ENV_HOME)s", DEBUG: true, N: 3}
    health: /healthz
    autostart: false
    keep: [data, uploads]
    allow_hosts: [pypi.org, "*.npmjs.org"]
    memory: 256M
    pids_max: 64
  - repo: /src/b
    health: tcp
    command: ./run.sh
  - repo: /src/c
    colour: blue
  - repo: /src/d
    port: [1]
  - repo: /src/e
    env: {"BAD KEY": 1}
"""


def test_yaml_entries_fields_and_errors_name_file_entry_field():
    result = parse_services_yaml(YAML, "/etc/maestro/services.yml")
    a, b = result.specs
    assert a.port == 8080 and a.env == {"GREETING": "hi %(ENV_HOME)s", "DEBUG": "true", "N": "3"}
    assert (a.health.kind, a.health.path, a.autostart) == ("http", "/healthz", False)
    assert a.keep == ("data", "uploads") and a.allow_hosts == ("pypi.org", "*.npmjs.org")
    assert a.limits.memory == "256M" and a.limits.pids_max == 64
    assert b.health.kind == "tcp" and b.cmd == "./run.sh"
    messages = [str(e) for e in result.errors]
    assert messages[0].startswith("/etc/maestro/services.yml#3: colour: unknown key")
    assert messages[1].startswith("/etc/maestro/services.yml#4: port:")
    assert messages[2].startswith("/etc/maestro/services.yml#5: env:")


def test_yaml_syntax_error_is_one_clear_error():
    result = parse_services_yaml("services: [", "f.yml")
    assert result.errors[0].origin == "f.yml" and result.errors[0].field == "yaml"


def _folder(root: Path, name: str, **files: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for fname, text in files.items():
        (folder / fname.replace("_", "-").replace("dot-", ".")).write_text(text)
    return folder


def test_preseeded_modes_metadata_and_env_overrides(tmp_path):
    _folder(tmp_path, "site", **{"index.html": "<h1>x</h1>"})
    _folder(tmp_path, "empty")
    _folder(tmp_path, "cmdonly", **{"dot-maestro_cmd": "echo hi\necho there\n"})
    _folder(tmp_path, "off", **{"index.html": "x", "dot-maestro_disable": ""})
    _folder(tmp_path, "named", **{"index.html": "x", "dot-maestro_name": "My.App", "dot-maestro_port": "7001",
                                  "dot-maestro_user": "webuser"})
    env = {"MAESTRO_PORT_MY_APP": "7002", "MAESTRO_CMD_SITE": "python3 -m http.server $PORT"}
    auto = parse_preseeded([tmp_path], env, "auto")
    assert not auto.errors
    by_name = {s.name: s for s in auto.specs}
    assert sorted(by_name) == ["My.App", "cmdonly", "site"]
    assert by_name["My.App"].port == 7002 and by_name["My.App"].user == "webuser"
    assert by_name["site"].cmd == "python3 -m http.server $PORT"
    assert by_name["cmdonly"].cmd == "echo hi\necho there"
    assert by_name["My.App"].base_name == "my-app"
    assert sorted(s.name for s in parse_preseeded([tmp_path], env, "always").specs) == [
        "My.App", "cmdonly", "empty", "site"]
    assert parse_preseeded([tmp_path], env, "never").specs == []


def test_preseeded_bad_port_file_is_an_error_for_that_folder_only(tmp_path):
    _folder(tmp_path, "a", **{"index.html": "x", "dot-maestro_port": "http"})
    _folder(tmp_path, "b", **{"index.html": "x"})
    result = parse_preseeded([tmp_path], {}, "auto")
    assert [s.name for s in result.specs] == ["b"]
    assert result.errors[0].field == "port" and "pre-seeded" in result.errors[0].origin


def test_gather_order_legacy_and_unknown_mode(tmp_path):
    _folder(tmp_path / "projects", "pre", **{"index.html": "x"})
    (tmp_path / "services.yml").write_text("- repo: /src/yaml\n")
    env = {
        "MAESTRO_PRESEEDED_ROOTS": f"{tmp_path / 'projects'}, {tmp_path / 'nope'}",
        "MAESTRO_SERVICES_FILE": str(tmp_path / "services.yml"),
        "SERVICES": "/src/services",
        "SERVICES_COUNT": "1", "SVC_1_REPO": "/src/svc",
        "SERVICE_A_REPO": "/old",
    }
    # Settings.from_env refuses an unknown mode (exit 2 at startup); gather still falls back.
    result = gather_specs(replace(Settings.from_env(env), preseeded_mode_raw="sometimes"))
    assert [s.kind for s in result.specs] == ["preseeded", "file", "env", "env"]
    assert [s.repo for s in result.specs][1:] == ["/src/yaml", "/src/services", "/src/svc"]
    assert "using auto" in result.warnings[0]
    assert "SERVICE_A_REPO" in str(result.errors[0]) and "SERVICES=" in str(result.errors[0])


def test_missing_explicit_services_file_is_an_error(tmp_path):
    env = {"MAESTRO_SERVICES_FILE": str(tmp_path / "missing.yml"), "MAESTRO_PRESEEDED_ROOTS": str(tmp_path)}
    result = gather_specs(Settings.from_env(env))
    assert result.errors and "does not exist" in result.errors[0].message
