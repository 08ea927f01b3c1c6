"""A declared gunicorn command whose config file binds a fixed port serves on $PORT (trial 15).

digitalocean/sample-flask: Procfile ``web: gunicorn --worker-tmp-dir /dev/shm --config
gunicorn_config.py app:app`` with ``bind = "0.0.0.0:8080"`` in that file (App Platform routes
to 8080): RUNNING but unreachable on the port maestro gave it, and two such apps would collide.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro_runtime.sources.detect import detect_command

FLASK = "from flask import Flask\napp = Flask(__name__)\n"


def _project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_config_file_bind_gets_port_appended(tmp_path):
    project = _project(tmp_path / "p", {
        "Procfile": "web: gunicorn --worker-tmp-dir /dev/shm --config gunicorn_config.py app:app\n",
        "gunicorn_config.py": 'bind = "0.0.0.0:8080"\nworkers = 2\n', "app.py": FLASK,
        "requirements.txt": "flask\ngunicorn\n"})
    found = detect_command(project)
    assert found.command == ("gunicorn --worker-tmp-dir /dev/shm --config gunicorn_config.py app:app "
                             "--bind 0.0.0.0:$PORT")
    assert found.reason == ("detected: Procfile web (--bind 0.0.0.0:$PORT added: gunicorn_config.py binds a "
                            "fixed address)")


def test_default_config_file_counts_too(tmp_path):
    project = _project(tmp_path / "p", {"Procfile": "web: gunicorn app:app\n", "app.py": FLASK,
                                        "gunicorn.conf.py": "bind = ['0.0.0.0:5000']\n"})
    assert detect_command(project).command == "gunicorn app:app --bind 0.0.0.0:$PORT"


@pytest.mark.parametrize("procfile, config", [
    ("web: gunicorn app:app\n", None),  # gunicorn binds $PORT itself
    ("web: gunicorn -c gunicorn_config.py app:app\n", "workers = 2\n"),  # no bind in the config
    ("web: gunicorn -c gunicorn_config.py -b 0.0.0.0:$PORT app:app\n", 'bind = "0.0.0.0:8080"\n'),
    ("web: gunicorn --bind=:$PORT -c gunicorn_config.py app:app\n", 'bind = "0.0.0.0:8080"\n'),
    ("web: gunicorn -c python:settings.gunicorn app:app\n", None),  # a module: not read
    ("web: uvicorn app:app --port 8080\n", None),  # not gunicorn
])
def test_left_alone(tmp_path, procfile, config):
    files = {"Procfile": procfile, "app.py": FLASK}
    if config is not None:
        files["gunicorn_config.py"] = config
    project = _project(tmp_path / "p", files)
    assert detect_command(project).command == procfile.split(": ", 1)[1].strip()
