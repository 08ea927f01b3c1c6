"""Detection rules (pure: only files are read)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.projects import FASTAPI_MAIN, FLASK_APP, STARLETTE_MAIN, write

from maestro_runtime.sources.detect import NoStartCommand, declared_packages, detect_command, installed_packages


def fake_venv(root: Path, *packages: str) -> Path:
    site = root / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name in packages:
        (site / f"{name}-1.0.dist-info").mkdir()
    return root / "venv"


def test_procfile_wins_over_everything(tmp_path):
    write(tmp_path, {"Procfile": "worker: x\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n",
                     "package.json": '{"scripts": {"start": "node s.js"}}', "main.py": ""})
    d = detect_command(tmp_path)
    assert (d.command, d.reason) == ("gunicorn app:app --bind 0.0.0.0:$PORT", "detected: Procfile web")


def test_procfile_without_web_falls_through(tmp_path):
    write(tmp_path, {"Procfile": "worker: python w.py\n", "index.html": ""})
    assert detect_command(tmp_path).reason == "detected: static site"


@pytest.mark.parametrize(
    "package, files, command, reason",
    [
        ({"scripts": {"start": "node s.js"}}, {}, "npm start", "detected: package.json scripts.start"),
        ({"main": "lib/app.js"}, {"lib/app.js": ""}, "node lib/app.js", "detected: node package.json main"),
        ({}, {"server.js": "", "index.js": ""}, "node server.js", "detected: node server.js"),
        ({"main": "missing.js"}, {"index.js": ""}, "node index.js", "detected: node index.js"),
    ],
)
def test_node(tmp_path, package, files, command, reason):
    write(tmp_path, {"package.json": json.dumps(package), **files})
    d = detect_command(tmp_path)
    assert (d.command, d.reason) == (command, reason)


def test_node_package_without_entry_falls_to_python(tmp_path):
    write(tmp_path, {"package.json": "{}", "app.py": ""})
    assert detect_command(tmp_path).command == "python3 app.py", "no venv: Debian has python3 only"


def test_django_with_and_without_gunicorn(tmp_path):
    write(tmp_path, {"manage.py": "", "mysite/wsgi.py": "application = get_wsgi_application()\n",
                     "requirements.txt": "Django>=4\n"})
    assert detect_command(tmp_path).command == "python manage.py runserver 0.0.0.0:$PORT --noreload"
    venv = fake_venv(tmp_path / "h", "Django", "gunicorn")
    d = detect_command(tmp_path, venv_dir=venv)
    assert d.command == "gunicorn mysite.wsgi:application --bind 0.0.0.0:$PORT"
    assert "Django" in d.reason


def test_fastapi_module_is_found(tmp_path):
    write(tmp_path, {"requirements.txt": "fastapi\nuvicorn[standard]==0.30\n", "helpers.py": "x = 1\n",
                     "api/service.py": FASTAPI_MAIN, "api/__init__.py": ""})
    d = detect_command(tmp_path)
    assert d.command == "uvicorn api.service:app --host 0.0.0.0 --port $PORT"
    assert "api.service" in d.reason


def test_starlette_needs_uvicorn_installed(tmp_path):
    write(tmp_path, {"main.py": STARLETTE_MAIN})
    with pytest.raises(NoStartCommand, match=r"main\.py defines a web app but nothing serves it"):
        detect_command(tmp_path, venv_dir=fake_venv(tmp_path / "a", "starlette"))
    d = detect_command(tmp_path, venv_dir=fake_venv(tmp_path / "b", "starlette", "uvicorn"))
    assert d.command == "uvicorn main:app --host 0.0.0.0 --port $PORT"


def test_flask(tmp_path):
    write(tmp_path, {"app.py": FLASK_APP, "requirements.txt": "flask\ngunicorn\n"})
    assert detect_command(tmp_path).command == "gunicorn app:app --bind 0.0.0.0:$PORT"
    (tmp_path / "requirements.txt").write_text("Flask==3.0\n")
    assert detect_command(tmp_path).command == "flask --app app:app run --host 0.0.0.0 --port $PORT"


@pytest.mark.parametrize("script", ["main.py", "app.py", "server.py"])
def test_plain_python_script(tmp_path, script):
    write(tmp_path, {script: "print(1)\n", "other.py": ""})
    assert detect_command(tmp_path).command == f"python3 {script}"
    assert detect_command(tmp_path, venv_dir=fake_venv(tmp_path / "h", "x")).command == f"python {script}"


def test_static(tmp_path):
    assert detect_command(tmp_path).reason == "detected: static site"  # nothing at all
    write(tmp_path, {"public/index.html": ""})
    d = detect_command(tmp_path)
    assert "public" in d.command and d.reason == "detected: static site in public/"
    write(tmp_path, {"index.html": ""})
    assert detect_command(tmp_path).command.endswith(f"--directory {tmp_path} --bind 0.0.0.0")


def test_package_readers(tmp_path):
    write(tmp_path, {"requirements.txt": "# c\n-r base.txt\nDjango_Rest.Framework>=1 ; python_version>'3'\n",
                     "pyproject.toml": '[project]\ndependencies = ["uvicorn[standard]>=0.3", "fastapi"]\n'})
    assert {"django-rest-framework", "uvicorn", "fastapi"} <= declared_packages(tmp_path)
    assert installed_packages(fake_venv(tmp_path / "v", "typing_extensions")) == {"typing-extensions"}


# ---------------------------------------------------------------- declared elsewhere; no false success


@pytest.mark.parametrize("files, command, reason", [
    ({"railway.json": json.dumps({"deploy": {"startCommand": "hypercorn main:app --bind [::]:$PORT"}})},
     "hypercorn main:app --bind [::]:$PORT", "detected: railway.json deploy.startCommand"),
    ({"railway.toml": '[deploy]\nstartCommand = "gunicorn main:app"\n'}, "gunicorn main:app",
     "detected: railway.toml deploy.startCommand"),
    ({"render.yaml": "services:\n  - type: worker\n    startCommand: celery w\n"
                     "  - type: web\n    startCommand: uvicorn main:app --port $PORT\n"},
     "uvicorn main:app --port $PORT", "detected: render.yaml startCommand"),
    ({"nixpacks.toml": '[start]\ncmd = "node dist/main.js"\n'}, "node dist/main.js",
     "detected: nixpacks.toml [start] cmd"),
    ({"Procfile": "web: gunicorn a:app\n", "railway.json": json.dumps({"deploy": {"startCommand": "x"}})},
     "gunicorn a:app", "detected: Procfile web"),
])
def test_platform_files_declare_the_start(tmp_path, files, command, reason):
    write(tmp_path, {"main.py": FASTAPI_MAIN, **files})
    d = detect_command(tmp_path)
    assert (d.command, d.reason) == (command, reason)


def test_package_json_without_a_start_is_an_error_not_a_static_site(tmp_path):
    write(tmp_path, {"package.json": json.dumps({"scripts": {"build": "vite build"}}), "index.html": ""})
    with pytest.raises(NoStartCommand, match=r"add scripts\.start or a Procfile"):
        detect_command(tmp_path)


def test_python_sources_without_a_start_are_an_error(tmp_path):
    write(tmp_path, {"requirements.txt": "requests\n", "lib.py": "x = 1\n", "index.html": ""})
    with pytest.raises(NoStartCommand, match="add a Procfile with a web: line"):
        detect_command(tmp_path)


@pytest.mark.parametrize("files, what", [
    ({"pyproject.toml": '[project]\nname = "x"\n', "src/pkg/__init__.py": "X = 1\n"}, "(pyproject.toml)"),
    ({"app/core.py": "X = 1\n"}, "(app/core.py)"),
    ({"requirements.txt": "mkdocs\n", "docs/index.md": "# docs\n"}, "(requirements.txt)"),
])
def test_a_python_project_with_nothing_to_serve_is_an_error_not_a_listing(tmp_path, files, what):
    write(tmp_path, files)
    with pytest.raises(NoStartCommand, match=rf"a Python project {re.escape(what)} with nothing to serve.*Procfile"):
        detect_command(tmp_path)


def test_a_site_with_python_tooling_is_still_a_site(tmp_path):
    write(tmp_path, {"requirements.txt": "mkdocs\n", "scripts/gen.py": "", "site/index.html": "<h1>x</h1>"})
    assert detect_command(tmp_path).reason == "detected: static site in site/"


@pytest.mark.parametrize("package, files, command, reason", [
    ({"dependencies": {"next": "15"}, "scripts": {"build": "next build"}}, {".next/BUILD_ID": "x"},
     "node_modules/.bin/next start -p $PORT", "detected: Next.js (next start)"),
    ({"devDependencies": {"@sveltejs/kit": "2"}, "scripts": {"build": "vite build"}}, {"build/index.js": ""},
     "node build/index.js", "detected: SvelteKit adapter-node (build/index.js)"),
    ({"dependencies": {"nuxt": "3"}}, {".output/server/index.mjs": ""}, "node .output/server/index.mjs",
     "detected: Nuxt server (.output/server/index.mjs)"),
    ({"scripts": {"start": "react-scripts start", "build": "react-scripts build"}}, {"build/index.html": ""},
     None, "detected: static output of the build in build/"),
    ({"scripts": {"build": "vite build"}}, {"dist/index.html": ""}, None,
     "detected: static output of the build in dist/"),
])
def test_framework_outputs(tmp_path, package, files, command, reason):
    write(tmp_path, {"package.json": json.dumps(package), **files})
    d = detect_command(tmp_path)
    assert d.reason == reason and (command is None or d.command == command)


def test_next_without_its_build_is_an_error(tmp_path):
    write(tmp_path, {"package.json": json.dumps({"dependencies": {"next": "15"}, "scripts": {"start": "x"}})})
    assert detect_command(tmp_path).command == "npm start"
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"next": "15"}}))
    with pytest.raises(NoStartCommand, match="next build"):
        detect_command(tmp_path)
