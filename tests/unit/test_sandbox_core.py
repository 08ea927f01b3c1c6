"""Pure parts of the sandbox: settings, bwrap argv, wrapper order, reports."""

from dataclasses import replace
from pathlib import Path

import pytest

from maestro_runtime.engine.launch import render_launch_script
from maestro_runtime.sandbox import cgroups, runner
from maestro_runtime.sandbox import policy as sandbox
from maestro_runtime.settings import Settings, sandbox_settings
from maestro_runtime.state.records import ServiceRecord


def _config(**env):
    return sandbox.SandboxConfig.from_settings(Settings.from_env({"MAESTRO_RUNTIME_DIR": "/tmp/x", **env}))


def test_defaults():
    c = _config()
    assert (c.mode, c.net_policy, c.firewall_disabled) == ("auto", "deny", False)
    assert c.limits == cgroups.Limits(memory=512 << 20, cpu_quota_us=None, cpu_period_us=100_000, pids_max=128)
    assert c.net_allow_file == Path("/etc/maestro/sandbox-net-allow")
    assert c.problems == ()


def test_settings_parsed_and_bad_values_reported():
    c = _config(MAESTRO_SANDBOX_MODE="off", MAESTRO_SANDBOX_MEMORY="max", MAESTRO_SANDBOX_CPU_QUOTA_US="50000",
                MAESTRO_SANDBOX_PIDS_MAX="64", MAESTRO_SANDBOX_NET_POLICY="allow", MAESTRO_FIREWALL_DISABLE="1",
                MAESTRO_CGROUP_ROOT="/sys/fs/cgroup/x", MAESTRO_SANDBOX_NET_ALLOW_FILE="/p")
    assert c.mode == "off" and c.limits.memory is None and c.limits.cpu_quota_us == 50000
    assert c.limits.pids_max == 64 and c.net_policy == "allow" and c.firewall_disabled
    assert c.cgroup_root == Path("/sys/fs/cgroup/x") and c.net_allow_file == Path("/p")
    # Settings.from_env refuses these at startup (exit 2, tests/unit/test_settings.py); the
    # sandbox still falls back safely if handed them another way.
    bad_env = {"MAESTRO_SANDBOX_MODE": "sometimes", "MAESTRO_SANDBOX_MEMORY": "lots", "MAESTRO_SANDBOX_PIDS_MAX": "-3",
               "MAESTRO_SANDBOX_NET_POLICY": "open"}
    bad = sandbox.SandboxConfig.from_settings(replace(Settings.from_env({"MAESTRO_RUNTIME_DIR": "/tmp/x"}),
                                                      sandbox=sandbox_settings(bad_env)))
    assert bad.mode == "require"  # a typo fails closed
    assert bad.limits.memory == 512 << 20 and bad.limits.pids_max == 128 and bad.net_policy == "deny"
    assert len(bad.problems) == 4


VIEW = sandbox.View(entries=(("ro", "/usr", "/usr"), ("symlink", "usr/bin", "/bin"), ("ro", "/etc", "/etc"),
                             ("ro", "/opt/rt", "/opt/rt")),
                    masked_dirs=("/etc/maestro",), masked_files=("/srv/services.yml",))


def _record(**kw):
    base = dict(id="web", name="web", kind="env", origin="o", source="s", directory="/srv/p/web", user="web",
                port=8000, uid=990, gid=990, home="/home/web", tmp_dir="/home/web/.maestro/tmp",
                cache_dir="/home/web/.cache", venv_dir="", command="python app.py")
    base.update(kw)
    return ServiceRecord(**base)


def _pairs(argv, flag):
    return [tuple(argv[i + 1:i + 3]) for i, a in enumerate(argv) if a == flag]


def test_service_argv():
    argv = sandbox.bwrap_argv("/usr/bin/bwrap", VIEW, sandbox.service_shape(_record(), private_proc=True))
    assert argv[0] == "/usr/bin/bwrap" and argv[-1] == "--"
    for flag in ("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in argv
    # Services keep the container's network (ports) and process group (SIGTERM from supervisord).
    assert "--unshare-net" not in argv and "--new-session" not in argv
    assert ("/usr", "/usr") in _pairs(argv, "--ro-bind") and ("usr/bin", "/bin") in _pairs(argv, "--symlink")
    assert _pairs(argv, "--bind") == [("/home/web", "/home/web"), ("/srv/p/web", "/srv/p/web")]
    assert ("/dev/null", "/srv/services.yml") in _pairs(argv, "--ro-bind")
    assert ("/dev/null", "/dev/tty") in _pairs(argv, "--ro-bind")
    assert argv[argv.index("--proc") + 1] == "/proc"
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert {"/tmp", "/run", "/var/tmp", "/etc/maestro"} <= set(tmpfs)
    # Parents of the binds are made traversable, never the system folders.
    dirs = [argv[i + 1] for i, a in enumerate(argv) if a == "--dir"]
    assert {"/home", "/srv", "/srv/p", "/opt"} <= set(dirs) and "/usr" not in dirs


def test_no_bind_inside_a_folder_the_service_owns():
    """bwrap resolves a bind's source as root: ~/.cache planted as a link to /etc/maestro would
    be mounted into the sandbox. Folders inside the home come with it, unbound."""
    record = _record(venv_dir="/home/web/.maestro/venv")
    argv = sandbox.bwrap_argv("/usr/bin/bwrap", VIEW, sandbox.service_shape(record, private_proc=True))
    bound = [src for flag in ("--bind", "--bind-try") for src, _ in _pairs(argv, flag)]
    assert bound == ["/home/web", "/srv/p/web"]


def test_build_argv_unshares_net_and_session():
    shape = sandbox.Shape(writable=("/w",), chdir="/w", unshare_net=True, new_session=True, private_proc=False)
    argv = sandbox.bwrap_argv("/usr/bin/bwrap", VIEW, shape)
    assert "--unshare-net" in argv and "--new-session" in argv
    assert ("/proc", "/proc") in _pairs(argv, "--ro-bind") and "--proc" not in argv
    assert argv[argv.index("--chdir") + 1] == "/w"


def test_wrapper_order_in_launch_script():
    bw = sandbox.bwrap_argv("/usr/bin/bwrap", VIEW, sandbox.service_shape(_record(), True))
    wrapper = sandbox.wrap(bw, ("/usr/bin/prlimit", "--nproc=5", "--"))
    assert wrapper[:2] == sandbox.IGNORE_SIGNALS and wrapper[-1] == "--"
    script = render_launch_script(_record(), wrapper=wrapper, cgroup_procs=("/cg/a/cgroup.procs",))
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    order = [exec_line.index(w) for w in ("--ignore-signal", "/usr/bin/bwrap", "--default-signal",
                                          "/usr/bin/prlimit", "/usr/bin/setpriv", "app.py")]
    assert order == sorted(order)
    assert "echo $$ > /cg/a/cgroup.procs" in script
    assert sandbox.wrap(bw)[-3:] == (*sandbox.DEFAULT_SIGNALS, "--")


def test_limits_report_never_pretends():
    limits = cgroups.Limits(memory=256 << 20, cpu_quota_us=50000, pids_max=None)
    report = sandbox.limits_report(limits, {"memory": "cgroup-v1", "cpu": None, "pids": "unlimited"})
    assert report == {"memory": {"value": "256M", "enforced_by": "cgroup-v1"},
                      "cpu": {"value": "50000/100000us", "enforced_by": "not enforced"},
                      "pids": {"value": "max", "enforced_by": "unlimited"}}


def test_clean_env_for_commands():
    env = runner.sandbox_env("/home/u", "u", True, {"X": "1"}, "xterm")
    assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{sandbox.PROXY_PORT}" and env["X"] == "1"
    assert set(env) >= {"PATH", "HOME", "USER", "TERM"}
    assert "HTTP_PROXY" not in runner.sandbox_env("/h", "u", False, {}, None)


def test_the_sandbox_proxy_wins_over_a_passed_proxy():
    """Proxied, the loopback proxy is the only way out: an operator's proxy variables passed to a
    build would make corepack resolve a host in a namespace with no DNS (getaddrinfo EAI_AGAIN)."""
    mine = f"http://127.0.0.1:{sandbox.PROXY_PORT}"
    passed = {"https_proxy": "http://corp:8080", "NPM_CONFIG_HTTPS_PROXY": "http://corp:8080",
              "all_proxy": "socks5://corp:1080", "no_proxy": "*", "npm_config_noproxy": "*", "X": "1"}
    env = runner.sandbox_env("/h", "u", True, passed, None)
    assert env["X"] == "1" and env["no_proxy"] == env["NO_PROXY"] == "localhost,127.0.0.1,::1"
    assert {k: v for k, v in env.items() if "proxy" in k.lower()} == {
        **dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                         "npm_config_proxy", "npm_config_https_proxy"), mine),
        "no_proxy": "localhost,127.0.0.1,::1", "NO_PROXY": "localhost,127.0.0.1,::1"}
    # Not proxied (the host's network): the passed proxy is the way out and stays.
    assert runner.sandbox_env("/h", "u", False, passed, None)["https_proxy"] == "http://corp:8080"


def test_off_mode_never_probes(tmp_path):
    policy = sandbox.SandboxPolicy(sandbox.SandboxConfig(mode="off", runtime_dir=tmp_path))
    assert policy.sandboxed() == (False, "MAESTRO_SANDBOX_MODE=off")


def test_require_raises_with_hint(tmp_path):
    config = sandbox.SandboxConfig(mode="require", runtime_dir=tmp_path, bwrap=str(tmp_path / "no-bwrap"))
    with pytest.raises(sandbox.SandboxError, match="cap-add SYS_ADMIN"):
        sandbox.SandboxPolicy(config).sandboxed()
    auto = sandbox.SandboxPolicy(sandbox.SandboxConfig(mode="auto", runtime_dir=tmp_path / "a",
                                                       bwrap=str(tmp_path / "no-bwrap")))
    on, why = auto.sandboxed()
    assert not on and "not found" in why
    assert (tmp_path / "a" / "sandbox" / "probe.json").is_file()  # probed once, cached


def test_system_view_shows_extrausers_accounts_but_never_shadow(tmp_path, monkeypatch):
    """In the image, service users live in libnss-extrausers' files; lookups in the sandbox need them."""
    from maestro_runtime.sandbox import bwrap as sandbox

    for name in ("passwd", "group", "shadow"):
        (tmp_path / name).write_text("x\n")
    monkeypatch.setattr(sandbox, "NSS_EXTRA_FILES", (str(tmp_path / "passwd"), str(tmp_path / "group")))
    view = sandbox.system_view(sandbox.SandboxConfig())
    bound = {dest for kind, _src, dest in view.entries if kind == "ro"}
    assert {str(tmp_path / "passwd"), str(tmp_path / "group")} <= bound
    assert str(tmp_path / "shadow") not in bound
