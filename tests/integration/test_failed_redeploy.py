"""A failed redeploy leaves the previous version running as it was: not restarted, not run again."""

from __future__ import annotations

import json
import time

from .conftest import wait_for


def test_a_failed_redeploy_neither_restarts_the_previous_service_nor_reruns_a_task(maestro):
    # The previous record, read back from its JSON (keys sorted), rendered its env in another
    # order than the fresh one: a "changed" program, so supervisord restarted the service that
    # was meant to keep running, and the task runner ran the task again.
    src = maestro.source("app")
    (src / "count.sh").write_text("echo ran >> runs.txt\n")
    spec = maestro.root / "services.yaml"
    entries = """
- {{name: web, repo: {web}, cmd: "python3 -m http.server $PORT", env: {{ZED: "1", ALPHA: "2"}}}}
- {{name: once, repo: {once}, kind: task, cmd: sh count.sh, env: {{ZED: "1", ALPHA: "2"}}}}
"""
    spec.write_text(entries.format(web=src, once=src))
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    before = maestro.wait_running(["web"])
    wait_for(lambda: maestro.services()["once"]["task"]["phase"] == "succeeded", 30, what="once succeeded")
    runs = maestro.root / "state" / "projects" / "once" / "runs.txt"
    assert runs.read_text() == "ran\n"

    spec.write_text(entries.format(web=maestro.root / "missing", once=maestro.root / "missing"))
    out = maestro.run("deploy-from-env", check=False)
    assert "Traceback" not in out.stderr
    time.sleep(3)  # the controller and the task runner look every second
    after = maestro.services()
    assert "is not a folder" in after["web"]["error"] and "is not a folder" in after["once"]["error"]
    assert after["web"]["status"] == "RUNNING" and after["web"]["pid"] == before["web"]["pid"], after["web"]
    assert runs.read_text() == "ran\n" and after["once"]["task"]["runs"] == 1
    record = json.loads((maestro.root / "state" / "services" / "web.json").read_text())
    assert record["env"] == {"ALPHA": "2", "ZED": "1"}


def test_a_deploy_refused_for_its_port_leaves_no_files_and_its_removal_says_so(maestro):
    # The code was fetched and kept before the port was found taken: a FAILED entry whose folder
    # no `remove-service --purge` deleted (its record names none), and "port - freed, files kept in ".
    src = maestro.source("site")
    maestro.boot()
    first = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "first")
    port = maestro.services()["first"]["port"]
    assert f"port {port}" in first.stdout
    taken = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "second", "--port", str(port), check=False)
    assert taken.returncode == 1 and f"port {port} is already used by service 'first'" in taken.stderr
    assert not (maestro.root / "state" / "projects" / "second").exists()
    out = maestro.run("remove-service", "second", "--yes")
    assert out.stdout == "removed second\n", out.stdout
    out = maestro.run("remove-service", "first", "--yes")
    assert out.stdout.startswith(f"removed first: port {port} freed, files kept in "), out.stdout
