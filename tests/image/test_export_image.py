"""What `maestro export compose --split` asks of the image, run in the real image: a task's
container stays up after its task (the runtime does), so services waiting for the task to
complete wait for its healthcheck (compose.TASK_DONE), which must turn healthy exactly when
the task has succeeded."""

from __future__ import annotations

import json

import yaml

from maestro_runtime.ops import export as ex
from maestro_runtime.spec import parse_services_yaml

from .conftest import wait_for


def task_container(start_container, tmp_path, fixture_url: str, cmd: str):
    """The split export's migrate container: its one-service file, its healthcheck command."""
    text = f"services:\n  - {{name: migrate, kind: task, repo: '{fixture_url}', cmd: '{cmd}'}}\n" \
           f"  - {{name: api, repo: '{fixture_url}', port: 8000, depends_on: {{migrate: completed}}}}\n"
    document = yaml.safe_load(ex.render(parse_services_yaml(text, "s.yml"),
                                        ex.Options("compose", split=True)).files["compose.yaml"])
    migrate = document["services"]["migrate"]
    assert document["services"]["api"]["depends_on"] == {"migrate": {"condition": "service_healthy"}}
    path = tmp_path / "services.yml"
    path.write_text(document["configs"]["migrate-services"]["content"])
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    container = start_container("-v", f"{path}:{ex.SERVICES_FILE}:ro", projects=False,
                                env={"MAESTRO_SANDBOX_MODE": "off"})
    test = migrate["healthcheck"]["test"]
    assert test[0] == "CMD"
    return container, test[1:]


def status(container) -> str | None:
    entries = json.loads(container.list_json() or "[]")
    return entries[0]["status"] if entries else None


def test_a_tasks_healthcheck_turns_healthy_once_it_has_succeeded(start_container, tmp_path, fixture_url):
    container, probe = task_container(start_container, tmp_path, fixture_url, "sleep 6")
    wait_for(lambda: status(container) == "running", 60, what="the task to run")
    assert container.exec(*probe, check=False).returncode == 1  # running: not yet
    wait_for(lambda: status(container) == "succeeded", 60, what="the task to succeed")
    done = container.exec(*probe, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert container.state()["Running"]  # the container outlives its task: why not "completed"


def test_a_failed_tasks_healthcheck_stays_unhealthy(start_container, tmp_path, fixture_url):
    container, probe = task_container(start_container, tmp_path, fixture_url, "sh -c \"exit 3\"")
    wait_for(lambda: status(container) not in (None, "waiting", "running", "starting"), 60,
             what="the task to finish")
    assert status(container) != "succeeded"
    assert container.exec(*probe, check=False).returncode == 1
