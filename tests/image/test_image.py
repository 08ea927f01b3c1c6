"""Issue 5: the real container. One container for the life-cycle tests (in order), others for
the 20-service stop, the hardened run and the image's metadata."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import HARDENED, HEALTHCHECK, USER_CAPS, Container, http_get, wait_for

pytestmark = pytest.mark.image

EXAMPLES = ("python-api", "node-app", "static-site")
FIXTURES = ("api1", "api2")


def _ps_user(container: Container, pid: int) -> str:
    return container.exec("ps", "-o", "user=", "-p", str(pid)).stdout.strip()


# ---------------------------------------------------------------- the image itself


def test_image_metadata_and_commands(engine, image):
    info = json.loads(engine("image", "inspect", image).stdout)[0]
    config = info.get("Config") or info.get("config")
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "maestro-entrypoint"]
    health = config.get("Healthcheck") or info.get("Healthcheck")  # docker: Config; podman: top level
    assert health["Test"] == ["CMD", *HEALTHCHECK]
    assert health["Interval"] == 30 * 10**9 and health["Timeout"] == 5 * 10**9
    assert health["StartPeriod"] == 20 * 10**9 and health["Retries"] == 3
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "maestro-runtime"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    # /run/maestro: writable on a read-only root even where no tmpfs is mounted on /run (Docker).
    assert set(config["Volumes"]) == {"/var/lib/maestro", "/opt/projects", "/home", "/run/maestro"}
    script = (
        "set -e; for c in maestro maestro-entrypoint deploy deploy-from-env list-services remove-service "
        "remove-project maestro-logs maestro-sandbox maestro-healthcheck; do command -v $c; done; "
        "for b in tini python3 node npm corepack bwrap git iptables ip setpriv prlimit; do "
        "command -v $b >/dev/null; done; "
        "/opt/maestro/venv/bin/supervisord --version; grep -E '^passwd:.*extrausers' /etc/nsswitch.conf; "
        "readlink /var/lib/extrausers; python --version"
    )
    out = engine("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script).stdout
    assert "/usr/local/bin/list-services" in out
    assert "/var/lib/maestro/nss/etc" in out
    assert "Python 3.13" in out  # trixie: projects asking for >= 3.12 build offline


# ---------------------------------------------------------------- one container, its whole life


@pytest.fixture(scope="module")
def main(module_launcher, fixture_url, corepack_env) -> Container:
    container = module_launcher.start(env={
        "SERVICES": f"{fixture_url}|||api1;{fixture_url}|||api2",
        "MAESTRO_SANDBOX_MODE": "off",
        **corepack_env,
    })
    container.wait_running([*EXAMPLES, *FIXTURES])
    return container


def test_programs_running_and_every_port_answers(main):
    services = main.wait_running([*EXAMPLES, *FIXTURES])
    ports = {name: services[name]["port"] for name in (*EXAMPLES, *FIXTURES)}
    assert len(set(ports.values())) == 5
    assert all(main.low <= p < main.low + 100 for p in ports.values())
    for name, port in ports.items():
        status, _body = http_get(port)
        assert status == 200, name
    assert "python-api" in http_get(ports["python-api"])[1]
    assert "Hello from node-app" in http_get(ports["node-app"])[1]
    assert "A static site" in http_get(ports["static-site"])[1]
    assert "<h1>fixture</h1>" in http_get(ports["api1"])[1]
    supervised = main.exec("supervisorctl", "-c", "/run/maestro/supervisord.conf", "status", check=False).stdout
    for name in (*EXAMPLES, *FIXTURES):
        assert f"{name} " in supervised and "RUNNING" in supervised


def test_users_and_permissions(main):
    services = main.services()
    uids = set()
    for name in (*EXAMPLES, *FIXTURES):
        svc = services[name]
        user = f"svc_{name}"
        assert svc["user"] == user and _ps_user(main, svc["pid"]) == user
        entry = main.exec("getent", "passwd", user).stdout.strip().split(":")
        uid = int(entry[2])
        assert 20000 <= uid <= 29999  # from useradd --prefix, read through libnss-extrausers
        uids.add(uid)
        stat = main.exec("stat", "-c", "%U %a", svc["directory"], f"/home/{user}").stdout.split("\n")
        assert stat[0] == f"{user} 750" and stat[1] == f"{user} 700"
    assert len(uids) == 5
    # Accounts are outside /etc (read-only in a hardened run).
    assert "svc_" not in main.exec("cat", "/etc/passwd").stdout
    # One project's user cannot read another's files.
    api1 = services["api1"]
    uid = main.exec("id", "-u", "svc_api1").stdout.strip()
    denied = main.exec("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "cat",
                       f"{services['python-api']['directory']}/app.py", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert api1["directory"].startswith("/var/lib/maestro/projects/")


def test_users_files_and_sockets_with_testinfra(main):
    import testinfra

    host = testinfra.get_host(f"{'podman' if main.engine.is_podman else 'docker'}://{main.name}")
    services = main.services()
    for name in (*EXAMPLES, *FIXTURES):
        user = host.user(f"svc_{name}")
        assert user.exists and 20000 <= user.uid <= 29999
        assert user.home == f"/home/svc_{name}" and user.shell == "/usr/sbin/nologin"
        folder = host.file(services[name]["directory"])
        assert folder.is_directory and folder.user == f"svc_{name}" and folder.mode == 0o750
        assert host.socket(f"tcp://0.0.0.0:{services[name]['port']}").is_listening
        assert [p.pid for p in host.process.filter(user=f"svc_{name}")] == [services[name]["pid"]]
    assert host.file("/var/lib/extrausers").linked_to == "/var/lib/maestro/nss/etc"
    assert host.process.get(pid=1).comm == "tini"


def test_healthcheck_passes(main):
    proc = main.healthcheck()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if main.engine.is_podman:
        assert main.health_status() == "healthy"
    out = main.exec(*HEALTHCHECK).stdout
    assert out.startswith("healthy: 5 service(s) answering")


def test_list_services_json(main):
    services = json.loads(main.exec("list-services", "--json").stdout)
    names = {s["name"] for s in services}
    assert names >= {*EXAMPLES, *FIXTURES}
    for svc in services:
        for key in ("name", "status", "pid", "user", "port", "directory", "command", "command_reason", "source"):
            assert key in svc
    by_name = {s["name"]: s for s in services}
    assert by_name["static-site"]["command_reason"] == "detected: static site"
    assert by_name["python-api"]["command"] == "python3 app.py"  # no venv: python3, as on bare Debian
    assert by_name["api1"]["source"].endswith("/fixture.tar.gz")
    table = main.exec("list-services").stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "STATUS", "HEALTH"]


def test_deploy_by_flags(main, fixture_url):
    out = main.exec("deploy", "--repo", fixture_url, "--name", "flagged", "--yes").stdout
    assert "deployed flagged: RUNNING" in out, out
    svc = main.wait_running(["flagged"])["flagged"]
    assert svc["user"] == "svc_flagged" and _ps_user(main, svc["pid"]) == "svc_flagged"
    assert "<h1>fixture</h1>" in http_get(svc["port"])[1]


def test_deploy_interactive_with_piped_answers(main, fixture_url):
    answers = "\n".join([fixture_url, "", "", "asked", "", "", "y"]) + "\n"
    proc = main.exec("deploy", input=answers)
    assert "deployed asked: RUNNING" in proc.stdout, proc.stdout + proc.stderr
    svc = main.services()["asked"]
    assert svc["user"] == "svc_asked"
    assert http_get(svc["port"])[0] == 200


def test_yarn_project_builds_through_corepack(main, archive_server):
    """corepack fetches the yarn that packageManager names; yarn installs the dependency."""
    out = main.exec("deploy", "--repo", archive_server.url("/yarn-app.tar.gz"), "--name", "yarn-app",
                    "--yes").stdout
    assert "deployed yarn-app: RUNNING" in out, out
    svc = main.wait_running(["yarn-app"])["yarn-app"]
    # RUNNING is the process; the server listens a moment later (Node's start-up).
    assert wait_for(lambda: http_get(svc["port"])[1], 15, what="yarn-app to answer") == "yarn-app ok true\n"
    main.exec("remove-service", "yarn-app", "--purge", "--yes")


def test_remove_service(main):
    port = main.services()["flagged"]["port"]
    out = main.exec("remove-service", "flagged").stdout
    assert "removed flagged" in out
    assert "flagged" not in main.services()
    wait_for(lambda: main.exec("python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)",
                               check=False).returncode != 0, 15, what="flagged's port to close")
    ledger = json.loads(main.exec("cat", "/var/lib/maestro/ports.json").stdout)
    assert "flagged" not in json.dumps(ledger)


def test_restart_keeps_ports_and_project_files(main):
    names = [*EXAMPLES, *FIXTURES, "asked"]
    before = main.wait_running(names)
    main.exec("sh", "-c", "echo kept > /var/lib/maestro/projects/api1/note.txt")
    main.engine("restart", "-t", "10", main.name)
    after = main.wait_running(names)
    for name in names:
        assert after[name]["port"] == before[name]["port"], name
        assert after[name]["user"] == before[name]["user"], name
        assert after[name]["pid"] != before[name]["pid"] or after[name]["uptime"] < before[name]["uptime"]
    assert main.exec("cat", "/var/lib/maestro/projects/api1/note.txt").stdout.strip() == "kept"
    assert main.exec("test", "-f", f"{before['python-api']['directory']}/app.py", check=False).returncode == 0
    for name in names:
        assert http_get(after[name]["port"])[0] == 200
    # The restart stopped the fixture services with SIGTERM.
    assert {"api1", "api2", "asked"} <= {p.name for p in main.markers.iterdir()}


def test_healthcheck_fails_after_a_service_is_killed_past_its_retries(main):
    svc = main.services()["api2"]
    main.exec("touch", f"{svc['directory']}/broken")  # every restart now exits at once
    main.exec("kill", "-KILL", str(svc["pid"]))
    wait_for(lambda: main.services()["api2"]["status"] == "FATAL", 60, what="api2 FATAL")
    out = main.exec(*HEALTHCHECK, check=False)
    assert out.returncode == 1 and "api2 (FATAL)" in out.stdout, out.stdout
    if main.engine.is_podman:
        # Failures count after --start-period=20s (the container just restarted), then 3 in a row.
        def unhealthy():
            assert main.healthcheck().returncode != 0
            return main.health_status() == "unhealthy"

        wait_for(unhealthy, 60, interval=1, what="podman health status unhealthy")
    # Repaired and restarted: healthy again.
    main.exec("rm", f"{svc['directory']}/broken")
    main.exec("supervisorctl", "-c", "/run/maestro/supervisord.conf", "start", "api2")
    main.wait_running(["api2"])
    assert main.healthcheck().returncode == 0


def test_stop_ends_every_service_gracefully(main):
    for marker in main.markers.iterdir():
        marker.unlink()
    start = time.monotonic()
    main.engine("stop", "-t", "10", main.name)
    elapsed = time.monotonic() - start
    state = main.state()
    assert state["ExitCode"] == 0, main.logs()[-3000:]
    assert elapsed < 10
    assert sorted(p.name for p in main.markers.iterdir()) == sorted([*FIXTURES, "asked"])


# ---------------------------------------------------------------- scale, hardened


def test_stop_with_20_services_is_graceful_and_in_time(start_container, fixture_url):
    names = [f"s{i:02d}" for i in range(20)]
    container = start_container(projects=False, env={
        "SERVICES": ";".join(f"{fixture_url}|||{n}" for n in names),
        "MAESTRO_SANDBOX_MODE": "off",
    })
    container.wait_running(names, timeout=180)
    start = time.monotonic()
    container.engine("stop", "-t", "10", container.name)
    elapsed = time.monotonic() - start
    assert container.state()["ExitCode"] == 0, container.logs()[-3000:]
    assert elapsed < 10, f"stop took {elapsed:.1f}s"
    assert sorted(p.name for p in container.markers.iterdir()) == names


def test_hardened_run_boots_and_answers_degraded(start_container, fixture_url):
    container = start_container(*HARDENED, env={"SERVICES": f"{fixture_url}|||api1"})
    services = container.wait_running([*EXAMPLES, "api1"])
    for name in (*EXAMPLES, "api1"):
        assert http_get(services[name]["port"])[0] == 200
        assert services[name]["degraded"], services[name]  # users, sandbox... not enforced
    log = container.logs()
    assert "per-project users are NOT enforced" in log
    assert "SANDBOX DISABLED" in log
    assert "Traceback" not in log
    table = container.exec("list-services").stdout
    assert "not enforced" in table
    assert container.healthcheck().returncode == 0
    # Writable only where documented.
    assert container.exec("touch", "/etc/x", check=False).returncode != 0
    assert container.exec("touch", "/usr/x", check=False).returncode != 0
    for writable in ("/run/maestro/x", "/tmp/x", "/var/lib/maestro/x", "/home/x", "/opt/projects/x"):
        assert container.exec("touch", writable, check=False).returncode == 0, writable
    container.engine("stop", "-t", "10", container.name)
    assert container.state()["ExitCode"] == 0


def test_hardened_run_with_user_capabilities_has_per_project_users(start_container, fixture_url):
    caps = [x for cap in USER_CAPS for x in ("--cap-add", cap)]
    container = start_container(*HARDENED, *caps, env={"SERVICES": f"{fixture_url}|||api1"})
    services = container.wait_running([*EXAMPLES, "api1"])
    for name in (*EXAMPLES, "api1"):
        assert _ps_user(container, services[name]["pid"]) == f"svc_{name}"
        assert http_get(services[name]["port"])[0] == 200
    assert "per-project users are NOT enforced" not in container.logs()
    container.engine("stop", "-t", "10", container.name)
    assert container.state()["ExitCode"] == 0
    assert (container.markers / "api1").exists()


SANDBOX_FLAGS = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined",
                 "--security-opt", "unmask=/proc/*"]


def test_full_sandbox_in_the_image(start_container, fixture_url, archive_server, corepack_env):
    """With the documented capabilities every service runs in bubblewrap, as its user, isolated."""
    container = start_container(*SANDBOX_FLAGS, env={"SERVICES": f"{fixture_url}|||api1",
                                                     "MAESTRO_SANDBOX_MODE": "require", **corepack_env})
    services = container.wait_running([*EXAMPLES, "api1"])
    for name in (*EXAMPLES, "api1"):
        svc = services[name]
        assert svc["sandbox"]["sandbox"] == "bubblewrap", svc["sandbox"]
        assert http_get(svc["port"])[0] == 200
        assert _ps_user(container, svc["pid"]) == "root"  # the outer bwrap; the service below it:
        children = container.exec("ps", "-o", "user=,args=", "--ppid", str(svc["pid"])).stdout
        assert "bwrap" in children, children
    assert "SANDBOX DISABLED" not in container.logs()

    # The same sandbox by hand: another project's folder is invisible, /usr read-only, not root.
    def sandboxed(*argv: str):
        return container.exec("maestro-sandbox", "--user", "svc_api1", "--workdir",
                              services["api1"]["directory"], "--", *argv, check=False)

    assert sandboxed("id", "-u").stdout.strip() not in ("", "0")
    assert sandboxed("ls", services["python-api"]["directory"]).returncode != 0
    assert sandboxed("touch", "/usr/x").returncode != 0
    assert sandboxed("touch", "data-written-in-sandbox").returncode == 0

    # A sandboxed build reaches the registries only through the allowlisting proxy: corepack
    # fetches pnpm through it, pnpm the dependency.
    out = container.exec("deploy", "--repo", archive_server.url("/pnpm-app.tar.gz"), "--name", "pnpm-app",
                         "--yes").stdout
    assert "deployed pnpm-app: RUNNING" in out, out
    svc = container.wait_running(["pnpm-app"])["pnpm-app"]
    assert svc["sandbox"]["sandbox"] == "bubblewrap"
    # RUNNING is its process started (startsecs 0); pnpm (corepack) then node take a moment to listen
    assert wait_for(lambda: http_get(svc["port"])[1], 15, what="pnpm-app to answer") == "pnpm-app ok true\n"
    container.engine("stop", "-t", "10", container.name)
    assert container.state()["ExitCode"] == 0


def test_sandboxed_build_ignores_the_operators_proxy(start_container, archive_server, corepack_env):
    """The container's own https_proxy (passed to builds) cannot be reached from a sandboxed
    build's network namespace: corepack must still go through the sandbox's proxy, not fail
    with getaddrinfo EAI_AGAIN on the operator's proxy host."""
    corp = "http://corp.invalid:8080"
    container = start_container(*SANDBOX_FLAGS, env={"MAESTRO_SANDBOX_MODE": "require", **corepack_env,
                                                     "https_proxy": corp, "npm_config_https_proxy": corp})
    out = container.exec("deploy", "--repo", archive_server.url("/pnpm-app.tar.gz"), "--name", "pnpm-app",
                         "--yes", check=False)
    assert "deployed pnpm-app: RUNNING" in out.stdout, (out.stdout, out.stderr[-3000:])
    svc = container.wait_running(["pnpm-app"])["pnpm-app"]
    assert svc["sandbox"]["sandbox"] == "bubblewrap"
    # RUNNING is its process started (startsecs 0); pnpm (corepack) then node take a moment to listen
    assert wait_for(lambda: http_get(svc["port"])[1], 15, what="pnpm-app to answer") == "pnpm-app ok true\n"
