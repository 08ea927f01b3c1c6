"""Start-command detection (pure: reads the project's files, returns a command and why)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Detection:
    command: str
    reason: str


def static_command(directory: Path) -> str:
    return f"python3 -m http.server $PORT --directory {shlex.quote(str(directory))} --bind 0.0.0.0"


def _procfile_web(directory: Path) -> str | None:
    procfile = directory / "Procfile"
    if not procfile.is_file():
        return None
    for line in procfile.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "web" and value.strip():
            return value.strip()
    return None


def detect_command(directory: Path) -> Detection:
    web = _procfile_web(directory)
    if web:
        return Detection(web, "detected: Procfile web")
    package = directory / "package.json"
    if package.is_file():
        try:
            manifest = json.loads(package.read_text())
        except ValueError:
            manifest = {}
        if isinstance(manifest.get("scripts"), dict) and manifest["scripts"].get("start"):
            return Detection("npm start", "detected: package.json scripts.start")
        for candidate in (manifest.get("main"), "server.js", "index.js"):
            if isinstance(candidate, str) and (directory / candidate).is_file():
                return Detection(f"node {shlex.quote(candidate)}", f"detected: node {candidate}")
    for script in ("main.py", "app.py", "server.py"):
        if (directory / script).is_file():
            return Detection(f"python {script}", f"detected: {script}")
    return Detection(static_command(directory), "detected: static site")
