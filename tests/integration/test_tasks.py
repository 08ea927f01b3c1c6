"""Tasks, branch workspaces, dependencies and schedules (issue 14) against a real boot:
real supervisord, real git, real users; loopback only."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from fixtures.gitrepos import git, make_repo

from .conftest import wait_for

pytestmark = pytest.mark.integration

# The example's stand-in agent (examples/agent-task/agent.sh): two commits on its branch.
AGENT = (Path(__file__).resolve().parents[2] / "examples" / "agent-task" / "agent.sh").read_text()
TOKEN = "tok-9f8e7d6c5b4a"


def _repo(root: Path):
    """The fixture repository plus branches feat/x (with the agent script) and feat/y."""
    repo = make_repo(root / "git")
    work = root / "git" / "work"
    for branch in ("feat/x", "feat/y"):
        git("checkout", "--quiet", "-b", branch, "main", cwd=work)
        (work / "agent.sh").write_text(AGENT)
        (work / "peek.sh").write_text("ls ../agent/NOTES.md && exit 0; cat ../agent/agent.sh && exit 0; exit 7\n")
        git("add", ".", cwd=work)
        git("commit", "--quiet", "-m", f"scripts on {branch}", cwd=work)
        git("push", "--quiet", str(repo.bare), branch, cwd=work)
    return repo


def _entries(maestro, *args: str) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads(maestro.run("list-services", "--json", *args).stdout)}


def _task(maestro, name: str) -> dict:
    return _entries(maestro)[name]["task"]


def _finished(maestro, name: str, runs: int = 1, timeout: float = 30) -> dict:
    return wait_for(lambda: (t := _task(maestro, name))["runs"] >= runs and t["phase"] in
                    ("succeeded", "failed", "cancelled") and t, timeout, what=f"{name} run {runs} to end")


def test_tasks_on_branches_fail_persist_rerun_and_share_one_object_store(maestro):
    repo = _repo(maestro.root)
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: fails, repo: {repo.bare}, ref: feat/x, kind: task, cmd: "sh -c 'echo failing; exit 3'"}}
- {{name: agent, repo: {repo.bare}, ref: feat/x, kind: task, cmd: "sh agent.sh 'write notes'",
   env: {{AGENT_TOKEN: {TOKEN}, AGENT_STEP_SECONDS: "0"}}, allow_hosts: [api.example.com]}}
- {{name: peek, repo: {repo.bare}, ref: feat/y, kind: task, cmd: "sh peek.sh"}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))

    fails = _finished(maestro, "fails")
    assert (fails["phase"], fails["exit_code"]) == ("failed", 3)
    assert fails["duration"] is not None and fails["started"] <= fails["ended"]
    agent = _finished(maestro, "agent")
    assert agent["phase"] == "succeeded", agent
    peek = _finished(maestro, "peek")
    assert (peek["phase"], peek["exit_code"]) == ("failed", 7)  # it could not see agent's files

    entries = _entries(maestro)
    git_info = entries["agent"]["git"]
    assert git_info["commits_made"] == 2 and git_info["ahead"] == 2 and git_info["behind"] == 0
    assert git_info["branch"] == "feat/x" and git_info["last_commit"].endswith("agent: finish notes")
    assert entries["peek"]["git"]["branch"] == "feat/y" and entries["peek"]["git"]["ahead"] == 0
    table = maestro.run("list-services").stdout
    assert "Δ0 ↑2 ↓0 feat/x +2" in table and "failed (3)" in table

    # The commits are in that branch's checkout; both checkouts share one object store's files on disk.
    agent_dir, peek_dir = Path(entries["agent"]["directory"]), Path(entries["peek"]["directory"])
    log = git("-c", f"safe.directory={agent_dir}", "-c", "core.hooksPath=/dev/null", "log", "--format=%s", "-3",
              cwd=agent_dir)
    assert log.splitlines()[:2] == ["agent: finish notes", "agent: start notes"]
    stores = list((maestro.root / "state" / "git").iterdir())
    assert len(stores) == 1 and (stores[0] / "objects").is_dir()
    assert stores[0].stat().st_mode & 0o777 == 0o700 and stores[0].stat().st_uid == 0  # no user reads it
    in_store = {p.stat().st_ino for p in (stores[0] / "objects").rglob("*") if p.is_file()}
    for folder in (agent_dir, peek_dir):
        assert not (folder / ".git" / "objects" / "info" / "alternates").exists()
        linked = [p for p in (folder / ".git" / "objects").rglob("*") if p.is_file() and p.stat().st_ino in in_store]
        assert linked and all(p.stat().st_uid == 0 and not p.stat().st_mode & 0o222 for p in linked)
    peek = peek_dir.stat()
    denied = subprocess.run(["setpriv", f"--reuid={peek.st_uid}", f"--regid={peek.st_gid}", "--clear-groups", "--",
                             "ls", str(stores[0])], capture_output=True, text=True)
    assert denied.returncode != 0, denied.stdout  # another entry's user cannot read the store
    assert "links)" not in maestro.log()  # the shared read-only objects are not warned about
    assert not (peek_dir / "NOTES.md").exists()
    assert "agent: step 2 committed, 2 commit(s) ahead of upstream" in maestro.log()
    assert TOKEN not in maestro.log() and TOKEN not in maestro.run("list-services", "--json").stdout
    assert agent_dir.stat().st_uid != peek_dir.stat().st_uid and agent_dir.stat().st_mode & 0o007 == 0

    # Filters.
    assert set(_entries(maestro, "--kind", "task")) == {"fails", "agent", "peek"}
    assert set(_entries(maestro, "--state", "failed")) == {"fails", "peek"}

    # Never restarted; still failed with 3 after a container restart; the agent's commits stay.
    time.sleep(2)
    assert _task(maestro, "fails")["runs"] == 1
    maestro.stop()
    maestro.proc = None
    maestro.boot()
    time.sleep(3)
    entries = _entries(maestro)
    assert (entries["fails"]["task"]["phase"], entries["fails"]["task"]["exit_code"]) == ("failed", 3)
    assert entries["fails"]["task"]["runs"] == 1 and entries["agent"]["task"]["runs"] == 1
    assert entries["agent"]["git"]["ahead"] == 2

    out = maestro.run("maestro", "run", "fails", "--until-done", "--wait", "30", check=False)
    assert out.returncode == 3 and "failed (exit 3)" in out.stdout, out
    assert _task(maestro, "fails")["runs"] == 2


SERVER = """import os, signal, sys, time, http.server
open('started', 'w').write(repr(time.time()))
def bye(*_):
    open('stopped', 'w').write(repr(time.time()))
    time.sleep(0.3)  # a dependent that takes a moment to stop: its dependency must wait for it
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_dependencies_order_start_fail_dependents_and_reject_cycles(maestro):
    for name in ("a", "b", "c"):
        (maestro.source(name) / "server.py").write_text(SERVER)
    src = maestro.root / "sources"
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: b, repo: {src}/b, cmd: python3 server.py, depends_on: {{a: healthy}}}}
- {{name: a, repo: {src}/a, cmd: python3 server.py}}
- {{name: migrate, repo: {src}/c, kind: task, cmd: "sh -c 'exit 1'"}}
- {{name: c, repo: {src}/c, cmd: python3 server.py, depends_on: {{migrate: completed}}}}
- {{name: d, repo: {src}/c, cmd: python3 server.py, depends_on: [e]}}
- {{name: e, repo: {src}/c, cmd: python3 server.py, depends_on: [d]}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    maestro.wait_running(["a", "b"])
    entries = _entries(maestro)
    a_dir, b_dir = Path(entries["a"]["directory"]), Path(entries["b"]["directory"])
    a_started = float((a_dir / "started").read_text())
    b_started = float((b_dir / "started").read_text())
    assert b_started >= a_started + 0.9, (a_started, b_started)  # after A was RUNNING (startsecs=1)

    c = wait_for(lambda: (e := _entries(maestro)["c"])["status"].startswith("failed") and e, 20, what="c failed")
    assert c["status"] == "failed: dependency migrate failed (exit 1)"
    assert Path(c["directory"]).is_dir() and not (Path(c["directory"]) / "started").exists()
    # The cycle was rejected when the spec was read: neither entry has a program.
    for name in ("d", "e"):
        assert entries[name]["status"] == "FAILED"
        assert "dependency cycle: d -> e -> d" in entries[name]["error"]

    # Shutdown in reverse dependency order: b had stopped before a was asked to.
    maestro.stop()
    assert float((b_dir / "stopped").read_text()) + 0.3 <= float((a_dir / "stopped").read_text()) + 0.05


def test_deploy_a_scheduled_task_runs_at_the_minute_boundary_once_then_remove(maestro):
    src = maestro.source("tick")
    maestro.boot()
    # Far enough from a boundary that the deploy cannot straddle it.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    out = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "tick", "--task", "--schedule", "* * * * *",
                      "--cmd", "sleep 1")
    assert "deployed task tick: runs on schedule '* * * * *'" in out.stdout
    boundary = (time.time() // 60 + 1) * 60
    assert _task(maestro, "tick")["runs"] == 0  # a schedule never runs for the slot before it was seen
    task = _finished(maestro, "tick", runs=1, timeout=boundary - time.time() + 15)
    assert task["phase"] == "succeeded" and boundary <= task["started"] < boundary + 2, (boundary, task)
    assert _task(maestro, "tick")["runs"] == 1
    assert set(_entries(maestro, "--kind", "service")) == set()

    # A long task, cancelled gracefully; a dependency on a name that does not exist is refused.
    slow = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "slow", "--task", "--cmd", "sleep 60")
    assert "deployed task slow: runs now" in slow.stdout
    wait_for(lambda: _task(maestro, "slow")["phase"] == "running", 15, what="slow running")
    out = maestro.run("maestro", "cancel", "slow")
    assert "slow: cancelled" in out.stdout and _task(maestro, "slow")["runs"] == 1
    refused = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "late", "--depends-on", "ghost:healthy",
                          check=False)
    assert refused.returncode == 1 and "depends_on: unknown service 'ghost'" in refused.stderr

    out = maestro.run("remove-service", "tick", "--yes")
    assert "removed tick" in out.stdout
    assert not (maestro.root / "state" / "tasks" / "tick.json").exists() or wait_for(
        lambda: not (maestro.root / "state" / "tasks" / "tick.json").exists(), 5, what="phase file gone")


def test_an_agent_task_commits_inside_bubblewrap(maestro):
    """In the sandbox only the home and the checkout are bound: the checkout holds its own objects."""
    repo = _repo(maestro.root)
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: agent, repo: {repo.bare}, ref: feat/x, kind: task, cmd: "sh agent.sh 'sandboxed'",
   env: {{AGENT_TOKEN: {TOKEN}, AGENT_STEP_SECONDS: "0"}}}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services), MAESTRO_SANDBOX_MODE="require")
    agent = _finished(maestro, "agent")
    entry = _entries(maestro)["agent"]
    assert entry["sandbox"]["sandbox"] == "bubblewrap"
    assert agent["phase"] == "succeeded", maestro.log()[-2000:]
    assert entry["git"]["commits_made"] == 2


def test_deploy_of_an_entry_held_by_its_dependencies_says_what_it_waits_for(maestro):
    # It said "deployed after: STOPPED", supervisord's state for a program it does not start itself.
    src = maestro.source("held")
    maestro.boot()
    maestro.run("deploy", "--yes", "--repo", str(src), "--name", "slow", "--task", "--cmd", "sleep 60")
    out = maestro.run("deploy", "--yes", "--repo", str(src), "--name", "after", "--depends-on", "slow:completed")
    assert "deployed after: waiting for slow completed," in out.stdout, out.stdout
    maestro.run("maestro", "cancel", "slow")
