"""What a build is (pure value objects) and the small helpers both ecosystems use."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.sources.projectfiles import ProjectFiles

STAMP_NAME = ".maestro-build-stamp"
PYTHON_INPUTS = ("requirements.txt", "pyproject.toml", "setup.py", "setup.cfg", "uv.lock", ".python-version",
                 "runtime.txt", "Pipfile", "Pipfile.lock", "poetry.lock")
TAIL_LINES = 25
META_LIMIT = 64 * 1024  # stamps, pyvenv.cfg


class BuildError(Exception):
    """A build or release phase that failed; ``killed``: ended by SIGKILL (out of memory, most likely)."""

    def __init__(self, message: str, *, killed: bool = False):
        super().__init__(message)
        self.killed = killed


STEP_HEADER = "# maestro: "  # a build log's line before each plan's steps ("# maestro: python"), read by list-services


@dataclass(frozen=True)
class Plan:
    ecosystem: str  # "python" | "node"
    inputs: tuple[str, ...]  # files (relative to the project) the stamp covers
    steps: tuple[tuple[str, ...], ...]
    stamp_path: Path
    tool: tuple[str, ...]  # argv printing the interpreter version, part of the stamp


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def steps_file(logfile: Path) -> Path:
    """``<id>.build.steps`` beside ``<id>.build.log``: root's own record of each plan, step and exit
    (the markers the log shows too). The log holds the build's output as well, so a build could
    print a marker there and fake its step or duration: readers take them from here
    (list-services' PROVISIONING step, the controller's build seconds)."""
    return logfile.with_name(logfile.name.removesuffix(".log") + ".steps")


def build_seconds(steps: Path) -> float | None:
    """A build's duration from its steps file: the sum of its ``# exit N after Xs`` lines (buildrun.py),
    or None when it has none. A line at a time, at most 4 KiB of one, counting only what a duration
    can be (a "nan" once made every list-services --json say NaN, which is no JSON)."""
    total = None
    with contextlib.suppress(OSError), steps.open("rb") as handle:
        for line in iter(lambda: handle.readline(4096), b""):
            if line.startswith(b"# exit ") and b" after " in line:
                with contextlib.suppress(ValueError):
                    seconds = float(line.rsplit(b" after ", 1)[1].strip().removesuffix(b"s"))
                    if 0 <= seconds < 1e9:  # also false for nan
                        total = (total or 0.0) + seconds
    return total


def venv_is_fresh_needed(venv_dir: Path, python_version: str, trusted: Path) -> bool:
    """A missing or broken venv, or one made by another interpreter, is rebuilt from scratch."""
    try:
        cfg = safefs.read_file(venv_dir / "pyvenv.cfg", under=trusted, limit=META_LIMIT)
    except (safefs.UnsafeFile, OSError):
        return True
    if cfg is None or not (venv_dir / "bin" / "python").exists():
        return True
    for line in cfg.decode(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return not python_version.endswith(value.strip())
    return True


def tool_version(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{argv[0]} is not available: {exc}") from exc
    if proc.returncode != 0:
        raise BuildError(f"{argv[0]} --version failed: {tail(proc.stderr or proc.stdout, 3)}")
    return (proc.stdout or proc.stderr).strip()


PYTHON_MANIFESTS = frozenset({"requirements.txt", "pyproject.toml", "setup.py", "Pipfile", "Pipfile.lock"})
MANIFESTS = PYTHON_MANIFESTS | {"package.json"}


def may_build(project: Path | ProjectFiles) -> bool:
    """Whether builds.build may run anything here (a manifest, or a build step a platform file
    declares): what waits for a build slot at boot. A static site never does."""
    from maestro_runtime.sources.declared import declared_build

    files = ProjectFiles.of(project)
    return bool(files.names & MANIFESTS) or declared_build(files) is not None
