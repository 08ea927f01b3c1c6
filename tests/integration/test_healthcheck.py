"""The HEALTHCHECK program against a real boot."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.integration
HEALTHCHECK = Path(__file__).resolve().parents[2] / "healthcheck" / "healthcheck.py"


def run_check(maestro, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", str(HEALTHCHECK)], env={**maestro.env, **env},
                          capture_output=True, text=True, timeout=10)


def test_healthy_then_unhealthy_when_a_service_dies(maestro):
    for name in ("h1", "h2", "h3"):
        maestro.preseed(name)
    # The HEALTHCHECK reads the controller's probe states: probe often, so a stop shows quickly.
    maestro.boot(MAESTRO_HEALTH_INTERVAL="300ms", MAESTRO_HEALTH_TIMEOUT="500ms", MAESTRO_HEALTH_RETRIES="2")
    services = maestro.wait_running(["h1", "h2", "h3"])
    started = time.monotonic()
    proc = run_check(maestro)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip() == "healthy: 3 service(s) answering"
    assert elapsed < 5

    # Stop one program: within its start period it would be "starting"; with period 0 it fails.
    subprocess.run(["kill", "-STOP", str(services["h2"]["pid"])], check=True)
    try:
        proc = wait_for(lambda: (p := run_check(maestro, HEALTHCHECK_START_PERIOD="0", HEALTHCHECK_BUDGET="2"))
                        .returncode == 1 and p, 15, what="h2 unhealthy")
        assert proc.stdout.startswith("unhealthy: h2 (")
        assert "h1" not in proc.stdout and "h3" not in proc.stdout
        young = run_check(maestro, HEALTHCHECK_START_PERIOD="3600", HEALTHCHECK_BUDGET="2")
        assert young.returncode == 0 and "1 starting (h2)" in young.stdout
    finally:
        subprocess.run(["kill", "-CONT", str(services["h2"]["pid"])], check=True)


def test_crash_loop_turns_fatal_and_unhealthy(maestro):
    maestro.preseed("ok")
    maestro.preseed("crash", cmd="sh -c 'echo dying >&2; exit 3'")
    maestro.boot(MAESTRO_STARTRETRIES="1")

    def fatal():
        services = maestro.services()
        return services if services["crash"]["status"] == "FATAL" else None

    services = wait_for(fatal, 30, what="crash to be FATAL")
    assert services["ok"]["status"] == "RUNNING"
    proc = run_check(maestro, HEALTHCHECK_START_PERIOD="0")
    assert proc.returncode == 1 and proc.stdout.strip() == "unhealthy: crash (FATAL)"
    assert "[crash] dying" in maestro.log()


def test_port_override_and_supervisord_down(maestro):
    maestro.preseed("p")
    maestro.boot()
    port = maestro.wait_running(["p"])["p"]["port"]
    assert run_check(maestro, HEALTHCHECK_PORTS=f"{port}").returncode == 0
    proc = run_check(maestro, HEALTHCHECK_PORTS=f"{port}; 1")
    assert proc.returncode == 1 and "port 1" in proc.stdout
    maestro.stop()
    proc = run_check(maestro)
    assert proc.returncode == 1 and "supervisord is not answering" in proc.stdout


def run_live(maestro) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", str(HEALTHCHECK), "--live"], env=maestro.env,
                          capture_output=True, text=True, timeout=10)


def test_a_service_that_failed_to_provision_is_unhealthy(maestro):
    maestro.preseed("good")
    maestro.boot(SERVICES="/nope/missing|||broken")
    maestro.wait_running(["good"])
    proc = run_check(maestro)
    assert proc.returncode == 1 and proc.stdout.strip() == "unhealthy: broken (FAILED)"
    # Liveness judges the runtime, not one service: restarting the container would not fix a build.
    live = run_live(maestro)
    assert live.returncode == 0 and live.stdout.strip() == "live: supervisord answers, maestro-controller RUNNING"
    maestro.run("supervisorctl", "-c", str(maestro.root / "run" / "supervisord.conf"), "stop", "maestro-controller")
    live = run_live(maestro)
    assert live.returncode == 1 and live.stdout.strip() == "unhealthy: maestro-controller STOPPED"
    maestro.stop()
    live = run_live(maestro)
    assert live.returncode == 1 and "supervisord is not answering" in live.stdout


def test_the_script_runs_by_itself():
    """The image links it onto PATH; its shebang (python3 -IS) must work when executed directly."""
    proc = subprocess.run([str(HEALTHCHECK)], env={"MAESTRO_RUNTIME_DIR": "/nonexistent"},
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1 and "supervisord is not answering" in proc.stdout


def test_help_prints_the_usage_and_probes_nothing():
    """``maestro-healthcheck --help`` used to run the check; an unknown option is refused (status 2)."""
    script = str(HEALTHCHECK)
    env = {"MAESTRO_RUNTIME_DIR": "/nonexistent", "MAESTRO_STATE_DIR": "/nonexistent"}  # a check would say so
    shown = subprocess.run([sys.executable, "-I", "-S", script, "--help"], capture_output=True, text=True, env=env)
    assert (shown.returncode, shown.stdout.splitlines()[0]) == (0, "usage: maestro-healthcheck [--live]")
    refused = subprocess.run([sys.executable, "-I", "-S", script, "--bogus"], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and refused.stderr.startswith("usage:") and not refused.stdout


def test_services_still_provisioning_count_as_starting(maestro):
    """A boot still building some projects: the container is not unhealthy for them (a build can
    take minutes), and the line says they are coming; a list a dead boot left counts for nothing."""
    import json
    import os

    maestro.preseed("early")
    maestro.boot()
    maestro.wait_running(["early"])
    listed = Path(maestro.env["MAESTRO_RUNTIME_DIR"]) / "provisioning.json"
    listed.write_text(json.dumps({"pid": os.getpid(), "since": time.time(), "services": {"early": {}, "late": {}}}))
    proc = wait_for(lambda: (p := run_check(maestro)).returncode == 0 and "starting" in p.stdout and p, 20,
                    what="a healthy check")
    assert proc.stdout.strip() == "healthy: 1 service(s) answering, 1 starting (late (provisioning))", proc.stdout
    listed.write_text(json.dumps({"pid": 2 ** 22 + 1, "services": {"late": {}}}))  # no such process
    assert run_check(maestro).stdout.strip() == "healthy: 1 service(s) answering"


def test_a_runtime_holding_only_a_task_stays_healthy_after_it_succeeds(maestro):
    # With no service record left after tasks are set aside, the check fell back to "every
    # program RUNNING": the task's EXITED program made the container unhealthy once it had succeeded.
    src = maestro.source("job")
    services = maestro.root / "services.yaml"
    services.write_text(f"- {{name: job, repo: {src}, kind: task, cmd: \"sh -c 'exit 0'\"}}\n")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    wait_for(lambda: "succeeded" in maestro.run("list-services", "--json").stdout, 30, what="job succeeded")
    proc = run_check(maestro)
    assert (proc.returncode, proc.stdout.strip()) == (0, "healthy: 0 service(s) answering"), proc.stdout


def test_list_services_ready_waits_for_probes_and_tasks(maestro):
    # What the split exports' readiness runs (ops/manifests.py READY): unlike the HEALTHCHECK, a
    # service still starting or a task not yet done is not ready.
    src = maestro.source("web")
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: web, repo: {src}, health: /, cmd: "sh -c 'sleep 4; exec python3 -m http.server $PORT'"}}
- {{name: job, repo: {src}, kind: task, cmd: "sh -c 'sleep 2'"}}
- {{name: nightly, repo: {src}, kind: task, schedule: "0 3 * * *", cmd: "true"}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services), MAESTRO_HEALTH_INTERVAL="300ms")

    def ready():
        return maestro.run("list-services", "--ready", check=False)

    early = ready()
    assert early.returncode == 1 and early.stdout.startswith("not ready: "), early.stdout + early.stderr
    assert "web (" in early.stdout and "job (" in early.stdout
    # A scheduled task is never waited for: its first run may be hours away (an export's readiness).
    assert "nightly" not in early.stdout
    assert run_check(maestro).returncode == 0  # the HEALTHCHECK: starting is healthy enough
    done = wait_for(lambda: (p := ready()).returncode == 0 and p, 40, what="web healthy and job succeeded")
    assert done.stdout.strip() == "ready: 3 entries"
    assert maestro.run("list-services", "--ready", "--kind", "task").stdout.strip() == "ready: 2 entries"
