"""Python builds like a modern platform: the interpreter the project asks for, uv as the installer.

* Interpreter: :mod:`pyversion` over the interpreters found here (``python3.N`` in
  /usr/local/bin and /usr/bin, plus ``MAESTRO_PYTHONS``), or only ``MAESTRO_BUILD_PYTHON``
  when the operator sets it.
* Installer: uv (``MAESTRO_PYTHON_INSTALLER=auto``, the default, when a uv binary every
  project user can run is found and ``PIP_INSTALL_OPTIONS`` is not set; ``pip`` keeps the
  pip-compatible path). ``uv.lock`` -> ``uv sync --frozen`` into the account's venv;
  requirements -> ``uv venv`` (0.1 s against 5 s for ``python -m venv``) + ``uv pip install``.
* Pipenv and Poetry projects (neither tool is here): their locks read by :mod:`pylocks`, the
  locked requirements installed as arguments; a Poetry project itself only when it is a package.
* Django with ``STATIC_ROOT`` in its settings: ``manage.py collectstatic --noinput`` after the
  install, as Heroku does (``DISABLE_COLLECTSTATIC=1`` skips it).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from maestro_runtime.sources import pkgresources, pyinstall, pylocks, pyversion, uvbin
from maestro_runtime.sources.buildplan import PYTHON_INPUTS, STAMP_NAME, BuildError, Plan, venv_is_fresh_needed
from maestro_runtime.sources.projectfiles import list_names, read_text

log = logging.getLogger("maestro.builds")

REQUEST_FILES = (".python-version", "runtime.txt", "pyproject.toml", "uv.lock", "Pipfile", "Pipfile.lock")
_VERSIONS: dict[str, str] = {}  # interpreter path -> version, once per process


def _version_of(path: str) -> str | None:
    if path not in _VERSIONS:
        try:
            proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        words = (proc.stdout or proc.stderr).split()
        if proc.returncode != 0 or len(words) < 2:
            return None
        _VERSIONS[path] = words[-1]
    return _VERSIONS[path]


def interpreters(opts) -> list[pyversion.Interpreter]:
    """The operator's interpreter alone when given; else every ``python3.N`` here, MAESTRO_PYTHONS
    and those installed in MAESTRO_PYTHON_INSTALL_DIR."""
    if opts.python_explicit:
        paths = [opts.python]
    else:
        found = sorted(p for d in ("/usr/local/bin", "/usr/bin") for p in glob.glob(f"{d}/python3.*")
                       if re.fullmatch(r"python3\.\d+", os.path.basename(p)))
        paths = [*found, opts.python, *opts.extra_pythons, *pyinstall.installed(opts.python_install_dir)]
    seen, out = set(), []
    for path in paths:
        real = os.path.realpath(path)
        version = _version_of(path)
        if version and real not in seen:
            seen.add(real)
            out.append(pyversion.Interpreter(path, version))
    return out


def runnable_by_all(path: str) -> bool:
    """True when every project user can run ``path``: o+x on it and on each folder above it
    (a uv under /root, 0700, is root's alone)."""
    try:
        real = Path(os.path.realpath(path))
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
    except OSError:
        return False


def find_uv(given: str) -> str | None:
    candidates = [given] if given else []
    if not given:
        candidates += [uvbin.packaged_uv() or "", shutil.which("uv") or ""]  # the registry package ships one
    return next((c for c in candidates if c and runnable_by_all(c)), None)


def installer_uv(opts) -> str | None:
    """The uv binary to install with, or None for pip (asked for, or PIP_INSTALL_OPTIONS given)."""
    if opts.installer == "pip" or (opts.installer == "auto" and opts.pip_options):
        return None
    found = find_uv(opts.uv)
    if opts.installer == "uv" and found is None:
        log.warning("MAESTRO_PYTHON_INSTALLER=uv but no uv every project user can run was found "
                    "(MAESTRO_UV); using pip")
    return found


def choose_interpreter(directory: Path, opts) -> pyversion.Choice:
    """What the project asks for: installed first when it is not here and an install source is
    configured; then chosen among what is here, with the install's failure in the warning."""
    texts = {name: text for name in REQUEST_FILES
             if (text := read_text(directory, directory / name)) is not None}
    request = pyversion.read_request(texts)
    available = interpreters(opts)
    target = pyversion.install_target(request, available)
    failed = None
    if target and not opts.python_explicit and pyinstall.configured(opts):
        failed = pyinstall.install(target, opts)
        if failed is None:
            available = interpreters(opts)
    try:
        choice = pyversion.choose(request, available)
    except pyversion.NoInterpreter as exc:
        raise pyversion.NoInterpreter(f"{exc}; installing Python {target}: {failed}" if failed else str(exc)) \
            from None
    if failed and choice.warning:
        return replace(choice, warning=f"{choice.warning} (installing Python {target} from "
                                       f"{pyinstall.source_name(opts)}: {failed})")
    return choice


# What uv and pip print when a dependency had no wheel and its build from source failed.
_SOURCE_BUILD_FAILED = re.compile(r"Failed to (?:download and )?build `|Failed building wheel for|"
                                  r"failed-wheel-build-for-install")


def fallback(directory: Path, files: set[str], venv_dir: Path, opts, trusted: Path, used: str,
             failed_log: str | None = None) -> tuple[Plan, str] | None:
    """The plan (and version line) with the newest interpreter here older than ``used`` that the
    project allows, when it pins none and the operator chose none; given the log of the build
    with ``used``, only when it says a dependency failed to build from source (locks made before
    ``used`` came out often have no wheel for it: psycopg2 2.9.3, httptools 0.6.1 on 3.13)."""
    if opts.python_explicit or (failed_log is not None and not _SOURCE_BUILD_FAILED.search(failed_log)):
        return None
    texts = {name: text for name in REQUEST_FILES
             if (text := read_text(directory, directory / name)) is not None}
    older = pyversion.older_fits(pyversion.read_request(texts), interpreters(opts), used)
    if not older:
        return None
    found, version, _ = plan(directory, files, venv_dir, opts, trusted, interpreter=older[0])
    return found, version


def others_hint(directory: Path, opts, used: str) -> str | None:
    """After a failed install with Python ``used``: another interpreter here that would fit."""
    if opts.python_explicit:
        return None
    texts = {name: text for name in REQUEST_FILES
             if (text := read_text(directory, directory / name)) is not None}
    return pyversion.others_hint(pyversion.read_request(texts), interpreters(opts), used)


def plan(directory: Path, files: set[str], venv_dir: Path, opts, trusted: Path,
         interpreter: pyversion.Interpreter | None = None) -> tuple[Plan, str, str | None]:
    """The Python plan, the interpreter's version line (part of the stamp) and a warning.
    ``interpreter``: this one (a :func:`fallback`), not the project's choice."""
    try:
        choice = pyversion.Choice(interpreter) if interpreter else choose_interpreter(directory, opts)
    except pyversion.NoInterpreter as exc:
        raise BuildError(str(exc)) from None
    python = choice.interpreter.path
    version = f"Python {choice.interpreter.version}"
    fresh = venv_is_fresh_needed(venv_dir, choice.interpreter.version, trusted)
    uv = installer_uv(opts)
    warning = choice.warning
    locked, root = lock_requirements(directory, files)
    if uv:
        steps = uv_steps(files, venv_dir, python, uv, fresh_venv=fresh, locked=locked, root=root)
    else:
        steps = python_plan(files, venv_dir, opts, fresh_venv=fresh, python=python, locked=locked, root=root).steps
        if "uv.lock" in files:
            warning = (warning + "; " if warning else "") + "uv.lock is not used by pip (MAESTRO_PYTHON_INSTALLER)"
    inputs = tuple(f for f in PYTHON_INPUTS if f in files)
    return Plan("python", inputs, steps, venv_dir / STAMP_NAME, (python, "--version")), version, warning


def lock_requirements(directory: Path, files: set[str]) -> tuple[pylocks.Locked | None, bool]:
    """A Pipenv or Poetry project's locked requirements (None for any other, or with a
    requirements.txt, which wins as everywhere) and whether the project itself is installed."""
    if "requirements.txt" in files or ("uv.lock" in files and "pyproject.toml" in files):
        return None, True

    def text(name: str) -> str | None:
        return read_text(directory, directory / name) if name in files else None

    if "Pipfile.lock" in files or "Pipfile" in files:
        locked = pylocks.pipenv(text("Pipfile.lock"), text("Pipfile"))
        if locked is None:
            raise BuildError("neither Pipfile.lock (JSON) nor Pipfile (TOML) reads: fix them "
                             "or ship a requirements.txt")
        return locked, False
    if "poetry.lock" in files and "pyproject.toml" in files:
        pyproject = text("pyproject.toml")
        if pylocks.is_poetry(pyproject):
            locked = pylocks.poetry(pyproject, text("poetry.lock"))
            if locked is None:
                raise BuildError("poetry.lock does not read (TOML) or locks no package: "
                                 "run `poetry lock` and commit it")
            present = set(files) | {f"src/{n}" for n in list_names(directory / "src")}
            return locked, pylocks.poetry_root_installable(pyproject, present)
    return None, True


def _install_targets(files: set[str], locked: pylocks.Locked | None, root: bool) -> list[tuple[str, ...]]:
    """What each install command is given: the requirements file, the locked requirements (then
    the project itself, without dependencies: the lock has them), or the project."""
    if "requirements.txt" in files:
        return [("-r", "requirements.txt")]
    if locked is None:
        return [("-e", ".")]
    targets: list[tuple[str, ...]] = [locked.requirements] if locked.requirements else []
    if root:
        targets.append(("--no-deps", "-e", "."))
    return targets


def uv_steps(files: set[str], venv_dir: Path, python: str, uv: str, *, fresh_venv: bool,
             locked: pylocks.Locked | None = None, root: bool = True) -> tuple[tuple[str, ...], ...]:
    """The uv commands (pure). ``UV_PROJECT_ENVIRONMENT`` (set by the caller) puts ``uv sync``'s
    environment in the account's venv, never a ``.venv`` inside the project."""
    if "uv.lock" in files and "pyproject.toml" in files:
        return ((uv, "sync", "--frozen", "--no-dev", "--python", python),)
    steps = []
    targets = _install_targets(files, locked, root)
    if fresh_venv or not targets:  # nothing to install (an empty Pipfile): the venv alone
        # --clear: a venv made by another interpreter is replaced (uv >= 0.8 refuses otherwise)
        keep = ("--clear",) if fresh_venv else ("--allow-existing",)
        steps.append((uv, "venv", "--quiet", "--seed", *keep, "--python", python, str(venv_dir)))
    pip = (uv, "pip", "install", "--python", str(venv_dir / "bin" / "python"))
    steps += [(*pip, *target) for target in targets]
    if targets:
        steps.append(pkgresources.step(venv_dir, pip))
    return tuple(steps)


def uv_environment(account, passthrough: Mapping[str, str]) -> dict[str, str]:
    """uv's settings for a build: the account's venv and cache; no interpreter downloads unless the
    operator allows them (UV_PYTHON_DOWNLOADS, with UV_PYTHON_INSTALL_MIRROR)."""
    return {"UV_PROJECT_ENVIRONMENT": str(account.venv_dir), "UV_CACHE_DIR": str(Path(account.cache_dir) / "uv"),
            "UV_PYTHON_DOWNLOADS": passthrough.get("UV_PYTHON_DOWNLOADS", "never"), "UV_NO_PROGRESS": "1",
            "UV_LINK_MODE": "copy"}


def collectstatic_step(directory: Path, venv_dir: Path, env: Mapping[str, str]) -> tuple[str, ...] | None:
    """Heroku's Django convention: collectstatic when a settings module sets STATIC_ROOT."""
    off = env.get("DISABLE_COLLECTSTATIC", "").strip().lower() in ("1", "true", "yes")
    if off or not (directory / "manage.py").is_file() or not (venv_dir / "bin" / "python").exists():
        return None
    for settings in sorted(directory.glob("*/settings.py")) + sorted(directory.glob("*/settings/*.py")):
        if re.search(r"^\s*STATIC_ROOT\s*=", read_text(directory, settings) or "", re.M):
            return (str(venv_dir / "bin" / "python"), "manage.py", "collectstatic", "--noinput")
    return None


def python_plan(files: set[str], venv_dir: Path, opts, *, fresh_venv: bool, python: str = "",
                locked: pylocks.Locked | None = None, root: bool = True) -> Plan | None:
    """``files``: names present at the project root."""
    inputs = tuple(f for f in PYTHON_INPUTS if f in files)
    if not (files & {"requirements.txt", "pyproject.toml", "setup.py"} or locked is not None):
        return None
    targets = _install_targets(files, locked, root)
    pip = (str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--no-input",
           "--disable-pip-version-check", "--progress-bar", "off")
    python = python or opts.python
    steps = []
    if fresh_venv or not targets:
        steps.append((python, "-m", "venv", *(("--clear",) if fresh_venv else ()), str(venv_dir)))
    steps += [(*pip, *opts.pip_options, *target) for target in targets]
    if targets:
        steps.append(pkgresources.step(venv_dir, (*pip, *opts.pip_options)))
    return Plan("python", inputs, tuple(steps), venv_dir / STAMP_NAME, (python, "--version"))
