"""Start and build commands a project declares for other platforms (pure: reads files, runs nothing).

Start, in the order a user of those platforms expects: ``Procfile`` (every process type), then
``railway.json``/``railway.toml`` ``deploy.startCommand``, ``render.yaml`` (the first
``type: web`` service's ``startCommand``), DigitalOcean's ``.do/app.yaml`` (the first service's
``run_command``), ``nixpacks.toml`` ``[start] cmd``. ``app.json``
names no start command (Heroku reads the Procfile), so it is not read for one.

Build, in the same order of files: ``railway.json``/``railway.toml`` ``build.buildCommand``,
``render.yaml`` (that web service's ``buildCommand``), ``.do/app.yaml`` ``build_command``,
``nixpacks.toml`` ``[phases.build]`` ``cmds`` (or ``cmd``). Its parts that only install the
dependencies (``pip install -r requirements.txt``, ``npm ci``, ``yarn``...) are left out: the
runtime's own install did that, with the lock files untouched (see :func:`build_parts`).

Environment: a project whose commands come from ``render.yaml`` gets Render's constant
variables for its builds and processes (:func:`platform_env`), under the operator's.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from maestro_runtime.sources.projectfiles import ProjectFiles
from maestro_runtime.spec import envvars

log = logging.getLogger("maestro")

_TYPE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


@dataclass(frozen=True)
class Declared:
    command: str
    reason: str


def procfile(project: Path | ProjectFiles) -> dict[str, str]:
    """Process types in order (``web``, ``worker``, ``release``...); comments and blanks skipped."""
    text = ProjectFiles.of(project).text("Procfile")
    types: dict[str, str] = {}
    for line in (text or "").splitlines():
        match = _TYPE.match(line.strip())
        if match and not line.lstrip().startswith("#") and match.group(1) not in types:
            types[match.group(1)] = match.group(2).strip()
    return types


def _command(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _railway(files: ProjectFiles, section: str = "deploy", key: str = "startCommand") -> Declared | None:
    for name, parse, errors in (("railway.json", json.loads, ValueError),
                                ("railway.toml", tomllib.loads, tomllib.TOMLDecodeError)):
        doc = files.doc(name, parse, errors)
        part = doc.get(section) if isinstance(doc, dict) else None
        command = _command(part.get(key)) if isinstance(part, dict) else None
        if command:
            return Declared(command, f"detected: {name} {section}.{key}")
    return None


def _render_web(files: ProjectFiles) -> dict:
    """render.yaml's web service that starts (its build goes with it), else the first one; {}."""
    doc = files.doc("render.yaml", yaml.safe_load, yaml.YAMLError)
    services = doc.get("services") if isinstance(doc, dict) else None
    webs = [s for s in (services if isinstance(services, list) else ())
            if isinstance(s, dict) and s.get("type") == "web"]
    return next((s for s in webs if _command(s.get("startCommand"))), webs[0] if webs else {})


def _render(files: ProjectFiles, key: str = "startCommand") -> Declared | None:
    command = _command(_render_web(files).get(key))
    return Declared(command, f"detected: render.yaml {key}") if command else None


_DO_SPECS = (".do/app.yaml", ".do/deploy.template.yaml")


def _digitalocean(files: ProjectFiles, key: str = "run_command") -> Declared | None:
    """DigitalOcean App Platform's app spec: the first service naming ``key`` (``run_command`` or
    ``build_command``), in ``.do/app.yaml`` (else the deploy button's template, under ``spec:``)."""
    if ".do" not in files.names:
        return None
    for name in _DO_SPECS:
        doc = files.doc(name, yaml.safe_load, yaml.YAMLError)
        spec = doc.get("spec", doc) if isinstance(doc, dict) else None
        services = spec.get("services") if isinstance(spec, dict) else None
        for service in services if isinstance(services, list) else ():
            command = _command(service.get(key)) if isinstance(service, dict) else None
            if command:
                return Declared(command, f"detected: {name} {key}")
    return None


def _nixpacks(files: ProjectFiles, build: bool = False) -> Declared | None:
    doc = files.doc("nixpacks.toml", tomllib.loads, tomllib.TOMLDecodeError)
    if not isinstance(doc, dict):
        return None
    if build:
        phase = (doc.get("phases") or {}).get("build") if isinstance(doc.get("phases"), dict) else None
        if not isinstance(phase, dict):
            return None
        cmds = phase.get("cmds")
        parts = [c.strip() for c in cmds if isinstance(c, str) and c.strip()] if isinstance(cmds, list) else []
        command = " && ".join(parts) or _command(phase.get("cmd"))
        return Declared(command, "detected: nixpacks.toml [phases.build] cmds") if command else None
    start = doc.get("start")
    command = _command(start.get("cmd")) if isinstance(start, dict) else None
    return Declared(command, "detected: nixpacks.toml [start] cmd") if command else None


def declared_build(project: Path | ProjectFiles) -> Declared | None:
    """The build step the project declares for another platform, or None."""
    files = ProjectFiles.of(project)
    return (_railway(files, "build", "buildCommand") or _render(files, "buildCommand")
            or _digitalocean(files, "build_command") or _nixpacks(files, build=True))


# Parts of a declared build that only install the dependencies, as the runtime already did
# (with frozen locks): pip of requirement files or of pip itself, a package manager's install.
_INSTALL_ONLY = re.compile(
    r"^(?:(?:python3? -m )?pip3? install(?: (?:-U|--upgrade|-q|--quiet|--no-cache-dir|(?:-r|--requirement)"
    r" \S+|pip|setuptools|wheel))+"
    r"|(?:npm (?:install|i|ci)|yarn(?: install)?|pnpm (?:install|i)|uv sync|poetry install)(?: --?[\w-]+(?:=\S+)?)*)$")


def build_parts(command: str) -> tuple[str | None, tuple[str, ...]]:
    """(what to run, the install-only parts left out). Only a plain ``a && b`` or ``a; b`` list is
    split; anything with quotes, pipes or subshells runs as it is."""
    if re.search(r"""['"`|()\\$<>]|\|\|""", command) or "\n" in command:
        return command, ()
    parts = [p.strip() for p in re.split(r"&&|;", command) if p.strip()]
    dropped = tuple(p for p in parts if _INSTALL_ONLY.match(re.sub(r"\s+", " ", p)))
    kept = [p for p in parts if p not in dropped]
    return (" && ".join(kept) if kept else None), dropped


def declared_web(project: Path | ProjectFiles) -> Declared | None:
    files = ProjectFiles.of(project)
    web = procfile(files).get("web")
    found = Declared(web, "detected: Procfile web") if web else (
        _railway(files) or _render(files) or _digitalocean(files) or _nixpacks(files))
    return _gunicorn_on_port(files, found) if found else None


_CONFIG_BIND = re.compile(r"^bind\s*=", re.M)


def _gunicorn_on_port(files: ProjectFiles, found: Declared) -> Declared:
    """A gunicorn command whose config file binds a fixed address (``bind = "0.0.0.0:8080"``,
    DigitalOcean's default port) and names none itself: ``--bind 0.0.0.0:$PORT`` appended, which
    gunicorn puts above its config file. Without a config ``bind``, gunicorn reads $PORT itself,
    and a command that names its address is left as it is."""
    try:
        words = shlex.split(found.command)
    except ValueError:
        return found
    if not words or Path(words[0]).name != "gunicorn" or any(w.startswith(("-b", "--bind")) for w in words):
        return found
    config = "gunicorn.conf.py"  # read by default from the working directory
    for i, word in enumerate(words):
        if word in ("-c", "--config") and i + 1 < len(words):
            config = words[i + 1]
        elif word.startswith("--config="):
            config = word.split("=", 1)[1]
    if config.startswith("python:") or "/" in config.removeprefix("./") or ".." in config:
        return found  # a module, or a file elsewhere: not read here
    if not _CONFIG_BIND.search(files.text(config.removeprefix("./")) or ""):
        return found
    return Declared(f"{found.command} --bind 0.0.0.0:$PORT",
                    f"{found.reason} (--bind 0.0.0.0:$PORT added: {config} binds a fixed address)")


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(value) -> str | None:
    if isinstance(value, bool):  # YAML's true/false: Render's values are strings
        return "true" if value else "false"
    return str(value) if isinstance(value, (str, int, float)) else None


def platform_env(project: Path | ProjectFiles) -> dict[str, str]:
    """What the platform a project's commands come from sets for its builds and processes, where
    constant. Render (its start or build command is render.yaml's): ``RENDER=true``,
    ``IS_PULL_REQUEST=false``, ``RENDER_SERVICE_TYPE=web``, ``RENDER_SERVICE_NAME`` and that
    service's ``envVars`` given a literal ``value:`` (never ``generateValue``, ``sync: false``
    or ``from*``: secrets and other services are not in the file). Railway documents no constant
    marker (its variables name the project, environment and domains), nixpacks none either."""
    files = ProjectFiles.of(project)
    used = [d.reason for d in (declared_web(files), declared_build(files)) if d]
    if not any(reason.startswith("detected: render.yaml") for reason in used):
        return {}
    web = _render_web(files)
    env = {"RENDER": "true", "IS_PULL_REQUEST": "false", "RENDER_SERVICE_TYPE": "web"}
    if isinstance(web.get("name"), str) and web["name"].strip():
        env["RENDER_SERVICE_NAME"] = web["name"].strip()
    for item in web.get("envVars") if isinstance(web.get("envVars"), list) else ():
        if isinstance(item, dict) and isinstance(item.get("key"), str) and _NAME.match(item["key"]):
            value = _literal(item.get("value"))
            if value is not None and "\0" not in value and item["key"] not in envvars.FIXED_KEYS:
                env[item["key"]] = value
    return env


def service_env(project: Path | ProjectFiles, spec_env: dict, service_id: str, *,
                dotenv: bool = True) -> dict[str, str]:
    """The project's own ``.env`` (the honcho/foreman convention; ``dotenv=False``:
    MAESTRO_PROJECT_DOTENV=0, left out) under the spec's env, both over :func:`platform_env`;
    PORT, HOME, USER are the runtime's (set last at launch): a value for them is dropped, with a warning."""
    files = ProjectFiles.of(project)
    text = files.text(".env") if dotenv else None
    platform = platform_env(files)
    if platform:  # keys only: values are never printed
        log.info("service %s: render.yaml: %s set as Render sets them (the service's own env wins)",
                 service_id, ", ".join(sorted(platform)))
    env = {**platform, **(envvars.parse_dotenv(text) if text else {}), **spec_env}
    fixed = envvars.fixed_keys(env)
    if fixed:
        log.warning("service %s: %s set by the runtime; the value given is ignored", service_id, ", ".join(fixed))
    return {k: v for k, v in env.items() if k not in envvars.FIXED_KEYS}
