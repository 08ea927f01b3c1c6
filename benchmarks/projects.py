"""Ten fixture projects modelled on the small apps people deploy, for ``bench_projects``.

Python with requirements from PyPI (Flask + gunicorn, FastAPI + uvicorn, Django + gunicorn with
a Procfile, Bottle started by ``python main.py``, Starlette + uvicorn declared in a Procfile),
Node with npm dependencies and a committed ``package-lock.json`` (Express, Fastify, a Koa server
bundled by an esbuild ``build`` script, a Vite site built to ``dist/``) and one static site.
Each answers ``GET /`` with its own marker, so the poller knows it is that app and not a
directory listing.

Lock files are made once per ``package.json`` with ``npm install --package-lock-only`` (the npm
registry, before the timed boot) and kept in ``LOCKS``: a real project ships its lock.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LOCKS = Path("/var/cache/maestro-bench/locks")


@dataclass(frozen=True)
class Project:
    name: str
    kind: str  # python | node | static
    files: dict[str, str]

    @property
    def marker(self) -> str:
        return f"bench-{self.name}"


def _pkg(name: str, deps: dict[str, str], scripts: dict[str, str] | None = None,
         dev: dict[str, str] | None = None) -> str:
    doc: dict = {"name": name, "version": "1.0.0", "private": True}
    if scripts:
        doc["scripts"] = scripts
    doc["dependencies"] = deps
    if dev:
        doc["devDependencies"] = dev
    return json.dumps(doc, indent=2) + "\n"


def _node_server(name: str, body: str) -> str:
    return body.replace("MARKER", f"bench-{name}")


DJANGO_SETTINGS = """\
SECRET_KEY = "bench-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
"""

PROJECTS: tuple[Project, ...] = (
    Project("flask", "python", {
        "requirements.txt": "flask>=3,<4\ngunicorn>=22\n",
        "app.py": "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.get('/')\n"
                  "def index():\n    return 'bench-flask'\n",
    }),
    Project("fastapi", "python", {
        "requirements.txt": "fastapi>=0.110\nuvicorn>=0.29\n",
        "main.py": "from fastapi import FastAPI\nfrom fastapi.responses import PlainTextResponse\n\n"
                   "app = FastAPI()\n\n\n@app.get('/', response_class=PlainTextResponse)\n"
                   "def index():\n    return 'bench-fastapi'\n",
    }),
    Project("django", "python", {
        "requirements.txt": "django>=5,<6\ngunicorn>=22\n",
        "Procfile": "web: gunicorn mysite.wsgi:application --bind 0.0.0.0:$PORT --workers 2\n",
        "manage.py": "#!/usr/bin/env python\nimport os\nimport sys\n\nif __name__ == '__main__':\n"
                     "    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n"
                     "    from django.core.management import execute_from_command_line\n"
                     "    execute_from_command_line(sys.argv)\n",
        "mysite/__init__.py": "",
        "mysite/settings.py": DJANGO_SETTINGS,
        "mysite/urls.py": "from django.http import HttpResponse\nfrom django.urls import path\n\n"
                          "urlpatterns = [path('', lambda request: HttpResponse('bench-django'))]\n",
        "mysite/wsgi.py": "import os\n\nfrom django.core.wsgi import get_wsgi_application\n\n"
                          "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n"
                          "application = get_wsgi_application()\n",
    }),
    Project("bottle", "python", {
        "requirements.txt": "bottle>=0.12\n",
        "Procfile": "web: python main.py\n",
        "main.py": "import os\n\nfrom bottle import route, run\n\n\n@route('/')\ndef index():\n"
                   "    return 'bench-bottle'\n\n\nrun(host='0.0.0.0', port=int(os.environ['PORT']), quiet=True)\n",
    }),
    Project("starlette", "python", {
        "requirements.txt": "starlette>=0.37\nuvicorn>=0.29\n",
        "Procfile": "web: uvicorn server:app --host 0.0.0.0 --port $PORT\n",
        "server.py": "from starlette.applications import Starlette\nfrom starlette.responses import PlainTextResponse\n"
                     "from starlette.routing import Route\n\n\nasync def index(request):\n"
                     "    return PlainTextResponse('bench-starlette')\n\n\n"
                     "app = Starlette(routes=[Route('/', index)])\n",
    }),
    Project("express", "node", {
        "package.json": _pkg("bench-express", {"express": "^4.21.0"}, {"start": "node server.js"}),
        "server.js": _node_server("express", "const express = require('express');\nconst app = express();\n"
                                  "app.get('/', (req, res) => res.send('MARKER'));\n"
                                  "app.listen(Number(process.env.PORT), '0.0.0.0');\n"),
    }),
    Project("fastify", "node", {
        "package.json": _pkg("bench-fastify", {"fastify": "^5.0.0"}, {"start": "node server.js"}),
        "server.js": _node_server("fastify", "const app = require('fastify')();\n"
                                  "app.get('/', async () => 'MARKER');\n"
                                  "app.listen({ port: Number(process.env.PORT), host: '0.0.0.0' });\n"),
    }),
    Project("koa-esbuild", "node", {
        "package.json": _pkg("bench-koa-esbuild", {"koa": "^2.15.0"},
                             {"build": "esbuild src/server.js --bundle --platform=node --outfile=dist/server.js",
                              "start": "node dist/server.js"}, {"esbuild": "^0.24.0"}),
        "src/server.js": _node_server("koa-esbuild", "const Koa = require('koa');\nconst app = new Koa();\n"
                                      "app.use((ctx) => { ctx.body = 'MARKER'; });\n"
                                      "app.listen(Number(process.env.PORT), '0.0.0.0');\n"),
    }),
    Project("vite", "node", {
        "package.json": _pkg("bench-vite", {}, {"build": "vite build"}, {"vite": "^5.4.0"}),
        "index.html": "<!doctype html>\n<html><head><title>bench-vite</title></head>\n"
                      "<body><div id=\"app\">bench-vite</div><script type=\"module\" src=\"/main.js\"></script>"
                      "</body></html>\n",
        "main.js": "document.querySelector('#app').dataset.ready = 'yes';\n",
    }),
    Project("static", "static", {
        "index.html": "<!doctype html>\n<html><head><title>bench-static</title>"
                      "<link rel=\"stylesheet\" href=\"style.css\"></head><body><h1>bench-static</h1></body></html>\n",
        "style.css": "body { font-family: sans-serif; }\n",
    }),
)


def lock_for(package_json: str) -> str:
    """A package-lock.json for this package.json, resolved once against the npm registry."""
    key = hashlib.sha256(package_json.encode()).hexdigest()[:16]
    cached = LOCKS / f"{key}.json"
    if cached.exists():
        return cached.read_text()
    with tempfile.TemporaryDirectory(prefix="maestro-bench-lock-") as tmp:
        (Path(tmp) / "package.json").write_text(package_json)
        subprocess.run(["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund",
                        "--loglevel=error"], cwd=tmp, check=True, timeout=300)
        text = (Path(tmp) / "package-lock.json").read_text()
    LOCKS.mkdir(parents=True, exist_ok=True)
    cached.write_text(text)
    return text


def write_project(project: Project, folder: Path) -> Path:
    """The project's files (and its lock file) in ``folder``, readable by the service users."""
    shutil.rmtree(folder, ignore_errors=True)
    for rel, text in project.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if "package.json" in project.files:
        (folder / "package-lock.json").write_text(lock_for(project.files["package.json"]))
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder
