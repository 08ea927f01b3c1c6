"""Rendering: hostile values never escape their place.

Every rendered file is parsed with supervisor's own config parser and must
yield exactly the intended programs and keys; launch scripts are run for real
by /bin/sh and must deliver each hostile value byte for byte.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from maestro_runtime.engine.launch import command_argv, render_launch_script, service_environment
from maestro_runtime.engine.supervisord import ProgramOptions, RenderError, render_main_config, render_program
from maestro_runtime.state.records import ServiceRecord

WAIT = "trap 'exit 143' TERM; trap 'exit 130' INT; trap 'exit 129' HUP\n"
HOSTILE = [
    "a\n[program:evil]\ncommand=/bin/false",
    "%(ENV_HOME)s",
    "100%",
    "x ; comment",
    "x # comment",
    "'\"quoted\" and 'single'",
    "a,b=c,d",
    "]]",
    "ünïcödé ✓ 日本",
    "$(touch /tmp/pwned) `id` $HOME",
    "z" * 10_000,
    " ;",
]


def _record(tmp_path: Path, **kw) -> ServiceRecord:
    base = dict(
        id="web", name="web", kind="env", origin="SERVICES[1]", source="/src", directory=str(tmp_path),
        user="root", uid=os.getuid(), gid=os.getgid(), home=str(tmp_path), tmp_dir=str(tmp_path),
        cache_dir=str(tmp_path), port=8080, command="true",
    )
    base.update(kw)
    return ServiceRecord(**base)


def _parse(tmp_path: Path, programs: dict[str, str]) -> ServerOptions:
    conf_dir = tmp_path / "conf.d"
    conf_dir.mkdir()
    for pid, text in programs.items():
        (conf_dir / f"{pid}.conf").write_text(text)
    main = tmp_path / "supervisord.conf"
    main.write_text(render_main_config(
        conf_path=main, socket=tmp_path / "s.sock", include_dir=conf_dir, pidfile=tmp_path / "pid",
        childlogdir=tmp_path, loglevel="info",
    ))
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    return options


def test_programs_parse_into_exactly_the_intended_keys(tmp_path):
    ids = ["web", "api-1", "a_b"]
    programs = {
        i: render_program(i, tmp_path / f"{i}.sh", ProgramOptions(autostart=i != "api-1"), revision="abc123")
        for i in ids
    }
    options = _parse(tmp_path, programs)
    groups = {g.name: g for g in options.process_group_configs}
    assert set(groups) == {*ids, "maestro-logs"}
    for i in ids:
        (proc,) = groups[i].process_configs
        assert proc.command == f"/bin/sh {tmp_path}/{i}.sh abc123"
        assert proc.autostart is (i != "api-1")
        assert proc.stopasgroup and proc.killasgroup
        assert proc.uid is None  # privileges are dropped by the launch script, not supervisord
        assert proc.stdout_events_enabled and proc.stderr_events_enabled


@pytest.mark.parametrize("bad", ["web\n[program:evil]", "we b", "%(ENV_X)s", "Web", "-x", "a;b", "a]"])
def test_bad_program_ids_are_refused(tmp_path, bad):
    with pytest.raises(RenderError):
        render_program(bad, tmp_path / "x.sh", ProgramOptions())


@pytest.mark.parametrize("bad", ["/tmp/a b.sh", "/tmp/%(ENV_HOME)s.sh", "/tmp/x;y.sh", "/tmp/a\nb.sh", "rel.sh"])
def test_unsafe_paths_are_refused(tmp_path, bad):
    with pytest.raises(RenderError):
        render_program("web", Path(bad), ProgramOptions())


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_reach_the_service_byte_for_byte(tmp_path, value):
    out = tmp_path / "out"
    record = _record(
        tmp_path,
        command=f'printf "%s|%s|%s" "$HOSTILE" "$PORT" "$HOME" > {out}',
        env={"HOSTILE": value, "PORT": "1", "HOME": "/nope"},
    )
    script = tmp_path / "launch.sh"
    script.write_text(render_launch_script(record))
    options_text = render_program("web", script, ProgramOptions(), revision="0")
    assert value not in options_text
    subprocess.run(["/bin/sh", str(script)], check=True, timeout=10)
    assert out.read_text() == f"{value}|8080|{tmp_path}"  # PORT/HOME are not the service's to change
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_commands_run_as_written(tmp_path, value):
    out = tmp_path / "out"
    record = _record(tmp_path, command=f"printf '%s' {_sh_quote(value)} > {out}")
    script = tmp_path / "launch.sh"
    script.write_text(render_launch_script(record))
    subprocess.run(["/bin/sh", str(script)], check=True, timeout=10)
    assert out.read_text() == value


def _sh_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_environment_is_clean_and_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_OF_THE_CONTAINER", "leak")
    record = _record(tmp_path, venv_dir="/v", env={"A": "1"})
    env = service_environment(record)
    assert env["PATH"].startswith(f"/v/bin:{tmp_path}/node_modules/.bin:")
    assert {"PORT", "HOME", "USER", "TMPDIR", "XDG_CACHE_HOME", "HOST", "A"} <= set(env)
    out = tmp_path / "env"
    record = _record(tmp_path, command=f"env > {out}")
    script = tmp_path / "launch.sh"
    script.write_text(render_launch_script(record))
    subprocess.run(["/bin/sh", str(script)], check=True, timeout=10)
    assert "SECRET_OF_THE_CONTAINER" not in out.read_text()


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("python3 app.py --port 80", ["python3", "app.py", "--port", "80"]),
        ("python3 -m http.server $PORT", ["/bin/sh", "-c", "exec python3 -m http.server $PORT"]),
        ("FOO=1 B=/x node x $PORT", ["/bin/sh", "-c", "FOO=1 B=/x exec node x $PORT"]),
        ("FOO='a b' node x", ["/bin/sh", "-c", WAIT + "FOO='a b' node x"]),
        ("cd app && npm start", ["/bin/sh", "-c", WAIT + "cd app && npm start"]),
        ("echo a\necho b", ["/bin/sh", "-c", WAIT + "echo a\necho b"]),
        ("exec node x", ["/bin/sh", "-c", WAIT + "exec node x"]),
        # builtins no program stands in for
        ("exit 3", ["/bin/sh", "-c", WAIT + "exit 3"]),
        (": keep", ["/bin/sh", "-c", WAIT + ": keep"]),
    ],
)
def test_command_argv_avoids_a_resident_shell_when_it_can(command, argv):
    assert command_argv(command) == argv


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        # $PORT is the only expansion: the value the shell would have put there, no shell at all
        ("python3 -m http.server $PORT --bind 0.0.0.0", ["python3", "-m", "http.server", "8123", "--bind", "0.0.0.0"]),
        ("gunicorn -b 0.0.0.0:$PORT app:app", ["gunicorn", "-b", "0.0.0.0:8123", "app:app"]),
        ("node srv.js --port=${PORT}", ["node", "srv.js", "--port=8123"]),
        # anything else the shell must do keeps the shell, which expands $PORT itself
        ("node x $PORTAL", ["/bin/sh", "-c", "exec node x $PORTAL"]),
        ("node x $PORT $HOME", ["/bin/sh", "-c", "exec node x $PORT $HOME"]),
        ('node x "$PORT"', ["/bin/sh", "-c", 'exec node x "$PORT"']),
        ("FOO=1 node x $PORT", ["/bin/sh", "-c", "FOO=1 exec node x 8123"]),  # same value, sh for FOO
        ("node x $PORT | tee log", ["/bin/sh", "-c", WAIT + "node x $PORT | tee log"]),
    ],
)
def test_port_is_expanded_without_a_shell_only_when_nothing_else_needs_one(command, argv):
    assert command_argv(command, "8123") == argv
    assert command_argv(command, None) == command_argv(command)  # a process type without PORT


def test_the_port_expanded_by_us_is_the_one_the_shell_would_give(tmp_path):
    """Run both ways for real: the program gets the same arguments."""
    (tmp_path / "prog.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    command = "python3 prog.py a:$PORT --p=${PORT} $PORT"
    env = {"PATH": "/usr/bin:/bin", "PORT": "8123"}
    argv = command_argv(command, "8123")
    assert argv[0] == "python3"  # no shell
    direct = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    shell = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path,
                           check=True)
    assert json.loads(direct.stdout) == json.loads(shell.stdout) == ["a:8123", "--p=8123", "8123"]


def test_no_validator_lets_a_trailing_newline_through():
    """Python's ``$`` also matches before a final newline: a YAML ``processes:`` key 'worker\\n'
    passed the process-type check and the program-id check, and would have put '[program:a-worker'
    and a line ']' into supervisord's config (only the launch script's path check, by luck, stopped
    it later, with a message about the path). Every such check now ends at the very end."""
    import json

    from maestro_runtime.control import runstate
    from maestro_runtime.engine import log_listener, rpc_add, supervisord
    from maestro_runtime.ops import userdb
    from maestro_runtime.settings import checks
    from maestro_runtime.spec import fields, naming, parse_services_yaml, parsers

    for pattern, good in ((naming.PROGRAM_ID_RE, "a-worker"), (naming.USER_RE, "svc_a"), (parsers._TYPE_RE, "worker"),
                          (fields._REF_RE, "main"), (fields._ENV_KEY_RE, "FOO"), (supervisord.SAFE_PATH_RE, "/run/m"),
                          (checks._INI_SAFE_PATH, "/run/m"), (rpc_add.NAME_RE, "a"), (log_listener._NAME_RE, "a"),
                          (runstate._ID_RE, "a"), (userdb.NAME_RE, "svc_a")):
        assert pattern.match(good) and not pattern.match(good + "\n"), pattern.pattern
    with pytest.raises(supervisord.RenderError):
        supervisord.render_program("a-worker\n", Path("/run/maestro/launch/a-worker.sh"), supervisord.ProgramOptions())
    parsed = parse_services_yaml(json.dumps({"services": [{"repo": "/srv/a", "processes": {"worker\n": "sleep 1"}}]}),
                                 "s.yml")
    assert [e.field for e in parsed.errors] == ["processes"]
