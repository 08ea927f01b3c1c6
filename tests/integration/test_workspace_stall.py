"""A hostile branch workspace must not stall the controller's loop (real supervisord, real git,
real users). The agent turns its checkout's HEAD into a FIFO: every git reading that checkout
then blocks until GIT_TIMEOUT (10 s). The runner counts the commits a run made when it ends,
and the controller's loop (every service's restarts) waits for each runner step."""

from __future__ import annotations

import time

import psutil
import pytest

from maestro_runtime.engine.supervisord import Supervisor
from maestro_runtime.settings import Settings

from .conftest import wait_for
from .test_tasks import _entries, _repo

pytestmark = pytest.mark.integration

# It waits for the test's word, then plants the FIFO and ends.
PLANT = "sh -c 'while [ ! -e go ]; do sleep 0.1; done; rm .git/HEAD && mkfifo .git/HEAD'"
# The other leaves HEAD alone: its objects' alternates then hang status, log and rev-list, one after the other.
PLANT2 = ("sh -c 'while [ ! -e go ]; do sleep 0.1; done; mkdir -p .git/objects/info; "
          "mkfifo .git/objects/info/alternates'")


def test_a_checkout_whose_git_hangs_does_not_delay_other_services_restarts(maestro):
    repo = _repo(maestro.root)
    web = maestro.source("web")
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: agent, repo: {repo.bare}, ref: feat/x, kind: task, cmd: "{PLANT}"}}
- {{name: agent2, repo: {repo.bare}, ref: feat/y, kind: task, cmd: "{PLANT2}"}}
- {{name: web, repo: {web}, cmd: "python3 -m http.server $PORT", backoff: {{initial: 0.2s}}}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    # supervisord itself, not list-services: that reads the planted checkout too (10 s a call).
    supervisor = Supervisor(Settings.from_env(maestro.env).supervisor_socket)
    pid = wait_for(lambda: (p := supervisor.processes()["web"])["statename"] == "RUNNING" and p["pid"], 30,
                   what="web running")
    agent = wait_for(lambda: (p := supervisor.processes()["agent"])["statename"] == "RUNNING" and p["pid"], 30,
                     what="the agent running")
    other = wait_for(lambda: (p := supervisor.processes()["agent2"])["statename"] == "RUNNING" and p["pid"], 30,
                     what="agent2 running")
    for name in ("agent2", "agent"):
        (maestro.root / "state" / "projects" / name / "go").touch()
    # The runs end: the runner now counts their commits in the planted checkouts.
    wait_for(lambda: not psutil.pid_exists(other) and not psutil.pid_exists(agent), 10, what="both runs to end")
    killed = time.monotonic()
    psutil.Process(pid).kill()
    wait_for(lambda: (p := supervisor.processes()["web"])["statename"] == "RUNNING" and p["pid"] != pid, 30,
             what="web restarted")
    took = time.monotonic() - killed
    assert took < 5, f"web was restarted {took:.1f}s after it died: the controller's loop waited for git"

    # list-services reads both checkouts at once, each given up at its first timeout; --ready reads none.
    for args, most in ((("--ready",), 5), (("--json",), 15)):
        began = time.monotonic()
        maestro.run("list-services", *args, check=False)
        took = time.monotonic() - began
        assert took < most, f"list-services {args[0]} took {took:.1f}s over two hostile checkouts"
    task = wait_for(lambda: (t := _entries(maestro)["agent"]["task"])["phase"] != "running" and t, 60,
                    what="the agent's run to be finished")
    assert task["phase"] == "succeeded" and task["commits_made"] is None  # its HEAD could not be read
    entries = _entries(maestro)
    assert entries["agent2"]["git"]["error"] == "workspace unreadable" and entries["web"]["status"] == "RUNNING"
