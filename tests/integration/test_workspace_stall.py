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


def test_a_checkout_whose_git_hangs_does_not_delay_other_services_restarts(maestro):
    repo = _repo(maestro.root)
    web = maestro.source("web")
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: agent, repo: {repo.bare}, ref: feat/x, kind: task, cmd: "{PLANT}"}}
- {{name: web, repo: {web}, cmd: "python3 -m http.server $PORT", backoff: {{initial: 0.2s}}}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services))
    # supervisord itself, not list-services: that reads the planted checkout too (10 s a call).
    supervisor = Supervisor(Settings.from_env(maestro.env).supervisor_socket)
    pid = wait_for(lambda: (p := supervisor.processes()["web"])["statename"] == "RUNNING" and p["pid"], 30,
                   what="web running")
    agent = wait_for(lambda: (p := supervisor.processes()["agent"])["statename"] == "RUNNING" and p["pid"], 30,
                     what="the agent running")
    (maestro.root / "state" / "projects" / "agent" / "go").touch()
    psutil.Process(agent).wait(10)  # the run ends: the runner now counts its commits in the planted checkout
    killed = time.monotonic()
    psutil.Process(pid).kill()
    wait_for(lambda: (p := supervisor.processes()["web"])["statename"] == "RUNNING" and p["pid"] != pid, 30,
             what="web restarted")
    took = time.monotonic() - killed
    assert took < 5, f"web was restarted {took:.1f}s after it died: the controller's loop waited for git"
    task = wait_for(lambda: (t := _entries(maestro)["agent"]["task"])["phase"] != "running" and t, 60,
                    what="the agent's run to be finished")
    assert task["phase"] == "succeeded" and task["commits_made"] is None  # its HEAD could not be read
