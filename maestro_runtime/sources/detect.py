"""Start-command detection (pure: reads the project's files, returns a command and why).

Order: a declared command (:mod:`declared`: Procfile ``web:``, railway, render,
nixpacks) > Node (``scripts.start`` -> ``npm start`` unless it is a dev server and
the build made a static site; framework outputs: Next.js, SvelteKit, Nuxt, Remix,
a static ``dist``/``build``/``out``; else ``main``/``server.js``/``index.js``) >
Python (Django, then FastAPI/Starlette with uvicorn, then Flask, then
``main.py``/``app.py``/``server.py``) > a static site, only for a folder with no
package.json and no Python: code with no way to start is :class:`NoStartCommand`.
An explicit command wins over all of this, in provision.py. Whether a framework
or server is "installed" is read from the
project's venv (``venv_dir``) when given, else from its requirement files.
Commands use ``$PORT``, which the launch script's shell expands.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime.sources.declared import declared_web, procfile  # noqa: F401 (re-exported)
from maestro_runtime.sources.projectfiles import READ_LIMIT, ProjectFiles, read_text  # noqa: F401 (re-exported)

# Folders that never hold the app's own modules.
_SKIP_DIRS = frozenset({"node_modules", ".git", ".venv", "venv", "env", "__pycache__", "site-packages",
                        "tests", "test", "docs", "build", "dist", ".tox", "migrations"})
_ASGI_APP = re.compile(r"^app\s*(?::[^=]*)?=\s*(?:fastapi\.)?(?:starlette\.applications\.)?(FastAPI|Starlette)\s*\(",
                       re.M)
_FLASK_APP = re.compile(r"^app\s*(?::[^=]*)?=\s*(?:flask\.)?Flask\s*\(", re.M)
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", re.M)


class NoStartCommand(Exception):
    """A project with code but no way to start it: never served as a static site (a false success)."""


@dataclass(frozen=True)
class Detection:
    command: str
    reason: str


def static_command(directory: Path) -> str:
    return f"python3 -m http.server $PORT --directory {shlex.quote(str(directory))} --bind 0.0.0.0"


def _node(files: ProjectFiles) -> Detection | None:
    directory = files.directory
    text = files.text("package.json")
    if text is None:
        return None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):  # nested past the parser's depth
        manifest = {}
    if not isinstance(manifest, dict):
        manifest = {}
    scripts = manifest.get("scripts") if isinstance(manifest.get("scripts"), dict) else {}
    start = scripts.get("start") if isinstance(scripts.get("start"), str) else ""
    static = _static_output(directory)
    if start and not (static and _DEV_SERVER.match(start)):
        return Detection("npm start", "detected: package.json scripts.start")
    found = _framework(directory, manifest) or static
    if found:
        return found
    for candidate in (manifest.get("main"), "server.js", "index.js"):
        if isinstance(candidate, str) and candidate and (directory / candidate).is_file():
            why = "package.json main" if candidate == manifest.get("main") else candidate
            return Detection(f"node {shlex.quote(candidate)}", f"detected: node {why}")
    return None


def _node_missing(files: ProjectFiles) -> str:
    text = files.text("package.json") or ""
    what = "its build made no server or site known here" if '"build"' in text else "it has no scripts.build"
    return (f"package.json has no scripts.start, no main/server.js/index.js, and {what}: "
            "add scripts.start or a Procfile with a web: line")


# Start scripts that run a development server: a built static site is served instead.
_DEV_SERVER = re.compile(r"^\s*(react-scripts start|vite(\s+(dev|serve))?|astro dev|next dev)\b")
_STATIC_OUTPUTS = ("dist", "build", "out", ".output/public")


def _static_output(directory: Path) -> Detection | None:
    """Vite (dist/), CRA (build/), Astro (dist/), Next export (out/): a built static site."""
    for sub in _STATIC_OUTPUTS:
        if (directory / sub / "index.html").is_file():
            return Detection(static_command(directory / sub), f"detected: static output of the build in {sub}/")
    return None


def _framework(directory: Path, manifest: dict) -> Detection | None:
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        if isinstance(manifest.get(key), dict):
            deps |= set(manifest[key])
    if "next" in deps:
        if not (directory / ".next").is_dir():
            raise NoStartCommand("a Next.js app without its build (.next): add scripts.build (next build)")
        return Detection("node_modules/.bin/next start -p $PORT", "detected: Next.js (next start)")
    servers = (("@sveltejs/kit", "build/index.js", "SvelteKit adapter-node"),
               ("nuxt", ".output/server/index.mjs", "Nuxt server"),
               ("@remix-run/serve", "build/server/index.js", "Remix server"))
    for dep, entry, what in servers:
        if dep in deps and (directory / entry).is_file():
            if dep == "@remix-run/serve":
                return Detection(f"node_modules/.bin/remix-serve ./{entry}", f"detected: {what} ({entry})")
            return Detection(f"node {entry}", f"detected: {what} ({entry})")
    return None


# ---------------------------------------------------------------- what is installed


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_packages(project: Path | ProjectFiles) -> set[str]:
    """Distribution names in requirements*.txt / pyproject.toml / setup.py / Pipfile (a rough, forgiving read)."""
    files = ProjectFiles.of(project)
    names: set[str] = set()
    for requirements in files.matching("requirements*.txt"):
        for line in (files.text(requirements) or "").splitlines():
            line = line.split("#", 1)[0]
            if line.strip().startswith("-"):
                continue
            match = _REQ_NAME.match(line)
            if match:
                names.add(_normalise(match.group(1)))
    for name in ("pyproject.toml", "setup.py", "setup.cfg"):
        text = files.text(name)
        if text is not None:
            for quoted in re.findall(r"""["']\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*[<>=!~;"']""", text):
                names.add(_normalise(quoted))
    # Pipenv's and Poetry's tables name packages as keys (``flask = "*"``), unquoted.
    for name, path in (("Pipfile", ("packages",)), ("pyproject.toml", ("tool", "poetry", "dependencies"))):
        table = files.doc(name, tomllib.loads, tomllib.TOMLDecodeError)
        for key in path:
            table = table.get(key) if isinstance(table, dict) else None
        names |= {_normalise(k) for k in (table if isinstance(table, dict) else {}) if _REQ_NAME.fullmatch(k)}
    return names


def installed_packages(venv_dir: Path) -> set[str]:
    """Distribution names with a .dist-info in the venv's site-packages."""
    names: set[str] = set()
    for site in venv_dir.glob("lib/python*/site-packages"):
        for info in site.glob("*.dist-info"):
            names.add(_normalise(info.name[: -len(".dist-info")].split("-")[0]))
    return names


def available_packages(project: Path | ProjectFiles, venv_dir: Path | None) -> set[str]:
    if venv_dir is not None and venv_dir.is_dir():
        return installed_packages(venv_dir)
    return declared_packages(project)


# ---------------------------------------------------------------- finding the app module


def _python_files(directory: Path, depth: int = 2) -> Iterable[Path]:
    """Top-level files first, then one level down; preferred names first at each level."""
    preferred = ("main.py", "app.py", "server.py", "asgi.py", "wsgi.py", "api.py")

    def order(path: Path) -> tuple[int, str]:
        return (preferred.index(path.name) if path.name in preferred else len(preferred), str(path))

    level = [directory]
    for _ in range(depth):
        nxt = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            yield from sorted((p for p in entries if p.suffix == ".py" and p.is_file()), key=order)
            nxt += [p for p in entries if p.is_dir() and p.name not in _SKIP_DIRS and not p.name.startswith(".")]
        level = nxt


def _module_name(directory: Path, path: Path) -> str:
    return ".".join(path.relative_to(directory).with_suffix("").parts)


def find_app_module(directory: Path, pattern: re.Pattern[str]) -> str | None:
    for path in _python_files(directory):
        text = read_text(directory, path)
        if text is not None and pattern.search(text):
            return _module_name(directory, path)
    return None


def find_wsgi_module(directory: Path) -> str | None:
    """Django's ``<project>/wsgi.py`` defining ``application``."""
    for path in sorted(directory.glob("*/wsgi.py")):
        if re.search(r"^application\s*=", read_text(directory, path) or "", re.M):
            return _module_name(directory, path)
    return None


def _python(files: ProjectFiles, venv_dir: Path | None) -> Detection | None:
    directory = files.directory
    packages = available_packages(files, venv_dir)
    if files.is_file("manage.py") and "django" in packages:
        wsgi = find_wsgi_module(directory)
        if wsgi and "gunicorn" in packages:
            return Detection(f"gunicorn {wsgi}:application --bind 0.0.0.0:$PORT",
                             "detected: Django with gunicorn")
        return Detection("python manage.py runserver 0.0.0.0:$PORT --noreload",
                         "detected: Django (manage.py runserver; add gunicorn for production)")
    if "uvicorn" in packages:
        module = find_app_module(directory, _ASGI_APP)
        if module:
            return Detection(f"uvicorn {module}:app --host 0.0.0.0 --port $PORT",
                             f"detected: FastAPI/Starlette app in {module} with uvicorn")
    if "flask" in packages:
        module = find_app_module(directory, _FLASK_APP)
        if module and "gunicorn" in packages:
            return Detection(f"gunicorn {module}:app --bind 0.0.0.0:$PORT",
                             f"detected: Flask app in {module} with gunicorn")
        if module:
            # Better than `python app.py`, which usually ignores $PORT.
            return Detection(f"flask --app {module}:app run --host 0.0.0.0 --port $PORT",
                             f"detected: Flask app in {module} (flask run; add gunicorn for production)")
    # Without a venv there is no `python` on Debian, only `python3`.
    python = "python" if venv_dir is not None and venv_dir.is_dir() else "python3"
    for script in ("main.py", "app.py", "server.py"):
        text = files.text(script)
        if text is None:
            continue
        if (_ASGI_APP.search(text) or _FLASK_APP.search(text)) and "__main__" not in text:
            # importing the app serves nothing: it would exit 0 at once and look started
            raise NoStartCommand(f"{script} defines a web app but nothing serves it: add a server "
                                 "(uvicorn, gunicorn) to the requirements or a Procfile with a web: line")
        return Detection(f"{python} {script}", f"detected: {script}")
    return None


_SITE_DIRS = ("public", "dist", "build", "site", "_site")
_PY_MANIFESTS = ("pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "requirements.txt")
_START_HINT = ("add a Procfile with a web: line (or main.py/app.py, or a server such as gunicorn or uvicorn "
               "in the requirements), or give a cmd")


def _python_problem(files: ProjectFiles) -> str | None:
    """Why a folder is Python code with no way to start rather than a static site, or None.

    Sources at the root always are (the site would be the code's listing). A Python manifest or
    sources in sub-folders (``src/pkg/``) are, unless there is a site to serve (``index.html``):
    a static site may carry a requirements.txt or scripts for its tooling."""
    directory = files.directory
    if any(files.is_file(name) for name in files.matching("*.py")):
        return f"Python sources but no way to start them: {_START_HINT}"
    if files.is_file("index.html") or any((directory / d / "index.html").is_file() for d in _SITE_DIRS):
        return None
    manifest = next((m for m in _PY_MANIFESTS if files.is_file(m)), None)
    nested = next(iter(_python_files(directory, depth=3)), None)
    if manifest or nested:
        what = manifest or f"{nested.relative_to(directory)}"
        return f"a Python project ({what}) with nothing to serve and no way to start it: {_START_HINT}"
    return None


def _static(files: ProjectFiles) -> Detection:
    directory = files.directory
    # A built site often lives in a sub-folder; serve it when the root has no index.html.
    if not files.is_file("index.html"):
        for sub in _SITE_DIRS:
            if (directory / sub / "index.html").is_file():
                return Detection(static_command(directory / sub), f"detected: static site in {sub}/")
    return Detection(static_command(directory), "detected: static site")


def detect_command(project: Path | ProjectFiles, venv_dir: Path | None = None) -> Detection:
    """Raises :class:`NoStartCommand` for code with no way to start (never a static site then).
    Given a :class:`ProjectFiles`, each file is read once (the memo of one provisioning step)."""
    files = ProjectFiles.of(project)
    declared = declared_web(files)
    if declared:
        return Detection(declared.command, declared.reason)
    found = _node(files) or _python(files, Path(venv_dir) if venv_dir else None)
    if found:
        return found
    if files.is_file("package.json"):
        raise NoStartCommand(_node_missing(files))
    problem = _python_problem(files)
    if problem:
        raise NoStartCommand(problem)
    return _static(files)
