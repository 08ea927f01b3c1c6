"""Faults on a real host: kill -9 mid-boot, crash loops, stop at scale, concurrent deploys,
a full disk, restarts. Each test is bounded in time; counts go to benchmarks/README.md."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from fixtures.host import BIN, HEALTHCHECK, kill_tree, leftovers

from tests.fixtures.archives import make_tar
from tests.fixtures.httpserver import FixtureServer
from tests.integration.conftest import http_get, term_marker_server, wait_for

from .conftest import count, needs_root

pytestmark = [pytest.mark.integration, needs_root]


def _users() -> list[str]:
    return [line.split(":", 1)[0] for line in Path("/etc/passwd").read_text().splitlines()]


def _assert_consistent(maestro, names: list[str]) -> dict[str, dict]:
    """Every service RUNNING and answering, once: one user, one program file, one distinct port each."""
    services = maestro.wait_running(names, timeout=60)
    users = _users()
    ports = [services[n]["port"] for n in names]
    assert len(set(ports)) == len(ports), ports
    ledger = json.loads((Path(maestro.env["MAESTRO_STATE_DIR"]) / "ports.json").read_text())
    for name in names:
        svc = services[name]
        assert users.count(svc["user"]) == 1, svc["user"]
        assert ledger[name] == svc["port"]
        assert f"<h1>{name}</h1>" in http_get(svc["port"])
        count("services_checked")
    assert sorted(ledger) == sorted(services)
    conf = sorted(p.stem for p in Path(maestro.env["SUPERVISOR_CONF_DIR"]).glob("*.conf"))
    assert conf == sorted(names)
    return services


def test_kill_9_mid_boot_then_boot_again(maestro):
    """kill -9 of the whole tree at >= 10 points of provisioning; the next boot is clean."""
    names = [f"crash{i}" for i in range(6)]
    for name in names:
        maestro.preseed(name)
    env = {**maestro.env, "ENTRYPOINT_LOG_LEVEL": "debug"}
    rng = random.Random(int(os.environ.get("MAESTRO_FAULT_SEED", "6")))
    points = []
    for attempt in range(12):
        log_path = maestro.root / f"kill-{attempt}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen([str(BIN / "maestro-entrypoint")], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        if attempt % 2 == 0:
            # After the K-th "provisioning" line: inside the pipeline of service K.
            k = rng.randint(1, len(names))
            point = f"after provisioning line {k}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                if log_path.read_text(errors="replace").count("provisioning ") >= k:
                    break
                time.sleep(0.002)
        else:
            delay = rng.uniform(0.0, 1.2)
            point = f"after {delay:.3f}s"
            time.sleep(delay)
        kill_tree(proc.pid)
        proc.wait()
        points.append(point)
        count("faults_kill9_mid_boot")
    # Nothing of the killed boots lives on (a leaked supervisord would answer for the next boot).
    assert not leftovers(str(maestro.root))
    maestro.boot()
    _assert_consistent(maestro, names)
    assert len(points) >= 10


def test_crash_loop_is_visible_and_isolated(maestro):
    maestro.preseed("steady")
    maestro.preseed("looper", cmd="sh -c 'echo dying; exit 3'")
    maestro.boot()
    steady = maestro.wait_running(["steady"])["steady"]
    seen: set[str] = set()

    def fatal():
        status = maestro.services()["looper"]["status"]
        seen.add(status)
        return status == "FATAL"

    wait_for(fatal, 40, interval=0.1, what="looper FATAL")
    count("faults_crash_loop")
    assert seen & {"BACKOFF", "STARTING"}, seen  # it was retried with backoff before giving up
    services = maestro.services()
    assert services["steady"]["status"] == "RUNNING" and services["steady"]["pid"] == steady["pid"]
    assert "FATAL" in maestro.run("list-services").stdout
    health = maestro.run(sys.executable, "-I", "-S", str(HEALTHCHECK), check=False,
                         HEALTHCHECK_START_PERIOD="0")
    assert health.returncode == 1 and "looper" in health.stdout + health.stderr
    count("services_checked", 2)


def test_graceful_stop_of_30_services(maestro):
    marker_dir = maestro.root / "markers"
    marker_dir.mkdir()
    marker_dir.chmod(0o777)
    script = term_marker_server(marker_dir)
    names = [f"s{i:02d}" for i in range(30)]
    for name in names:
        folder = maestro.preseed(name)
        (folder / "server.py").write_text(script)
        (folder / ".maestro-cmd").write_text("python3 server.py")
    maestro.boot()
    services = maestro.wait_running(names, timeout=90)
    tree = [psutil.Process(maestro.proc.pid), *psutil.Process(maestro.proc.pid).children(recursive=True)]
    stopwait = int(maestro.env.get("MAESTRO_STOPWAITSECS", "5"))
    started = time.monotonic()
    assert maestro.stop(timeout=stopwait + 10) == 0
    took = time.monotonic() - started
    _gone, alive = psutil.wait_procs(tree, timeout=1)
    assert not alive, alive
    assert sorted(p.name for p in marker_dir.iterdir()) == sorted(names)
    assert took < stopwait + 2, took
    assert not any(psutil.pid_exists(s["pid"]) for s in services.values())
    count("services_checked", len(names))
    count("faults_sigterm_services", len(names))


def test_two_deploys_at_once(maestro):
    maestro.preseed("base")
    maestro.boot()
    maestro.wait_running(["base"])
    srcs = [maestro.source(n) for n in ("left", "right")]
    results: dict[str, subprocess.CompletedProcess] = {}

    def go(src: Path) -> None:
        results[src.name] = maestro.run("deploy", "--repo", str(src), "--name", src.name, "--yes", check=False)

    threads = [threading.Thread(target=go, args=(s,)) for s in srcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    count("faults_concurrent_deploys", 2)
    for name, proc in results.items():
        assert proc.returncode == 0 and f"deployed {name}: RUNNING" in proc.stdout, proc.stderr
    _assert_consistent(maestro, ["base", "left", "right"])


def test_deploy_during_boot_waits_for_it(maestro):
    """Boot holds the change lock until every program is added: a deploy run meanwhile waits,
    says so, then lands; neither update trips over the other."""
    gate = threading.Event()
    with FixtureServer() as server:
        tar = make_tar(maestro.root / "slow.tar.gz", [("file", "index.html", b"<h1>slow</h1>")])
        url = server.add("/slow.tar.gz", tar.read_bytes(), gate=gate)
        maestro.preseed("early")
        maestro.boot(wait=False, SERVICES=f"{url}||||slow")
        wait_for(lambda: server.hits.get("/slow.tar.gz"), 30, what="boot to fetch the gated source")
        late: list[subprocess.CompletedProcess] = []
        deploy = threading.Thread(target=lambda: late.append(maestro.run(
            "deploy", "--repo", str(maestro.source("late")), "--name", "late", "--yes", check=False)))
        deploy.start()
        time.sleep(2)  # ample for the deploy to reach the lock; boot is still held by the gate
        assert deploy.is_alive(), late and late[0].stderr
        gate.set()
        deploy.join(120)
    count("faults_deploy_during_boot")
    assert late[0].returncode == 0, late[0].stderr
    assert "waiting for another change" in late[0].stderr
    services = maestro.wait_running(["early", "slow", "late"], timeout=60)
    assert "<h1>slow</h1>" in http_get(services["slow"]["port"])
    assert "<h1>late</h1>" in http_get(services["late"]["port"])
    assert "Traceback" not in maestro.log() and maestro.proc.poll() is None


def test_disk_full_during_extraction_keeps_previous_version(maestro):
    small = maestro.root / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    try:
        maestro.env["MAESTRO_PROJECTS_DIR"] = str(small)
        maestro.boot()
        with FixtureServer() as server:
            good = make_tar(maestro.root / "v1.tar.gz", [("dir", "site", None),
                                                         ("file", "site/index.html", b"<h1>version one</h1>")])
            huge = make_tar(maestro.root / "v2.tar.gz", [("dir", "site", None),
                                                         ("file", "site/index.html", b"<h1>version two</h1>"),
                                                         ("file", "site/blob.bin", b"\0" * (8 * 1024 * 1024))])
            url = server.add("/site.tar.gz", good.read_bytes())
            out = maestro.run("deploy", "--repo", url, "--name", "full", "--yes")
            assert "deployed full: RUNNING" in out.stdout
            first = maestro.services()["full"]
            assert "version one" in http_get(first["port"])
            server.add("/site.tar.gz", huge.read_bytes())
            proc = maestro.run("deploy", "--repo", url, "--name", "full", "--yes", check=False)
            count("faults_disk_full")
            assert proc.returncode == 1
            last = proc.stderr.strip().splitlines()[-1]
            assert last.startswith("Error: deploy full: ") and re.search(r"No space left on device", last), last
            after = maestro.services()["full"]
            assert after["status"] == "RUNNING" and after["pid"] == first["pid"]
            assert "version one" in http_get(after["port"])
            assert (Path(first["directory"]) / "index.html").read_text() == "<h1>version one</h1>"
            count("services_checked")
    finally:
        maestro.stop()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_restart_and_redeploy_keep_data_and_port(maestro):
    src = maestro.source("keeper")
    cmd = "mkdir -p data && echo run >> data/runs.txt && exec python3 -m http.server $PORT --bind 0.0.0.0"
    maestro.boot()
    maestro.run("deploy", "--repo", str(src), "--name", "keeper", "--cmd", cmd, "--yes")
    first = maestro.wait_running(["keeper"])["keeper"]
    runs = Path(first["directory"]) / "data" / "runs.txt"
    wait_for(lambda: runs.exists(), 10, what="data written")
    assert maestro.stop() == 0
    maestro.boot()
    again = maestro.wait_running(["keeper"])["keeper"]
    assert again["port"] == first["port"]
    wait_for(lambda: runs.read_text().count("run") == 2, 10, what="second run appended")
    maestro.run("deploy", "--repo", str(src), "--name", "keeper", "--cmd", cmd, "--yes")
    third = maestro.wait_running(["keeper"])["keeper"]
    assert third["port"] == first["port"] and third["pid"] != again["pid"]
    wait_for(lambda: runs.read_text().count("run") == 3, 10, what="data kept across the redeploy")
    assert "<h1>keeper</h1>" in http_get(third["port"])
    count("faults_restarts", 2)
    count("services_checked", 3)


def test_hostile_entries_fail_alone_with_clear_errors(maestro):
    """The reference's breakers, each alone: `%`, newline, `;` in name or command, duplicate names,
    port 70000, a 404 source. The good services run; each bad one says why."""
    good = maestro.source("good")
    with FixtureServer() as server:
        missing = server.url("/gone.tar.gz")  # the fixture answers 404
        yml = maestro.root / "services.yml"
        yml.write_text(json.dumps({"services": [
            {"repo": str(good), "name": "semi;colon"},
            {"repo": str(good), "name": "semicmd",
             "cmd": "echo first; exec python3 -m http.server $PORT --bind 0.0.0.0"},
            {"repo": str(good), "name": "pct", "cmd": "python3 -m http.server $PORT --bind 0.0.0.0 # 100% %(ENV_X)s"},
            {"repo": str(good), "name": "multi", "cmd": "echo a\nexec python3 -m http.server $PORT --bind 0.0.0.0"},
            {"repo": str(good), "name": "dup"},
            {"repo": str(good), "name": "dup"},
        ]}))
        maestro.boot(
            MAESTRO_SERVICES_FILE=str(yml),
            SERVICES=f"{good}|70000||badport; {missing}|||missing",
            SERVICES_COUNT="1", SVC_1_REPO=str(good), SVC_1_NAME="new\nline",
        )
        names = ["semi-colon", "semicmd", "pct", "multi", "dup", "dup-1"]
        services = maestro.wait_running(names, timeout=60)
        for name in names:
            assert "<h1>good</h1>" in http_get(services[name]["port"])
            count("services_checked")
        assert "port: 70000 is out of range 1-65535" in services["badport"]["error"]
        assert services["missing"]["status"] == "FAILED" and "404" in services["missing"]["error"]
        log = maestro.log()
        assert "SVC_1: name: contains control characters or line breaks" in log
        count("hostile_boot_entries", 9)
    shutil.rmtree(maestro.root / "sources", ignore_errors=True)
