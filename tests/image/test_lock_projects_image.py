"""Trial 15 in the image: project shapes that failed on public samples (DigitalOcean, Fly), as
small hand-written fixtures, each served with its own content:

* a Poetry app with no package folder (``app.py``; poetry.lock): its locked dependencies, not
  the project itself (``uv pip install -e .`` failed: poetry-core found no package);
* a Pipenv project (Pipfile + Pipfile.lock, Flask in ``web.py``): nothing was installed, so it
  ended "Python sources but no way to start them";
* a project pinning nothing whose locked dependency has no wheel for the image's newest Python
  and no longer compiles there (httptools 0.6.1 on 3.13, as in a Poetry sample's lock and
  psycopg2-binary 2.9.3 in a Django one): built again with 3.11, beside it in the image;
* gunicorn 20.1.0 (that Django sample and a Flask one), which requires setuptools and imports
  pkg_resources, gone from setuptools 81: "No module named 'pkg_resources'" at start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from fixtures.locks import POETRY_LOCK, POETRY_PYPROJECT
from image.conftest import http_get
from integration.conftest import wait_for

# Flask 3.0.3's closure, as `pipenv lock` writes it; colorama on Windows only.
PIPFILE_LOCK = {
    "_meta": {"requires": {"python_version": "3.13"}, "sources": [{"name": "pypi", "url": "https://pypi.org/simple",
                                                                   "verify_ssl": True}]},
    "default": {
        "blinker": {"version": "==1.8.2"}, "click": {"version": "==8.1.7"},
        "colorama": {"markers": "platform_system == 'Windows'", "version": "==0.4.6"},
        "flask": {"markers": "python_version >= '3.8'", "version": "==3.0.3"},
        "itsdangerous": {"version": "==2.2.0"}, "jinja2": {"version": "==3.1.4"},
        "markupsafe": {"version": "==2.1.5"}, "werkzeug": {"version": "==3.0.3"},
    },
    "develop": {"iniconfig": {"version": "==2.0.0"}},
}

FLASK_WEB = """from importlib.metadata import version
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"pipenv flask {version('flask')}\\n"
"""


WSGI_APP = """def app(environ, start_response):
    import gunicorn
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"gunicorn {gunicorn.__version__}\\n".encode()]
"""


def _installed(container, name: str, package: str) -> bool:
    out = container.exec("sh", "-c", f"ls /home/svc_{name}/.maestro/venv/lib/python3*/site-packages/ | "
                                     f"grep -ci '^{package}' || true")
    return out.stdout.strip() not in ("", "0")


def test_poetry_pipenv_and_an_old_lock_on_the_newest_python(start_container, tmp_path):
    projects = tmp_path / "projects"
    paas.write(projects / "poetryapp", {
        "pyproject.toml": POETRY_PYPROJECT, "poetry.lock": POETRY_LOCK,
        "app.py": paas.PY_SERVER.format(name="poetry", extra='"six " + __import__("six").__version__')})
    paas.write(projects / "pipenvapp", {
        "Pipfile": ('[packages]\nflask = "*"\n\n[dev-packages]\niniconfig = "*"\n\n'
                    '[requires]\npython_version = "3.13"\n'),
        "Pipfile.lock": json.dumps(PIPFILE_LOCK), "web.py": FLASK_WEB})
    paas.write(projects / "oldlock", {
        "requirements.txt": "httptools==0.6.1\n", "Procfile": "web: python app.py\n",
        "app.py": paas.PY_SERVER.format(name="oldlock", extra=(
            '"python %d.%d httptools %s" % (*sys.version_info[:2], __import__("httptools").__version__)'))})
    paas.write(projects / "oldgunicorn", {"requirements.txt": "gunicorn==20.1.0\n",
                                          "Procfile": "web: gunicorn app:app\n", "app.py": WSGI_APP})
    for path in [projects, *projects.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    projects.parent.chmod(0o755)
    container = start_container("-v", f"{projects}:/opt/projects", projects=False,
                                env={"MAESTRO_SANDBOX_MODE": "off"}, wait=False)
    services = container.wait_running(["poetryapp", "pipenvapp", "oldlock", "oldgunicorn"], timeout=600)

    status, body = wait_for(lambda: http_get(services["poetryapp"]["port"]), 30, what="the poetry app")
    assert (status, body) == (200, "poetry six 1.16.0\n"), "the lock's six, not the newest"
    assert not _installed(container, "poetryapp", "iniconfig"), "a dev group is not installed"

    pipenv = services["pipenvapp"]
    assert pipenv["command"] == "flask --app web:app run --host 0.0.0.0 --port $PORT"
    status, body = wait_for(lambda: http_get(pipenv["port"]), 30, what="the pipenv app")
    assert (status, body) == (200, "pipenv flask 3.0.3\n")
    assert not _installed(container, "pipenvapp", "colorama"), "a Windows-only package is not installed"

    status, body = wait_for(lambda: http_get(services["oldlock"]["port"]), 30, what="the old lock")
    assert (status, body) == (200, "oldlock python 3.11 httptools 0.6.1\n")
    assert "a dependency failed to build from source with Python 3.13" in container.logs()

    status, body = wait_for(lambda: http_get(services["oldgunicorn"]["port"]), 30, what="gunicorn 20.1.0")
    assert (status, body) == (200, "gunicorn 20.1.0\n")
    assert _installed(container, "oldgunicorn", "setuptools-80"), "the newest setuptools that has pkg_resources"

    # A restart builds nothing again: the fallback's build is up to date as it is.
    container.engine("restart", "-t", "10", container.name)
    wait_for(lambda: container.exec("list-services", "--json", check=False).returncode == 0, 60, what="the reboot")
    container.wait_running(["poetryapp", "pipenvapp", "oldlock", "oldgunicorn"], timeout=120)
    logs = container.logs()
    assert logs.count("failed to build from source with Python 3.13") == 1, "the fallback was not remembered"
    assert "oldlock: python dependencies up to date, build skipped" in logs
