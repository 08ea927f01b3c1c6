"""Issue 12 in the image: a project requiring Python >= 3.12 (trixie's 3.13), one pinned to 3.11
(bookworm's, beside it) whose locked C extension has no 3.13 wheel, and a Node project whose build
step makes its server all serve; the Django one also collects its static files, migrates in its
release phase and runs its worker."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from image.conftest import http_get
from integration.conftest import wait_for


def test_python_312_project_and_node_build_step_serve(start_container, tmp_path):
    projects = tmp_path / "projects"
    paas.django_project(projects / "django-site")
    paas.node_build_makes_server(projects / "built")
    # Modelled on the Railway/Render Django samples: runtime.txt 3.11 and psycopg2 2.9.9, whose
    # wheels stop at cp312 (its source does not compile against 3.13).
    paas.write(projects / "legacy", {
        "runtime.txt": "python-3.11.9\n", "requirements.txt": "psycopg2-binary==2.9.9\n",
        "Procfile": "web: python app.py\n",
        "app.py": paas.PY_SERVER.format(name="legacy", extra=(
            '"python %d.%d psycopg2 %s" % (*sys.version_info[:2], __import__("psycopg2").__version__.split()[0])'))})
    for path in [projects, *projects.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    projects.parent.chmod(0o755)
    container = start_container(
        "-v", f"{projects}:/opt/projects", projects=False,
        env={"MAESTRO_SANDBOX_MODE": "off", "SECRET_KEY": "image-test"}, wait=False)  # builds come first
    services = container.wait_running(["django-site", "built", "legacy"], timeout=600)
    django = services["django-site"]
    assert django["command_reason"] == "detected: Procfile web"
    status, body = wait_for(lambda: http_get(django["port"]), 60, what="django to answer")
    # trixie's 3.13 for ".python-version 3.13" + "requires-python >= 3.12"; release: migrated first
    assert (status, body) == (200, "django-site python 3.13 migrated=True\n"), body
    assert "collectstatic done" in container.logs()
    worker = container.wait_running(["django-site-worker"], timeout=60)["django-site-worker"]
    assert worker["user"] == django["user"] and worker["command"] == "python worker.py"
    status, body = wait_for(lambda: http_get(services["built"]["port"]), 30, what="the built server")
    assert (status, body) == (200, "built-app made by the build, 1m\n")
    status, body = wait_for(lambda: http_get(services["legacy"]["port"]), 30, what="the 3.11 project")
    assert (status, body) == (200, "legacy python 3.11 psycopg2 2.9.9\n")
    assert "using 3.11.2, the same minor version" in container.logs()
