"""Operating tasks, dependencies and branch workspaces as a user does (start/stop, run --until-done,
redeploys, remove --purge), against a real boot: real supervisord, real git, real users; loopback only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fixtures.gitrepos import git

from .conftest import wait_for
from .test_tasks import SERVER, TOKEN, _entries, _finished, _repo, _task

pytestmark = pytest.mark.integration


def test_start_stop_restart_leave_tasks_to_the_task_runner(maestro):
    # `maestro restart --all` started every task again through supervisord, behind the runner's back:
    # an agent made another (paid) run whose phase, exit code and commits were never recorded.
    src = maestro.source("once")
    (src / "server.py").write_text(SERVER)
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: once, repo: {src}, kind: task, cmd: "sh -c 'echo ran >> runs.txt'"}}
- {{name: web, repo: {src}, cmd: python3 server.py}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    _finished(maestro, "once")
    maestro.wait_running(["web"])
    runs_file = Path(_entries(maestro)["once"]["directory"]) / "runs.txt"
    assert runs_file.read_text() == "ran\n"

    out = maestro.run("maestro", "restart", "--all")
    assert "web: restarted" in out.stdout and "once" not in out.stdout + out.stderr, out
    for action in ("start", "stop", "restart"):
        refused = maestro.run("maestro", action, "web", "once", check=False)
        assert refused.returncode == 1 and refused.stdout == "", refused
        assert "once is a task: maestro run once runs it again, maestro cancel once stops its run" in refused.stderr
        assert "Traceback" not in refused.stderr
    time.sleep(2)
    assert runs_file.read_text() == "ran\n", "the task ran again"
    assert _task(maestro, "once")["runs"] == 1


def test_a_workspace_whose_branch_changes_keeps_commits_that_exist_nowhere_else(maestro):
    # Changing an agent's ref replaced its checkout, and the commits it had made (pushed nowhere)
    # were deleted with the old one.
    repo = _repo(maestro.root)
    services = maestro.root / "services.yaml"
    entry = ("- {{name: agent, repo: {repo}, ref: {ref}, kind: task, cmd: \"sh agent.sh 'notes'\", "
             "env: {{AGENT_TOKEN: {token}, AGENT_STEP_SECONDS: '0'}}}}\n")
    services.write_text(entry.format(repo=repo.bare, ref="feat/x", token=TOKEN))
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    assert _finished(maestro, "agent")["phase"] == "succeeded"
    agent_dir = Path(_entries(maestro)["agent"]["directory"])

    def log() -> list[str]:
        return git("-c", f"safe.directory={agent_dir}", "-c", "core.hooksPath=/dev/null", "log", "--format=%s",
                   cwd=agent_dir).splitlines()

    made = log()
    assert made[:2] == ["agent: finish notes", "agent: start notes"]

    services.write_text(entry.format(repo=repo.bare, ref="feat/y", token=TOKEN))
    out = maestro.run("deploy-from-env", check=False)
    assert "Traceback" not in out.stderr
    agent = _entries(maestro)["agent"]
    assert "the checkout of branch 'feat/x'" in agent["error"] and "holds 2 commit(s) not pushed" in agent["error"]
    assert agent["git"]["branch"] == "feat/x" and log() == made  # the previous checkout is still there

    # Once pushed, they exist upstream: the checkout is replaced by one of the new branch.
    git("-c", f"safe.directory={agent_dir}", "-c", "core.hooksPath=/dev/null", "push", "--quiet", "origin", "feat/x",
        cwd=agent_dir)
    maestro.run("deploy-from-env")
    agent = _entries(maestro)["agent"]
    assert agent["error"] is None and agent["git"]["branch"] == "feat/y", agent
    assert git("log", "--format=%s", "feat/x", cwd=repo.bare).splitlines()[:2] == made[:2]


def test_a_dependency_the_controller_gave_up_on_fails_its_dependents(maestro):
    # supervisord says EXITED of a service the controller gave up on (it restarts, not supervisord):
    # its dependents said "waiting: dead healthy" forever, not the failure README promises.
    src = maestro.source("dep")
    (src / "server.py").write_text(SERVER)
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: dead, repo: {src}, cmd: "sh -c 'sleep 0.5; exit 3'", max_restarts: 1, backoff: {{initial: 1s}}}}
- {{name: after, repo: {src}, cmd: python3 server.py, depends_on: {{dead: healthy}}}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    wait_for(lambda: _entries(maestro)["dead"]["status"] == "FATAL", 30, what="dead FATAL")
    after = wait_for(lambda: (e := _entries(maestro)["after"])["status"].startswith("failed") and e, 10,
                     what="after failed")
    assert after["status"] == "failed: dependency dead is FATAL", after["status"]
    assert not (Path(after["directory"]) / "started").exists()


def _web_after_migrate(maestro, migrate: str) -> Path:
    """A services file: task ``migrate`` running ``migrate``, then ``web`` once it completed."""
    src = maestro.source("held")
    (src / "server.py").write_text(SERVER)
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: migrate, repo: {src}, kind: task, cmd: "{migrate}"}}
- {{name: web, repo: {src}, cmd: python3 server.py, depends_on: {{migrate: completed}}}}
""")
    return services


def test_a_service_with_dependencies_the_operator_stopped_stays_stopped_across_a_restart(maestro):
    # The task runner starts a service with depends_on (supervisord does not): at the next boot
    # it started one the operator had stopped, which README says "stays stopped ... until maestro start".
    maestro.boot(MAESTRO_SERVICES_FILE=str(_web_after_migrate(maestro, "true")))
    maestro.wait_running(["web"])
    assert "web: stopped" in maestro.run("maestro", "stop", "web").stdout
    assert maestro.stop() == 0
    maestro.boot()
    time.sleep(4)  # the runner looks every second
    web = _entries(maestro)["web"]
    assert web["status"] == "STOPPED" and web["operator_stopped"] is True, web["status"]
    assert "web: started" in maestro.run("maestro", "start", "web").stdout
    maestro.wait_running(["web"])


def test_a_blocked_service_the_operator_stopped_is_not_started_when_its_dependency_recovers(maestro):
    # Unblocking (its dependency ran again and succeeded) started it, maestro stop notwithstanding.
    maestro.boot(MAESTRO_SERVICES_FILE=str(_web_after_migrate(maestro, "test -f ok")))
    wait_for(lambda: _entries(maestro)["web"]["status"].startswith("failed: dependency migrate"), 20,
             what="web blocked")
    maestro.run("maestro", "stop", "web")
    (Path(_entries(maestro)["migrate"]["directory"]) / "ok").write_text("")
    assert maestro.run("maestro", "run", "migrate", "--until-done").returncode == 0
    time.sleep(3)  # the runner looks every second
    web = _entries(maestro)["web"]
    assert web["status"] == "STOPPED" and web["operator_stopped"] is True, web["status"]
    assert not (Path(_entries(maestro)["web"]["directory"]) / "started").exists()


def _deploy_tasks(maestro, first: tuple[str, str], bad: tuple[str, str]) -> None:
    """Boot with no entries, then deploy three tasks: ``first`` and ``bad`` (name, command), and
    ``next``, which waits for ``bad`` to complete."""
    src = maestro.source(first[0])
    maestro.boot()
    for name, cmd in (first, bad):
        maestro.run("deploy", "--yes", "--repo", str(src), "--name", name, "--task", "--cmd", cmd)
    maestro.run("deploy", "--yes", "--repo", str(src), "--name", "next", "--task", "--cmd", "true",
                "--depends-on", f"{bad[0]}:completed")


def test_a_task_that_failed_without_an_exit_code_says_why(maestro):
    # The table said only "failed" of a run cut short by a container stop (README: "failed:
    # interrupted") and of a task whose dependency failed.
    _deploy_tasks(maestro, ("long", "sleep 60"), ("bad", "sh -c 'exit 1'"))
    wait_for(lambda: _task(maestro, "long")["phase"] == "running", 15, what="long running")
    wait_for(lambda: _task(maestro, "next")["phase"] == "failed", 15, what="next failed")
    assert maestro.stop() == 0
    maestro.proc = None
    maestro.boot()
    table = wait_for(lambda: "failed: interrupted" in (t := maestro.run("list-services").stdout) and t, 15,
                     what="long interrupted")
    rows = {line.split()[0]: line for line in table.splitlines()[1:] if line.strip()}
    assert "failed: interrupted: the runtime stopped during the run" in rows["long"]
    assert "failed: dependency bad failed (exit 1)" in rows["next"]
    assert "failed (1)" in rows["bad"]


def test_run_until_done_succeeds_only_when_the_run_succeeded(maestro):
    # --until-done printed "running" and exited 0 once its 5 s default wait ran out, and exited 0 for a
    # run that failed with no exit code (its dependency failed): `maestro run x --until-done && next`
    # went on as if x had succeeded.
    _deploy_tasks(maestro, ("slow", "sleep 7"), ("bad", "sh -c 'exit 4'"))
    _finished(maestro, "slow")
    wait_for(lambda: _task(maestro, "next")["phase"] == "failed", 15, what="next failed")

    out = maestro.run("maestro", "run", "slow", "--until-done")  # longer than 5 s: waited for
    assert out.stdout.startswith("slow: succeeded (exit 0) in "), out.stdout
    out = maestro.run("maestro", "run", "slow", "--until-done", "--wait", "3", check=False)
    assert out.returncode == 1 and out.stdout == "", out
    assert "slow: still running after 3s (maestro logs slow -f follows it)" in out.stderr
    maestro.run("maestro", "cancel", "slow")
    out = maestro.run("maestro", "run", "next", "--until-done", "--wait", "10", check=False)
    assert out.returncode == 1 and "next: failed: dependency bad failed (exit 4)" in out.stdout, out


def test_remove_purge_asks_naming_the_commits_a_workspace_would_lose(maestro):
    # It asked only "delete its files?": the only copy of an agent's unpushed commits went with a "y".
    repo = _repo(maestro.root)
    services = maestro.root / "services.yaml"
    services.write_text(f"- {{name: agent, repo: {repo.bare}, ref: feat/x, kind: task, cmd: \"sh agent.sh 'n'\", "
                        f"env: {{AGENT_TOKEN: {TOKEN}, AGENT_STEP_SECONDS: '0'}}}}\n")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    _finished(maestro, "agent")
    out = maestro.run("remove-service", "agent", "--purge", input="n\n", check=False)
    assert out.returncode == 1 and "Aborted" in out.stderr, out
    assert ("Remove service agent and delete its files (its checkout holds 2 commit(s) not pushed)? [y/N]"
            in out.stdout), out.stdout
    assert (Path(_entries(maestro)["agent"]["directory"]) / ".git").is_dir()
