"""Each detection rule, started for real: the detected command must answer HTTP on $PORT.

Framework packages come from a venv cached under /tmp (keyed by its package list).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.projects import (
    FASTAPI_MAIN,
    FLASK_APP,
    NODE_SERVER,
    STARLETTE_MAIN,
    cached_venv,
    free_port,
    wait_http,
    write,
)

from maestro_runtime.engine.launch import command_argv, service_path
from maestro_runtime.sources.detect import detect_command

pytestmark = pytest.mark.integration
PACKAGES = ["django", "fastapi", "flask", "gunicorn", "uvicorn"]


@pytest.fixture(scope="module")
def venv():
    return cached_venv(PACKAGES)


def serve(directory: Path, command: str, venv: Path | None):
    """Start ``command`` the way the launch script does (same argv rule, env and cwd)."""
    port = free_port()
    path = service_path(SimpleNamespace(venv_dir=str(venv) if venv else "", directory=str(directory)))
    env = {"PATH": path, "PORT": str(port), "HOST": "0.0.0.0", "HOME": str(directory), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(command_argv(command), cwd=directory, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}/"


def check(directory: Path, venv: Path | None, reason_part: str, body_part: str, *, detect_venv=True):
    found = detect_command(directory, venv_dir=venv if detect_venv else None)
    assert reason_part in found.reason, found
    proc, url = serve(directory, found.command, venv)
    try:
        response = wait_http(url, proc)
        assert response.status_code == 200, response.text[:300]
        assert body_part in response.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return found


def test_procfile(tmp_path):
    write(tmp_path, {"Procfile": "web: python3 -m http.server $PORT --bind 127.0.0.1\n", "hello.txt": "procfile"})
    check(tmp_path, None, "Procfile web", "hello.txt")


def test_node_npm_start(tmp_path):
    write(tmp_path, {"package.json": json.dumps({"scripts": {"start": "node srv.js started"}}), "srv.js": NODE_SERVER})
    check(tmp_path, None, "scripts.start", "node started")


def test_node_main_file(tmp_path):
    write(tmp_path, {"package.json": json.dumps({"main": "srv.js"}), "srv.js": NODE_SERVER})
    found = check(tmp_path, None, "node package.json main", "node")
    assert found.command == "node srv.js"


def test_fastapi_uvicorn(tmp_path, venv):
    write(tmp_path, {"app/__init__.py": "", "app/main.py": FASTAPI_MAIN, "requirements.txt": "fastapi\nuvicorn\n"})
    found = check(tmp_path, venv, "FastAPI/Starlette", "fastapi")
    assert found.command.startswith("uvicorn app.main:app")


def test_starlette_uvicorn(tmp_path, venv):
    write(tmp_path, {"server.py": STARLETTE_MAIN})
    check(tmp_path, venv, "FastAPI/Starlette app in server", "starlette")


def test_flask_gunicorn(tmp_path, venv):
    write(tmp_path, {"app.py": FLASK_APP})
    found = check(tmp_path, venv, "Flask app in app with gunicorn", "flask")
    assert found.command.startswith("gunicorn ")


def test_flask_run_without_gunicorn(tmp_path, venv):
    write(tmp_path, {"app.py": FLASK_APP, "requirements.txt": "flask\n"})
    found = check(tmp_path, venv, "flask run", "flask", detect_venv=False)
    assert found.command.startswith("flask --app app:app run")


def test_django_gunicorn_and_runserver(tmp_path, venv):
    subprocess.run([str(venv / "bin" / "django-admin"), "startproject", "mysite", str(tmp_path)], check=True)
    found = check(tmp_path, venv, "Django with gunicorn", "Django")
    assert found.command.startswith("gunicorn mysite.wsgi:application")
    (tmp_path / "requirements.txt").write_text("django\n")
    found = check(tmp_path, venv, "manage.py runserver", "Django", detect_venv=False)
    assert "runserver 0.0.0.0:$PORT" in found.command


def test_plain_python_script(tmp_path, venv):
    write(tmp_path, {"main.py": "import http.server, os\nhttp.server.test(http.server.SimpleHTTPRequestHandler, "
                                "port=int(os.environ['PORT']), bind='127.0.0.1')\n", "marker.txt": ""})
    check(tmp_path, venv, "main.py", "marker.txt")


def test_static(tmp_path):
    write(tmp_path, {"index.html": "<h1>static site</h1>\n"})
    check(tmp_path, None, "static site", "static site")
