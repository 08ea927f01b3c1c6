"""Start commands a project declares for other platforms (pure: reads files, runs nothing).

Order, as a user of those platforms expects: ``Procfile`` (every process type), then
``railway.json``/``railway.toml`` ``deploy.startCommand``, ``render.yaml`` (the first
``type: web`` service's ``startCommand``), ``nixpacks.toml`` ``[start] cmd``. ``app.json``
names no start command (Heroku reads the Procfile), so it is not read for one.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from maestro_runtime.sources.projectfiles import read_text
from maestro_runtime.spec import envvars

log = logging.getLogger("maestro")

_TYPE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


@dataclass(frozen=True)
class Declared:
    command: str
    reason: str


def procfile(directory: Path) -> dict[str, str]:
    """Process types in order (``web``, ``worker``, ``release``...); comments and blanks skipped."""
    text = read_text(directory, directory / "Procfile")
    types: dict[str, str] = {}
    for line in (text or "").splitlines():
        match = _TYPE.match(line.strip())
        if match and not line.lstrip().startswith("#") and match.group(1) not in types:
            types[match.group(1)] = match.group(2).strip()
    return types


def _railway(directory: Path) -> Declared | None:
    text = read_text(directory, directory / "railway.json")
    if text is not None:
        try:
            deploy = json.loads(text).get("deploy") or {}
        except (ValueError, AttributeError):
            deploy = {}
        command = deploy.get("startCommand") if isinstance(deploy, dict) else None
        if isinstance(command, str) and command.strip():
            return Declared(command.strip(), "detected: railway.json deploy.startCommand")
    text = read_text(directory, directory / "railway.toml")
    if text is not None:
        try:
            deploy = tomllib.loads(text).get("deploy") or {}
        except tomllib.TOMLDecodeError:
            deploy = {}
        command = deploy.get("startCommand") if isinstance(deploy, dict) else None
        if isinstance(command, str) and command.strip():
            return Declared(command.strip(), "detected: railway.toml deploy.startCommand")
    return None


def _render(directory: Path) -> Declared | None:
    text = read_text(directory, directory / "render.yaml")
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    services = doc.get("services") if isinstance(doc, dict) else None
    for service in services if isinstance(services, list) else ():
        if isinstance(service, dict) and service.get("type") == "web":
            command = service.get("startCommand")
            if isinstance(command, str) and command.strip():
                return Declared(command.strip(), "detected: render.yaml startCommand")
    return None


def _nixpacks(directory: Path) -> Declared | None:
    text = read_text(directory, directory / "nixpacks.toml")
    if text is None:
        return None
    try:
        start = tomllib.loads(text).get("start") or {}
    except tomllib.TOMLDecodeError:
        return None
    command = start.get("cmd") if isinstance(start, dict) else None
    if isinstance(command, str) and command.strip():
        return Declared(command.strip(), "detected: nixpacks.toml [start] cmd")
    return None


def declared_web(directory: Path) -> Declared | None:
    web = procfile(directory).get("web")
    if web:
        return Declared(web, "detected: Procfile web")
    return _railway(directory) or _render(directory) or _nixpacks(directory)


def service_env(directory: Path, spec_env: dict, service_id: str) -> dict[str, str]:
    """The project's own ``.env`` (the honcho/foreman convention) under the spec's env; PORT, HOME,
    USER are the runtime's (set last at launch): a value for them is dropped, with a warning."""
    text = read_text(directory, directory / ".env")
    env = {**(envvars.parse_dotenv(text) if text else {}), **spec_env}
    fixed = envvars.fixed_keys(env)
    if fixed:
        log.warning("service %s: %s set by the runtime; the value given is ignored", service_id, ", ".join(fixed))
    return {k: v for k, v in env.items() if k not in envvars.FIXED_KEYS}
