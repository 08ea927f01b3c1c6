"""Hostile specs, property-based: thousands of random and adversarial inputs.

Parsers may only ever raise nothing (errors come back as SpecError values);
every spec they accept renders into program files that supervisor's own
parser reads back as exactly the intended programs and keys, and into a
launch script whose exec line splits back into exactly the intended argv.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from maestro_runtime.engine.launch import command_argv, render_launch_script, service_environment
from maestro_runtime.engine.supervisord import ProgramOptions, render_main_config, render_program
from maestro_runtime.ops.reconcile import assign_ids
from maestro_runtime.spec import (
    SERVICE_FIELDS,
    SpecError,
    parse_preseeded_folder,
    parse_services_string,
    parse_services_yaml,
    parse_svc_vars,
)
from maestro_runtime.state.records import ServiceRecord

from .conftest import count

# Characters that broke the reference or that INI, shells and YAML treat specially.
NASTY = "%;|\n\r\t\x00 #=[]:$`'\"\\{}()&<>*?~,./-_Ωé日\u202e\ufeff"
nasty_text = st.text(alphabet=st.sampled_from(NASTY) | st.characters(), max_size=40)
word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
field_value = st.one_of(nasty_text, word, st.sampled_from(["", "0", "70000", "-1", "80", "/srv/x", "%(ENV_HOME)s",
                                                           "a\n[program:evil]", "x ; y", "100%"]))


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_specs(specs) -> None:
    """Every accepted spec: ids valid, program files parse into exactly these programs."""
    assignments = assign_ids(specs)
    ids = [a.id for a in assignments]
    assert len(set(ids)) == len(ids), ids
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conf_d = root / "conf.d"
        conf_d.mkdir()
        for a in assignments:
            (conf_d / f"{a.id}.conf").write_text(render_program(a.id, root / "launch" / f"{a.id}.sh",
                                                                ProgramOptions(), revision="ab12"))
        main = root / "supervisord.conf"
        main.write_text(render_main_config(conf_path=main, socket=root / "s.sock", include_dir=conf_d,
                                           pidfile=root / "pid", childlogdir=root, loglevel="info"))
        options = ServerOptions()
        options.realize(args=["-c", str(main)])
        groups = {g.name: g for g in options.process_group_configs}
        assert set(groups) == {*ids, "maestro-logs"}
        for a in assignments:
            (proc,) = groups[a.id].process_configs
            assert proc.name == a.id
            assert proc.command == f"/bin/sh {root}/launch/{a.id}.sh ab12"
            # supervisord never restarts a service: the controller does, with backoff (control/)
            assert proc.autorestart is False and proc.stopasgroup and proc.startsecs == 0
    for spec in specs:
        if spec.cmd is not None:
            _check_launch(spec.cmd, dict(spec.env))
    count("hostile_specs_rendered", len(specs))


def _check_launch(command: str, env: dict[str, str]) -> None:
    record = ServiceRecord(
        id="svc", name="svc", kind="env", origin="x", source="/src", directory="/srv/svc dir", user="svc_x",
        uid=12345, gid=12345, home="/home/svc", tmp_dir="/home/svc/t", cache_dir="/home/svc/c", port=8080,
        command=command, env=env,
    )
    script = render_launch_script(record)
    head, sep, tail = script.partition(f"\ncd {shlex.quote(record.directory)} || exit 1\nexec ")
    assert sep and "\n" not in head.split("\n", 2)[-1], script[:200]
    # The whole rest of the script is one command: it splits back into exactly the intended argv,
    # so a newline or quote in a value never becomes a command or line of its own.
    want_env = [f"{k}={v}" for k, v in service_environment(record).items()]
    setpriv = ["/usr/bin/setpriv", "--reuid=12345", "--regid=12345", "--clear-groups", "--no-new-privs", "--"]
    root_env = ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8"]
    # The spec's environment is set only after the drop: root's env and setpriv get a fixed one.
    assert shlex.split(tail) == [*root_env, *setpriv, "/usr/bin/env", "-i", *want_env, *command_argv(command)]


@SETTINGS
@given(st.lists(st.tuples(*[field_value] * len(SERVICE_FIELDS)), max_size=6), st.sampled_from([";", " ; ", ";;"]))
def test_services_string(entries, sep):
    raw = sep.join("|".join(e) for e in entries)
    result = parse_services_string(raw)  # never raises: a bad entry is an error in the result
    assert all(isinstance(e, SpecError) for e in result.errors)
    _check_specs(result.specs)
    count("inputs_services_string")


@SETTINGS
@given(st.text(max_size=200))
def test_services_string_raw_text(raw):
    result = parse_services_string(raw)  # never raises: a bad entry is an error in the result
    _check_specs(result.specs)
    count("inputs_services_string")


@SETTINGS
@given(st.one_of(st.sampled_from(["", "0", "3", "x", "-1", "99999999999999999999", " 2 "]), nasty_text),
       st.dictionaries(st.sampled_from([f"SVC_{i}_{f.upper()}" for i in range(1, 4) for f in SERVICE_FIELDS]),
                       field_value, max_size=12))
def test_svc_vars(count_raw, env):
    if count_raw.strip().isdigit() and len(count_raw.strip()) > 4:
        count_raw = "3"  # a huge count is valid input but would loop for hours; counted in a unit test
    env = {"SERVICES_COUNT": count_raw, **env}
    result = parse_svc_vars(env)
    assert all(isinstance(e, SpecError) for e in result.errors)
    _check_specs(result.specs)
    count("inputs_svc_vars")


yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.floats(allow_nan=True), field_value)
yaml_value = st.recursive(yaml_scalar, lambda inner: st.lists(inner, max_size=3) |
                          st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
yaml_entry = st.dictionaries(st.sampled_from(["repo", "port", "ref", "name", "user", "cmd", "command", "env",
                                              "health", "autostart", "sha256", "keep", "allow_hosts", "memory",
                                              "cpu_quota_us", "pids_max", "bogus"]), yaml_value, max_size=7)


@SETTINGS
@given(st.one_of(st.lists(yaml_entry, max_size=5), st.fixed_dictionaries({"services": st.lists(yaml_entry,
                                                                                              max_size=5)}),
                 yaml_value))
def test_yaml_documents(doc):
    text = yaml.safe_dump(doc, allow_unicode=True)
    result = parse_services_yaml(text, "services.yml")
    assert all(isinstance(e, SpecError) for e in result.errors)
    _check_specs(result.specs)
    count("inputs_yaml")


@SETTINGS
@given(st.text(alphabet=st.sampled_from("-: \n[]{}&*!|>'\"%@`#,?abcx0123\t"), max_size=120))
def test_yaml_raw_text(text):
    result = parse_services_yaml(text, "services.yml")
    _check_specs(result.specs)
    count("inputs_yaml")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([".maestro-name", ".maestro-port", ".maestro-cmd", ".maestro-user"]),
                       st.binary(max_size=60) | field_value.map(lambda s: s.encode("utf-8", "surrogatepass")),
                       max_size=4))
def test_preseeded_folder(meta):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "proj"
        folder.mkdir()
        (folder / "index.html").write_text("x")
        for name, data in meta.items():
            (folder / name).write_bytes(data)
        try:
            spec = parse_preseeded_folder(folder, os.environ, "auto")
        except SpecError:
            count("inputs_preseeded")
            return
        if spec is not None:
            _check_specs([spec])
    count("inputs_preseeded")


@SETTINGS
@given(nasty_text.filter(lambda s: s.strip() and "\x00" not in s),
       st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
                       st.text(max_size=20).filter(lambda s: "\x00" not in s), max_size=4))
def test_launch_script_keeps_every_value_in_place(command, env):
    _check_launch(command, env)
    count("inputs_launch_script")


@pytest.mark.parametrize("raw", ["/srv/x|\u00b2", "/srv/x|\u0663"])
def test_unicode_digit_port_is_a_spec_error(raw):
    result = parse_services_string(raw)  # '²'.isdigit() is True but int('²') raises
    assert result.errors and result.errors[0].field == "port"


def test_unicode_digit_services_count_is_a_spec_error():
    result = parse_svc_vars({"SERVICES_COUNT": "\u00b2"})
    assert result.errors and result.errors[0].origin == "SERVICES_COUNT"
