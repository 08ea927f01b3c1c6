"""What `maestro export compose --split` asks of the image, run in the real image. A container
that another one waits for (depends_on healthy or completed) gets the READY healthcheck, which
must pass exactly when its entry is what the runtime's own depends_on waits for: a service whose
probe passes, a task that succeeded (its container stays up after it: the runtime does)."""

from __future__ import annotations

import json
import random

import yaml

from maestro_runtime.ops import export as ex
from maestro_runtime.spec import parse_services_yaml

from .conftest import HEALTHCHECK, wait_for


def awaited_container(start_container, tmp_path, fixture_url: str, entry: str):
    """Export `entry` (named first) and a service waiting for it with --split; run the first
    one's container as compose would (its one-service file) and return it with its healthcheck."""
    text = f"services:\n  - {{name: first, repo: '{fixture_url}', {entry}}}\n" \
           f"  - {{name: then, repo: '{fixture_url}', depends_on: {{first: completed}}}}\n"
    export = ex.render(parse_services_yaml(text, "s.yml"), ex.Options("compose", split=True))
    document = yaml.safe_load(export.files["compose.yaml"])
    assert document["services"]["then"]["depends_on"] == {"first": {"condition": "service_healthy"}}
    path = tmp_path / "services.yml"
    path.write_text(export.files["first.services.yml"])  # what its compose service mounts
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    container = start_container("-v", f"{path}:{ex.SERVICES_FILE}:ro", projects=False,
                                env={"MAESTRO_SANDBOX_MODE": "off"})
    test = document["services"]["first"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return container, test[1:]


def entry(container) -> dict:
    entries = json.loads(container.list_json() or "[]")
    return entries[0] if entries else {}


def passes(container, probe) -> bool:
    return container.exec(*probe, check=False).returncode == 0


def test_a_task_is_ready_once_it_has_succeeded(start_container, tmp_path, fixture_url):
    container, probe = awaited_container(start_container, tmp_path, fixture_url, "kind: task, cmd: 'sleep 6'")
    wait_for(lambda: entry(container).get("status") == "running", 60, what="the task to run")
    assert not passes(container, probe)  # running: not yet
    # The HEALTHCHECK ignores tasks: it passes while the task runs, so it cannot be what others wait for.
    assert container.exec(*HEALTHCHECK, check=False).returncode == 0
    wait_for(lambda: entry(container).get("status") == "succeeded", 60, what="the task to succeed")
    assert passes(container, probe)
    assert container.state()["Running"]  # the container outlives its task: why not "completed"
    assert container.exec(*HEALTHCHECK, check=False).returncode == 0  # and stays healthy after it


def test_a_failed_task_is_never_ready(start_container, tmp_path, fixture_url):
    container, probe = awaited_container(start_container, tmp_path, fixture_url, "kind: task, cmd: 'sh -c \"exit 3\"'")
    wait_for(lambda: entry(container).get("status") not in (None, "waiting", "running", "starting"), 60,
             what="the task to finish")
    assert entry(container)["status"] != "succeeded"
    assert not passes(container, probe)


def test_a_service_is_ready_once_its_probe_passes(start_container, tmp_path, fixture_url):
    port = random.randrange(32100, 32700)  # host network: a port of its own
    container, probe = awaited_container(start_container, tmp_path, fixture_url,
                                         f"port: {port}, cmd: 'sh -c \"sleep 8; exec python3 server.py\"'")
    wait_for(lambda: entry(container).get("status") == "RUNNING", 60, what="the service to run")
    # The HEALTHCHECK already passes (it is starting); a service waiting for it must not start yet.
    assert container.exec(*HEALTHCHECK, check=False).returncode == 0
    assert not passes(container, probe)
    wait_for(lambda: entry(container).get("health") == "healthy", 60, what="its probe to pass")
    assert passes(container, probe)
