"""deploy --repo /etc hands nothing to a service unless the operator says --allow-system-path."""

from __future__ import annotations

import os

import pytest

from .conftest import http_get

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def test_system_path_repo_needs_the_operators_say_so(maestro):
    maestro.boot()
    proc = maestro.run("deploy", "--repo", "/etc", "--name", "etc", "--yes", "--wait", "0", check=False)
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]  # the log line, then click's one-line error
    assert message.startswith("Error: deploy etc: repo:") and "Traceback" not in proc.stderr, proc.stderr
    assert "repo: /etc is a system path" in message and "--allow-system-path" in message
    assert not (maestro.root / "state" / "projects" / "etc").exists()  # nothing was copied
    # The runtime's own state is protected too; the operator may still insist.
    shared = maestro.root / "state" / "shared"
    shared.mkdir(parents=True)
    (shared / "index.html").write_text("<h1>shared</h1>")
    refused = maestro.run("deploy", "--repo", str(shared), "--name", "shared", "--yes", "--wait", "0", check=False)
    assert refused.returncode == 1 and "system path" in refused.stderr
    maestro.run("deploy", "--repo", str(shared), "--name", "shared", "--yes", "--wait", "10", "--allow-system-path")
    assert "shared" in http_get(maestro.services()["shared"]["port"])
    # An env spec: MAESTRO_ALLOW_SYSTEM_PATHS=1 is the operator's switch.
    env_refused = maestro.run("deploy-from-env", check=False, SERVICES=f"{shared}|0|main|fromenv")
    assert env_refused.returncode == 1 and "system path" in env_refused.stdout + env_refused.stderr
    maestro.run("deploy-from-env", SERVICES=f"{shared}|0|main|fromenv", MAESTRO_ALLOW_SYSTEM_PATHS="1")
