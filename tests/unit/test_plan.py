"""The plan (ops/plan.py) is pure: from a record and the gathered facts to every text to write.

No root, no cgroupfs, no supervisord: the facts are values. Program files are parsed with
supervisor's own config parser and launch scripts with POSIX shell quoting rules, so a hostile
value that added a config line or a shell word would fail here.
"""

import dataclasses
import hashlib
import shlex
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from maestro_runtime.engine.launch import command_argv
from maestro_runtime.engine.supervisord import render_main_config
from maestro_runtime.ops.accounts import Account
from maestro_runtime.ops.plan import IDENTITY_DEGRADED, Facts, Found, plan_service, service_record
from maestro_runtime.sandbox import netpolicy
from maestro_runtime.sandbox.bwrap import SandboxConfig, SandboxError, View
from maestro_runtime.sandbox.cgroups import Layout, Limits
from maestro_runtime.sandbox.policy import SandboxFacts
from maestro_runtime.spec import ServiceSpec
from maestro_runtime.spec.model import Health
from maestro_runtime.spec.model import Limits as SpecLimits
from maestro_runtime.state.records import ServiceRecord

LAUNCH = Path("/run/maestro/launch")
NO_CGROUPS = Layout()
V2 = Layout(v2=Path("/cg/maestro"), v2_controllers=frozenset({"memory", "cpu", "pids"}))
HOSTILE = [
    "a\n[program:evil]\ncommand=/bin/false",
    "%(ENV_HOME)s",
    "100% ; done",
    "x # comment",
    "'\"quoted\" and 'single'",
    "$(touch /tmp/pwned) `id` $HOME",
    " ;\n;",
]


def _record(**kw) -> ServiceRecord:
    base = dict(id="web", name="web", kind="env", origin="SERVICES[1]", source="/src", directory="/srv/web",
                user="svc_web", uid=1001, gid=1001, home="/home/svc_web", tmp_dir="/home/svc_web/.maestro/tmp",
                cache_dir="/home/svc_web/.cache", port=8080, command="python app.py", revision="r1")
    return ServiceRecord(**{**base, **kw})


def _facts(layout: Layout = NO_CGROUPS, *, sandboxed: bool = False, **kw) -> Facts:
    host = SandboxFacts(sandboxed=sandboxed, reason="" if sandboxed else "MAESTRO_SANDBOX_MODE=off",
                        private_proc=sandboxed, view=View(entries=(("ro", "/usr", "/usr"),)) if sandboxed else None,
                        layout=layout, net=netpolicy.NetDecision(netpolicy.DENY), egress="test")
    config = SandboxConfig(limits=Limits(memory=512 << 20, pids_max=128), bwrap="/usr/bin/bwrap")
    return Facts(**{"sandbox": config, "host": host, "launch_dir": LAUNCH, "stopwaitsecs": 7, **kw})


def _programs(tmp_path: Path, confs: dict[str, str]) -> dict:
    """supervisord's own reading of the program files: {name: config} (its own listener left out)."""
    conf_dir = tmp_path / "conf.d"
    conf_dir.mkdir(exist_ok=True)
    for name, text in confs.items():
        (conf_dir / f"{name}.conf").write_text(text)
    main = tmp_path / "supervisord.conf"
    main.write_text(render_main_config(conf_path=main, socket=tmp_path / "s.sock", include_dir=conf_dir,
                                       pidfile=tmp_path / "pid", childlogdir=tmp_path, loglevel="info"))
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    return {g.name: g.process_configs[0] for g in options.process_group_configs if g.name != "maestro-logs"}


def _exec_argv(script: str) -> list[str]:
    """The words of the script's last command, as /bin/sh reads them."""
    body = script.split(" || exit 1\n", 1)[1]
    words = shlex.split(body)
    assert words[0] == "exec"
    return words[1:]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_in_the_launch_script(tmp_path, value):
    record = _record(command=value, env={"SECRET": value}, name=value, processes={"worker": value},
                     health={"kind": "exec", "command": value})
    plan = plan_service(record, _facts())
    programs = _programs(tmp_path, {p.id: p.conf for p in (plan.program, *plan.processes)})
    assert sorted(programs) == ["web", "web-worker"]  # no program, section or key was added
    for program in (plan.program, *plan.processes):
        config = programs[program.id]
        revision = hashlib.sha256(f"{program.script}\0r1".encode()).hexdigest()[:16]
        assert config.command == f"/bin/sh {LAUNCH}/{program.id}.sh {revision}"
        assert config.stopwaitsecs == 7
        assert value not in program.conf
        argv = _exec_argv(program.script)
        assert argv[-len(command_argv(value)):] == command_argv(value)  # the command, verbatim
        assert "SECRET=" + value in argv
    assert _exec_argv(plan.probe)[-len(command_argv(value)):] == command_argv(value)


def test_the_record_is_a_new_one_with_report_and_revision():
    record = _record()
    plan = plan_service(record, _facts())
    assert record.sandbox == {} and record.program_revision == ""  # the input is untouched
    assert plan.record == dataclasses.replace(record, sandbox=plan.record.sandbox,
                                              program_revision=plan.record.program_revision)
    assert plan.record.program_revision == hashlib.sha256(f"{plan.program.script}\0r1".encode()).hexdigest()[:16]
    assert plan.record.sandbox["sandbox"] == "none" and plan.record.sandbox["reason"] == "MAESTRO_SANDBOX_MODE=off"
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.record.port = 1  # type: ignore[misc]
    # New code (a new fetch) is a new revision even when the script is the same.
    assert plan_service(_record(revision="r2"), _facts()).record.program_revision != plan.record.program_revision


def test_limits_go_to_cgroup_v2_folders():
    plan = plan_service(_record(limits={"memory": "256M", "pids_max": 10}), _facts(V2))
    (groups,) = plan.groups
    assert groups.name == "web"
    writes = {(d.kind, d.folder): (d.writes, d.swap) for d in groups.dirs}
    folder = Path("/cg/maestro/web")
    assert writes == {("memory", folder): ((("memory.max", str(256 << 20)),), ("memory.swap.max", "0")),
                      ("pids", folder): ((("pids.max", "10"),), None)}  # cpu: unlimited by default
    assert f"echo $$ > {folder}/cgroup.procs\n" in plan.program.script
    assert "prlimit" not in plan.program.script
    limits = plan.record.sandbox["limits"]
    assert limits["memory"] == {"value": "256M", "enforced_by": "cgroup-v2"}
    assert limits["cpu"]["enforced_by"] == "unlimited"


def test_limits_without_cgroups_fall_back_to_rlimits():
    plan = plan_service(_record(limits={"memory": "1G"}), _facts(Layout()))
    assert [g.dirs for g in plan.groups] == [()]
    assert "echo $$" not in plan.program.script
    argv = _exec_argv(plan.program.script)
    assert argv[argv.index("/usr/bin/prlimit"):][:4] == ["/usr/bin/prlimit", f"--data={2 << 30}", "--nproc=128", "--"]
    assert plan.record.sandbox["limits"]["memory"]["enforced_by"] == "rlimit-data"


def test_a_limit_the_kernel_refused_falls_back():
    plan = plan_service(_record(), _facts(V2, refused={"web": frozenset({"memory"})}))
    assert [d.kind for d in plan.groups[0].dirs] == ["pids"]
    assert "/cg/maestro/web/cgroup.procs" in plan.program.script  # pids still joins the group
    assert f"--data={2 * 512 << 20}" in _exec_argv(plan.program.script)  # cgroups.DATA_FACTOR
    assert plan.record.sandbox["limits"]["memory"]["enforced_by"] == "rlimit-data"
    assert plan.record.sandbox["limits"]["pids"]["enforced_by"] == "cgroup-v2"


@pytest.mark.parametrize("limits", [{"pids_max": 0}, {"cpu_quota_us": True}, {"memory": "lots"}])
def test_bad_limits_fail_the_plan(limits):
    with pytest.raises(SandboxError, match="limits of web"):
        plan_service(_record(limits=limits), _facts())


@pytest.mark.parametrize(("record", "stopped", "autostart"), [
    ({}, False, True),
    ({}, True, False),  # the operator's stop holds across boots
    ({"autostart": False}, False, False),
    ({"role": "task"}, False, False),  # the task runner starts tasks
    ({"depends_on": {"db": "healthy"}}, False, False),  # ...and services that wait for others
])
def test_autostart(tmp_path, record, stopped, autostart):
    plan = plan_service(_record(processes={"worker": "w"}, **record), _facts(stopped=stopped))
    programs = _programs(tmp_path, {p.id: p.conf for p in (plan.program, *plan.processes)})
    assert {name: c.autostart for name, c in programs.items()} == {"web": autostart, "web-worker": autostart}
    assert all(not c.autorestart for c in programs.values())  # the controller restarts, never supervisord


def test_process_types_are_programs_of_their_own():
    record = _record(processes={"worker": "python worker.py", "Clock": "python clock.py"})
    plan = plan_service(record, _facts(V2))
    assert [p.id for p in plan.processes] == ["web-clock", "web-worker"]
    worker = plan.processes[1]
    assert _exec_argv(worker.script)[-2:] == ["python", "worker.py"]
    assert "PORT=8080" in _exec_argv(worker.script) and "USER=svc_web" in _exec_argv(worker.script)
    assert f"[program:web-worker]\ncommand=/bin/sh {LAUNCH}/web-worker.sh " in worker.conf
    # The service's cgroup for all: its limits bound the service, whatever number of types it declares.
    assert [g.name for g in plan.groups] == ["web"]
    assert "/cg/maestro/web/cgroup.procs" in worker.script and "/cg/maestro/web-worker/" not in worker.script
    assert plan.record.processes == record.processes


def test_probe_script_only_for_an_exec_probe():
    assert plan_service(_record(), _facts()).probe is None
    plan = plan_service(_record(health={"kind": "exec", "command": "test -f ready"}), _facts(V2))
    assert _exec_argv(plan.probe)[-3:] == ["test", "-f", "ready"]
    assert "/cg/maestro/web/cgroup.procs" in plan.probe  # same launch chain as the service


def test_service_record_from_what_was_found():
    spec = ServiceSpec(origin="SERVICES[1]", kind="env", repo="https://example.invalid/a.git", ref="main",
                       health=Health(kind="tcp"), limits=SpecLimits(memory="1G"), allow_hosts=("pypi.org",))
    account = Account("svc_a", 1002, 1002, Path("/home/svc_a"))
    found = Found(directory=Path("/srv/a"), source="https://example.invalid/a.git", revision="r9", account=account,
                  has_venv=True, port=9000, command="gunicorn app", command_reason="detected: x",
                  env={"A": "1"}, processes={"worker": "w"})
    record = service_record(spec, "a", found, identity_degraded=False, now=5.0)
    assert (record.id, record.name, record.user, record.uid, record.port, record.ref) == (
        "a", "a", "svc_a", 1002, 9000, "main")
    assert record.venv_dir == "/home/svc_a/.maestro/venv" and record.tmp_dir == "/home/svc_a/.maestro/tmp"
    assert record.limits == {"memory": "1G"} and record.health["kind"] == "tcp"
    assert record.ready and record.updated == 5.0 and record.degraded == [] and record.workspace == {}
    bare = service_record(dataclasses.replace(spec, repo=None, directory=Path("/srv/a")), "a",
                          dataclasses.replace(found, has_venv=False), identity_degraded=True, now=5.0)
    assert bare.ref is None and bare.venv_dir == "" and bare.degraded == [IDENTITY_DEGRADED]
