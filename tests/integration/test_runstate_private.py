"""What the controller keeps about a service (its last output line when it gave up, its health
detail) is not readable by the other services' users. The run state folder was 0755 with 0644
files: without the sandbox (it hides the state dir, but `auto` falls back to none where bubblewrap
cannot run) any service read every other one's last error line: a traceback's message, a URL with
its password. Real boot, real supervisord, real useradd; the read is made as the other user."""

from __future__ import annotations

import pwd
import subprocess

import pytest

from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import services_file

pytestmark = pytest.mark.integration

LEAKY = "import sys\nsys.exit('cannot connect to postgres://app:s3cr3t-pass@db/app')\n"


def test_another_services_user_cannot_read_the_run_state(maestro):
    spec = services_file(maestro, [
        {"name": "leaky", "cmd": "python3 app.py", "app": LEAKY, "max_restarts": 1,
         "backoff": {"initial": "100ms"}},
        {"name": "nosy", "cmd": "python3 -m http.server $PORT"},
    ])
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running(["nosy"])
    state = maestro.root / "state" / "runstate" / "leaky.json"
    wait_for(lambda: state.exists() and "s3cr3t-pass" in state.read_text(), 30, what="leaky's reason saved")
    nosy = pwd.getpwnam(maestro.services()["nosy"]["user"])
    read = subprocess.run(["setpriv", f"--reuid={nosy.pw_uid}", f"--regid={nosy.pw_gid}", "--clear-groups",
                           "cat", str(state)], capture_output=True, text=True, timeout=10)
    assert read.returncode != 0 and "s3cr3t-pass" not in read.stdout, read.stdout
    assert "Permission denied" in read.stderr
    # root's readers still read it: list-services shows the reason
    assert "s3cr3t-pass" in maestro.services()["leaky"]["error"]
