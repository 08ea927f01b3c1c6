"""The sandbox for real: throwaway users, real bubblewrap, cgroups, the proxy and signals (root only)."""

import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from maestro_runtime.engine import launch
from maestro_runtime.engine.launch import render_launch_script
from maestro_runtime.sandbox import cgroups
from maestro_runtime.sandbox import policy as sandbox
from maestro_runtime.settings import Settings
from maestro_runtime.state.records import ServiceRecord

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")]


def _useradd(name: str, home: Path) -> pwd.struct_passwd:
    subprocess.run(["useradd", "--system", "--user-group", "--home-dir", str(home), "--no-create-home",
                    "--shell", "/usr/sbin/nologin", name], check=True)
    entry = pwd.getpwnam(name)
    for folder in (home, home / "project"):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
    (home / "project" / "secret.txt").write_text("secret of " + name)
    return entry


@pytest.fixture
def users(tmp_path):
    tmp_path.chmod(0o755)
    names = [f"mtsb{uuid.uuid4().hex[:6]}", f"mtsb{uuid.uuid4().hex[:6]}"]
    entries = [_useradd(n, tmp_path / "home" / n) for n in names]
    yield entries
    for n in names:
        subprocess.run(["userdel", n], check=False)


def _env(tmp_path, **extra):
    return {"PATH": os.environ["PATH"], "MAESTRO_RUNTIME_DIR": str(tmp_path / "run"),
            "MAESTRO_STATE_DIR": str(tmp_path / "state"), "MAESTRO_FIREWALL_DISABLE": "1", **extra}


def _cli(tmp_path, user, args, *, env=None, timeout=60, prefix=()):
    argv = [*prefix, sys.executable, "-m", "maestro_runtime.sandbox.cli", "--user", user.pw_name,
            "--workdir", str(Path(user.pw_dir) / "project"), *args]
    return subprocess.run(argv, env=env or _env(tmp_path), capture_output=True, text=True, timeout=timeout,
                          cwd=str(Path(__file__).resolve().parents[2]))


def test_isolation(tmp_path, users):
    me, other = users
    script = (f"id -u; ls {other.pw_dir} 2>&1; cat {other.pw_dir}/project/secret.txt 2>&1; "
              "touch /usr/x 2>&1; touch /etc/x 2>&1; ps -e -o pid= | wc -l; cat secret.txt")
    proc = _cli(tmp_path, me, ["--", "sh", "-c", script])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == str(me.pw_uid)
    assert "No such file or directory" in out[1] and "No such file or directory" in out[2]
    assert "Read-only file system" in out[3] and "Read-only file system" in out[4]
    assert int(out[5].strip()) <= 4  # bwrap's init, sh, ps, wc: nothing of the host
    assert out[6] == f"secret of {me.pw_name}"


def test_root_is_refused(tmp_path, users):
    proc = subprocess.run([sys.executable, "-m", "maestro_runtime.sandbox.cli", "--user", "root", "--", "id"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 125 and "as root" in proc.stderr


def _server(host="127.0.0.1"):
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


PROBE = ("import socket,sys\ntry:\n    socket.create_connection(('127.0.0.1', int(sys.argv[1])), 3)\n"
         "    print('connected')\nexcept OSError as e:\n    print('refused', e)\n")


def test_deny_cannot_reach_host_loopback(tmp_path, users):
    srv = _server()
    port = srv.getsockname()[1]
    socket.create_connection(("127.0.0.1", port), 3).close()  # reachable from the host itself
    proc = _cli(tmp_path, users[0], ["--net", "deny", "--", "python3", "-c", PROBE, str(port)])
    srv.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused")


def _policy(tmp_path, text, uid=0, mode=0o644):
    path = tmp_path / "net-allow"
    path.write_text(text)
    os.chown(path, uid, 0)
    path.chmod(mode)
    return path


FETCH = ("import sys,urllib.request\nfor url in sys.argv[1:]:\n    try:\n"
         "        print(urllib.request.urlopen(url, timeout=10).status)\n"
         "    except Exception as e:\n        print('error', e)\n")


@pytest.mark.skipif(not os.environ.get("MAESTRO_TEST_ISOLATED"), reason="needs the private /etc of conftest")
def test_allowlist_through_proxy(tmp_path, users):
    hosts = Path("/etc/hosts")
    saved = hosts.read_text()
    hosts.write_text(saved + "\n127.0.0.1 allowed.maestro.test other.maestro.test\n")
    try:
        srv = _server()
        port = srv.getsockname()[1]
        # An entry without :port allows 80 and 443 only: the test server's port is named.
        policy = _policy(tmp_path, f"ALLOW_HOST_NETWORK=1\nallowed.maestro.test:{port}\n")
        env = _env(tmp_path, MAESTRO_SANDBOX_NET_ALLOW_FILE=str(policy))
        proc = _cli(tmp_path, users[0], ["--net", "allow", "--", "python3", "-c", FETCH,
                                         f"http://allowed.maestro.test:{port}/",
                                         f"http://other.maestro.test:{port}/"], env=env)
        srv.close()
    finally:
        hosts.write_text(saved)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "200"
    assert lines[1].startswith("error") and "403" in lines[1]
    assert "egress refused: host other.maestro.test" in proc.stderr


@pytest.mark.parametrize(("owner", "mode", "reason"), [(1, 0o644, "not root"),
                                                       (0, 0o664, "group- or world-writable"),
                                                       (0, 0o600, "ALLOW_HOST_NETWORK=1")])
def test_untrusted_policy_file_means_deny(tmp_path, users, owner, mode, reason):
    text = "ALLOW_HOST_NETWORK=0\n" if reason.startswith("ALLOW") else "ALLOW_HOST_NETWORK=1\n"
    policy = _policy(tmp_path, text, uid=owner, mode=mode)
    srv = _server()
    port = srv.getsockname()[1]
    env = _env(tmp_path, MAESTRO_SANDBOX_NET_ALLOW_FILE=str(policy))
    proc = _cli(tmp_path, users[0], ["--net", "allow", "--", "python3", "-c", PROBE, str(port)], env=env)
    srv.close()
    assert proc.returncode == 0, proc.stderr
    assert "using deny" in proc.stderr and reason in proc.stderr
    assert proc.stdout.startswith("refused")  # allow-all would have shared the host network


def _layout():
    return cgroups.detect(None)


def test_memory_limit(tmp_path, users):
    env = _env(tmp_path, MAESTRO_SANDBOX_MEMORY="256M")
    mech = cgroups.choose(_layout(), cgroups.Limits(memory=256 << 20), one_shot=True)["memory"]
    if mech is None:
        pytest.skip("no writable memory controller: one-shot commands get no memory rlimit (by design)")
    code = "b = bytearray(1 << 30)\nb[::4096] = b'x' * (len(b) // 4096)\nprint('allocated')\n"
    proc = _cli(tmp_path, users[0], ["--", "python3", "-c", code], env=env)
    assert "allocated" not in proc.stdout
    assert proc.returncode == 128 + signal.SIGKILL, (mech, proc.returncode, proc.stderr)


def test_fork_bomb_stops_at_pids_limit(tmp_path, users):
    env = _env(tmp_path, MAESTRO_SANDBOX_PIDS_MAX="20")
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
            "            time.sleep(3)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n"
            "print(n)\n")
    proc = _cli(tmp_path, users[0], ["--", "python3", "-c", code], env=env)
    assert proc.returncode == 0, proc.stderr
    assert 0 < int(proc.stdout.strip()) < 20


def test_limits_report_matches_machine(tmp_path):
    """Where no controller is writable the report says 'not enforced', never a mechanism."""
    layout = _layout()
    config = sandbox.SandboxConfig(runtime_dir=tmp_path, limits=cgroups.Limits(cpu_quota_us=50000))
    chosen = cgroups.choose(layout, config.limits)
    warnings = sandbox.boot_report(sandbox.SandboxConfig(runtime_dir=tmp_path, limits=config.limits,
                                                         firewall_disabled=True))
    if chosen["cpu"] is None:
        assert any("cpu limit" in w and "NOT enforced" in w for w in warnings)
    else:
        assert not any("cpu limit" in w for w in warnings)


def test_require_without_capabilities(tmp_path, users):
    # Dropping CAP_SYS_ADMIN from the bounding set: bubblewrap can no longer mount or unshare.
    prefix = ("/usr/bin/setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--")
    proc = _cli(tmp_path, users[0], ["--", "id", "-u"], env=_env(tmp_path, MAESTRO_SANDBOX_MODE="require"),
                prefix=prefix)
    assert proc.returncode == 125, proc.stderr
    assert "--cap-add SYS_ADMIN" in proc.stderr
    proc = _cli(tmp_path, users[0], ["--", "id", "-u"],
                env=_env(tmp_path / "auto", MAESTRO_SANDBOX_MODE="auto"), prefix=prefix)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(users[0].pw_uid) and "UNSANDBOXED" in proc.stderr


SERVICE = """import signal, sys, time
def stop(*_):
    time.sleep(0.5)  # a real graceful shutdown takes time; a SIGKILL would cut it short
    open(sys.argv[1], "w").write("stopped")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_sigterm_reaches_service_handler(tmp_path, users):
    me = users[0]
    project = Path(me.pw_dir) / "project"
    (project / "svc.py").write_text(SERVICE)
    marker = project / "stopped.txt"
    record = ServiceRecord(id=f"t{uuid.uuid4().hex[:6]}", name="t", kind="env", origin="test", source="test",
                           directory=str(project), user=me.pw_name, port=8999, uid=me.pw_uid, gid=me.pw_gid,
                           home=me.pw_dir, tmp_dir="", cache_dir="", command=f"python3 svc.py {marker}")
    settings = Settings.from_env({"MAESTRO_RUNTIME_DIR": str(tmp_path / "run"), "MAESTRO_FIREWALL_DISABLE": "1",
                                  "MAESTRO_SANDBOX_MODE": "require"})
    policy = sandbox.SandboxPolicy.from_settings(settings)
    plan = policy.prepare(record)
    assert plan.report["sandbox"] == "bubblewrap"
    script = tmp_path / "launch.sh"
    script.write_text(render_launch_script(record, wrapper=plan.wrapper, cgroup_procs=plan.cgroup_procs))
    try:
        # As supervisord does: its own process group, stopped with kill(-pgid, SIGTERM).
        proc = subprocess.Popen(["/bin/sh", str(script)], process_group=0, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        os.kill(-proc.pid, signal.SIGTERM)
        code = proc.wait(10)
    finally:
        policy.forget(record)
    assert marker.read_text() == "stopped"
    assert code == 0


BUILD_STEP = ("import os, sys, urllib.request\n"
              "print(os.environ.get('https_proxy'), os.environ.get('HTTPS_PROXY'), os.environ['HOME'],\n"
              "      os.environ['BUILD_ONLY'], os.environ['PATH'].split(':')[0])\n"
              "try:\n"
              "    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
              "except Exception as e:\n"
              "    print('error', e)\n")


@pytest.mark.parametrize("operator_proxy", [{}, {"https_proxy": "http://corp.invalid:8080",
                                                   "HTTPS_PROXY": "http://corp.invalid:8080", "no_proxy": "*"}],
                         ids=["plain", "operator-proxy"])
def test_build_step_in_the_sandbox_keeps_the_proxy(tmp_path, users, operator_proxy):
    """A build step behind the real sandbox wrapper gets the build's variables *and* the
    sandbox's proxy variables: its network namespace has only loopback, so a package manager
    that does not see https_proxy resolves the registry itself and fails (corepack: getaddrinfo
    EAI_AGAIN registry.npmjs.org). The build's environment used to be applied by a last
    ``env -i`` after the wrapper's own, which dropped the proxy settings. An operator's proxy
    variables (passed to builds) must not override the sandbox's either: that host is out of reach."""
    from types import SimpleNamespace

    from maestro_runtime.sources import builds

    name = socket.gethostname()
    try:
        address = socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except OSError:
        pytest.skip(f"this host's name {name!r} does not resolve")
    srv = _server("0.0.0.0")
    port = srv.getsockname()[1]
    me = users[0]
    # Only the proxy (root, the host's network) can reach the server: the allowlist names it.
    policy = _policy(tmp_path, f"ALLOW_HOST_NETWORK=1\n{name}:{port}\n")
    settings = _env(tmp_path, MAESTRO_SANDBOX_NET_POLICY="allow", MAESTRO_SANDBOX_NET_ALLOW_FILE=str(policy))
    config = sandbox.SandboxConfig.from_settings(Settings.from_env(settings))
    if not sandbox.SandboxPolicy(config).sandboxed()[0]:
        srv.close()
        pytest.skip("bubblewrap cannot sandbox here")
    account = SimpleNamespace(user=me.pw_name, uid=me.pw_uid, gid=me.pw_gid, home=Path(me.pw_dir))
    workdir = Path(me.pw_dir) / "project"
    prefix = list(sandbox.SandboxPolicy(config).build_wrapper(account, workdir))
    opts = builds.BuildOptions()  # the wrapper reads its config from the file build_wrapper wrote
    build_env = {"HOME": me.pw_dir, "PATH": f"{workdir}/node_modules/.bin:/usr/bin:/bin", "BUILD_ONLY": "yes",
                 **operator_proxy}
    argv, env = builds.wrap(prefix, ["python3", "-c", BUILD_STEP, f"http://{name}:{port}/"], build_env, opts)
    assert "BUILD_ONLY" not in env and env["PATH"] == launch.SYSTEM_PATH  # root's stays fixed
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                              cwd=str(Path(__file__).resolve().parents[2]))
    finally:
        srv.close()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    proxy = f"http://127.0.0.1:{sandbox.PROXY_PORT}"
    assert lines[0] == f"{proxy} {proxy} {me.pw_dir} yes {workdir}/node_modules/.bin", (lines, address)
    assert lines[1] == "ok", (lines, proc.stderr)


SHM_PROBE = ("import multiprocessing, os, sys\n"
             "multiprocessing.Lock()  # a POSIX semaphore in /dev/shm (hypercorn, uvicorn --workers)\n"
             "open('/dev/shm/' + sys.argv[1], 'w').write('x')\n"
             "print(oct(os.stat('/dev/shm').st_mode & 0o7777), sorted(os.listdir('/dev/shm')))\n")


def test_dev_shm_is_private_and_writable(tmp_path, users):
    """bwrap's --dev gives a root-owned /dev/shm: multiprocessing's locks failed with EACCES.
    Each sandbox gets its own sticky, world-writable tmpfs there, seen by no one else."""
    name = f"maestro-shm-{uuid.uuid4().hex[:8]}"
    proc = _cli(tmp_path, users[0], ["--", "python3", "-c", SHM_PROBE, name])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "0o1777" and name in proc.stdout, proc.stdout
    assert not os.path.exists(f"/dev/shm/{name}")  # the host's /dev/shm never saw it
    again = _cli(tmp_path, users[1], ["--", "python3", "-c", SHM_PROBE, "second"])
    assert again.returncode == 0 and name not in again.stdout, (again.stdout, again.stderr)
