"""Dependency builds (Python venv, Node modules) as the project's own user.

Python: ``requirements.txt`` -> ``pip install -r``; else ``pyproject.toml`` or
``setup.py`` -> ``pip install -e .`` (editable, so a redeploy of the code at
the same path needs no reinstall). Everything goes into the project user's own
venv, ``~/.maestro/venv`` (:attr:`Account.venv_dir`), which the launch script
puts first on PATH. ``PIP_INSTALL_OPTIONS`` is appended to the pip command.

Node (:mod:`maestro_runtime.sources.node`): the manager from ``packageManager`` or the
one lock file by precedence, a frozen install (pnpm and yarn through corepack), then
``scripts.build`` when present (with dev dependencies). Production dependencies only
otherwise, unless ``MAESTRO_NPM_INCLUDE_DEV=1``; ``NPM_INSTALL_OPTIONS`` is appended.
A file the project ships that the install rewrote fails the build.

Caches live in the user's ``~/.cache`` (pip, npm, corepack), so they persist
across container restarts when the home root is on a volume.

A build is skipped when its stamp -- a hash of the manifest and lock files, the
interpreter version and the options -- matches the one stored in the venv or
``node_modules`` after the last successful build: a reboot runs no pip or npm.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.engine.launch import shims_dir
from maestro_runtime.ops.logs import tail_bytes
from maestro_runtime.sources import buildplan, buildstep, node, pkgresources, pybuild
from maestro_runtime.sources.buildplan import (  # noqa: F401 (re-exported: callers use builds.*)
    META_LIMIT,
    PYTHON_INPUTS,
    STAMP_NAME,
    STEP_HEADER,
    TAIL_LINES,
    BuildError,
    Plan,
    tail,
    tool_version,
    venv_is_fresh_needed,
)
from maestro_runtime.sources.buildrun import (  # noqa: F401 (re-exported: callers use builds.*)
    FIRST_TO_GO,
    build_environment,
    command_prefix,
    wrap,
)
from maestro_runtime.sources.buildrun import run_plan as _run_plan
from maestro_runtime.sources.declared import declared_build
from maestro_runtime.sources.projectfiles import ProjectFiles
from maestro_runtime.sources.pybuild import python_plan  # noqa: F401 (re-exported)

log = logging.getLogger("maestro.builds")

NODE_LOCKS = ("package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "yarn.lock")
INPUT_LIMIT = 64 * 1024 * 1024  # manifests and lock files (a yarn.lock can be tens of MB)


@dataclass(frozen=True)
class BuildOptions:
    """Build knobs: ``settings.build`` (see :class:`maestro_runtime.settings.BuildSettings`) and the log folder."""

    pip_options: tuple[str, ...] = ()  # PIP_INSTALL_OPTIONS
    npm_options: tuple[str, ...] = ()  # NPM_INSTALL_OPTIONS
    include_dev: bool = False  # MAESTRO_NPM_INCLUDE_DEV
    python: str = "/usr/bin/python3"  # MAESTRO_BUILD_PYTHON: must be readable by every project user
    python_explicit: bool = True  # False: choose among the interpreters here by what the project asks
    extra_pythons: tuple[str, ...] = ()  # MAESTRO_PYTHONS
    installer: str = "pip"  # MAESTRO_PYTHON_INSTALLER: auto | uv | pip
    uv: str = ""  # MAESTRO_UV (auto: the uv package's binary, when every project user can run it)
    timeout: float = 1800.0  # MAESTRO_BUILD_TIMEOUT (seconds, per command)
    python_install_mirror: str = ""  # MAESTRO_PYTHON_INSTALL_MIRROR (see pyinstall)
    python_downloads_json: str = ""  # MAESTRO_PYTHON_DOWNLOADS_JSON_URL
    python_install_dir: str = "/usr/local/lib/maestro/python"  # MAESTRO_PYTHON_INSTALL_DIR
    python_install_timeout: float = 180.0  # MAESTRO_PYTHON_INSTALL_TIMEOUT
    log_dir: Path | None = None  # <state_dir>/builds: one log per service
    passthrough: tuple[tuple[str, str], ...] = ()

    operator_pythonpath: str = ""  # the operator's PYTHONPATH, for the sandbox wrapper only

    @classmethod
    def from_settings(cls, settings) -> BuildOptions:
        b = settings.build
        return cls(
            pip_options=b.pip_options, npm_options=b.npm_options, include_dev=b.include_dev,
            python=b.python or default_python(), python_explicit=bool(b.python),
            extra_pythons=b.extra_pythons, installer=b.installer, uv=b.uv, timeout=b.timeout,
            python_install_mirror=b.python_install_mirror, python_downloads_json=b.python_downloads_json,
            python_install_dir=b.python_install_dir, python_install_timeout=b.python_install_timeout,
            log_dir=settings.build_log_dir, passthrough=b.passthrough,
            operator_pythonpath=b.operator_pythonpath,
        )


def default_python() -> str:
    """A system interpreter (never one under /root, which project users cannot read)."""
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return "python3"


# ---------------------------------------------------------------- planning (pure)


def node_plan(files: set[str], package: Mapping, opts: BuildOptions, node_modules: Path,
              declared_build: bool = False, shims: Path | None = None) -> Plan | None:
    """``declared_build``: the project declares its build step elsewhere (render.yaml...), which
    then replaces ``scripts.build`` (it usually runs it) and needs the dev dependencies too.
    ``shims``: where a pnpm or yarn project gets its manager's command (``corepack enable``), so
    that a declared step or start command saying ``yarn build``/``pnpm start`` finds it."""
    if "package.json" not in files:
        return None
    choice = node.choose_manager(files, package)
    building = node.has_build(package)
    # A build needs its bundler, which lives in devDependencies.
    prod = not (opts.include_dev or building or declared_build)
    steps = list(node.enable_steps(choice, str(shims))) if shims and choice.manager != "npm" else []
    steps.append((*node.install_argv(choice, files, package, prod=prod), *opts.npm_options))
    if building and not declared_build:
        steps.append(node.build_argv(choice))
    inputs = ("package.json", *(f for f in (*NODE_LOCKS, ".yarnrc.yml", ".npmrc") if f in files))
    return Plan("node", inputs, tuple(steps), node_modules / STAMP_NAME, ("node", "--version"))


def compute_stamp(plan: Plan, contents: Mapping[str, bytes], tool_version: str, directory: Path) -> str:
    """Same inputs, interpreter and commands -> same stamp; anything else -> a rebuild."""
    digest = hashlib.sha256()
    # Python: the install steps only (making the venv again changes nothing); Node: install and build.
    steps = plan.steps if plan.ecosystem == "node" else [s for s in plan.steps if not pkgresources.makes_venv(s)]
    for part in (plan.ecosystem, str(directory), tool_version, json.dumps(steps)):
        digest.update(part.encode() + b"\0")
    for name in plan.inputs:
        digest.update(name.encode() + b"\0" + hashlib.sha256(contents.get(name, b"")).digest())
    return digest.hexdigest()


# ---------------------------------------------------------------- running (shell)


def _shims_present(plan: Plan) -> bool:
    """A home made anew (its volume lost) has neither the shims nor corepack's cache: build again."""
    enable = next((s for s in plan.steps if s[:2] == ("corepack", "enable")), None)
    return enable is None or os.path.lexists(os.path.join(enable[3], enable[4]))


def _read_stamp(path: Path, trusted: Path) -> str | None:
    try:
        return json.loads(safefs.read_file(path, under=trusted, limit=META_LIMIT) or b"").get("stamp")
    except (OSError, ValueError, AttributeError, safefs.UnsafeFile):
        return None


def _write_stamp(path: Path, stamp: str, plan: Plan, account, trusted: Path) -> None:
    """The stamp folder (made when missing) and file, by descriptor: a link planted in place
    of either, or of the temp file, is refused, never written through."""
    text = json.dumps({"stamp": stamp, "inputs": list(plan.inputs), "built": time.time()}) + "\n"
    ids = {"uid": account.uid, "gid": account.gid} if os.geteuid() == 0 else {}
    folder = path.parent
    try:
        with safefs.opened_dir(folder.parent, under=trusted) as parent:
            fd = safefs.ensure_dir(parent, folder.name, folder, **ids)
        try:
            safefs.write_at(fd, path.name, text.encode(), **ids)
        finally:
            os.close(fd)
    except (safefs.UnsafeFile, OSError) as exc:
        raise BuildError(f"cannot write the build stamp {path}: {exc}") from None


def _trusted(path: Path, account, directory: Path) -> Path:
    """The folder only root changes above ``path``: the home root or the projects' root."""
    home = Path(account.home)
    return home.parent if path.is_relative_to(home) else directory.parent


def _read_inputs(directory: Path, names) -> dict[str, bytes]:
    """Manifest and lock files: regular files only, size-capped, never blocking."""
    contents = {}
    try:
        with safefs.opened_dir(directory, under=directory.parent) as fd:
            for name in names:
                contents[name] = safefs.read_at(fd, name, directory / name, limit=INPUT_LIMIT) or b""
    except (safefs.UnsafeFile, OSError) as exc:
        raise BuildError(str(exc)) from None
    return contents


def _log_path(opts: BuildOptions, service_id: str, account) -> Path:
    # Never in the service's home, where a planted link would redirect root's writes.
    if opts.log_dir is None:
        return Path(tempfile.mkdtemp(prefix="maestro-build-")) / f"{service_id}.build.log"
    # Root's log folder: 0700 and 0600 files, as pip and npm print index URLs (and their credentials).
    opts.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    opts.log_dir.chmod(0o700)
    path = opts.log_dir / f"{service_id}.build.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a log written by an older version was 0644
    finally:
        os.close(fd)
    return path


def _check_untouched(directory: Path, before: Mapping[str, bytes]) -> None:
    """A build must never rewrite a file the project ships (a lock most of all): fail instead,
    and the fetch is rolled back, so the project's files come back as they were."""
    after = _read_inputs(directory, tuple(before))
    changed = [name for name, data in before.items() if after.get(name) != data]
    if changed:
        raise BuildError(f"the install rewrote {', '.join(changed)}, which the project ships: keep one lock file "
                         "(or name the tool in package.json packageManager) and commit it up to date")


def build(project: Path | ProjectFiles, account, *, settings, policy, service_id: str,
          options: BuildOptions | None = None) -> list[str]:
    """Install the project's dependencies, then run the build step it declares (:mod:`buildstep`);
    return what actually ran: the ecosystems and ``"build step"`` (empty when up to date).
    ``project``: its folder, or the look at it taken before the build (nothing ran since).

    Raises :class:`BuildError` (with the tail of the build log) when a build fails.
    """
    snapshot = ProjectFiles.of(project)
    directory = snapshot.directory
    files = set(snapshot.names)
    step = declared_build(snapshot)
    if not files & (buildplan.MANIFESTS | {"manage.py"}) and step is None:
        return []  # nothing to install, build or collect (a static site): no options to gather
    opts = options or BuildOptions.from_settings(settings)
    package: Mapping = {}
    if "package.json" in files:
        try:
            package = json.loads(_read_inputs(directory, ("package.json",))["package.json"])
        except (ValueError, RecursionError) as exc:
            raise BuildError(f"package.json is not valid JSON: {exc}") from None
    built = []
    for ecosystem in ("python", "node"):
        if ecosystem == "python":
            if not files & buildplan.PYTHON_MANIFESTS:
                continue
            plan, version, warning = pybuild.plan(directory, files, Path(account.venv_dir), opts,
                                                  Path(account.home).parent)
        else:
            shims = Path(shims_dir(str(account.home)))
            plan = node_plan(files, package if isinstance(package, Mapping) else {}, opts,
                             directory / "node_modules", declared_build=step is not None, shims=shims)
            version = tool_version(plan.tool) if plan else ""
            warning = node.engines_warning(package, version) if plan else None
        if warning:
            log.warning("service %s: %s", service_id, warning)
        if plan is None:
            continue
        contents = _read_inputs(directory, plan.inputs)
        stamp = compute_stamp(plan, contents, version, directory)
        trusted = _trusted(plan.stamp_path, account, directory)
        stored = _read_stamp(plan.stamp_path, trusted)
        if ecosystem == "python" and stored not in (None, stamp):  # built by a fallback before?
            older = pybuild.fallback(directory, files, Path(account.venv_dir), opts, Path(account.home).parent,
                                     version.split()[-1])
            if older and compute_stamp(older[0], contents, older[1], directory) == stored:
                plan, stamp = older[0], stored
        if stored == stamp and _shims_present(plan):
            log.info("service %s: %s dependencies up to date, build skipped", service_id, ecosystem)
            continue
        logfile = _log_path(opts, service_id, account)
        header = f"# {ecosystem} build of {service_id} in {directory}, {time.ctime()}\n"
        if built:  # one log per boot: the node build follows the python one
            with open(logfile, "a") as fh:
                fh.write(header)
        else:
            logfile.write_text(header)
            buildplan.steps_file(logfile).write_text("")
        log.info("service %s: building %s dependencies (log %s)", service_id, ecosystem, logfile)
        started = time.monotonic()
        try:
            _run_plan(plan, directory, account, policy, opts, logfile)
        except BuildError as exc:
            if ecosystem != "python" or exc.killed:
                raise
            stamp = _with_older_python(exc, directory, files, account, policy, opts, logfile, contents, version,
                                       service_id)
        _check_untouched(directory, contents)
        # The stamp folder is made when missing (npm with no dependencies makes no node_modules).
        _write_stamp(plan.stamp_path, stamp, plan, account, trusted)
        log.info("service %s: %s build done in %.1fs", service_id, ecosystem, time.monotonic() - started)
        built.append(ecosystem)
    if step is not None and buildstep.run(step, directory, account, policy, opts, service_id, deps_built=bool(built)):
        built.append("build step")
    _collectstatic(directory, account, policy, opts, service_id, getattr(settings, "environ", None) or {})
    return built


def _with_older_python(exc: BuildError, directory: Path, files: set[str], account, policy, opts: BuildOptions,
                       logfile: Path, contents: Mapping[str, bytes], version: str, service_id: str) -> str:
    """A Python install that failed building a dependency from source, with no version asked
    for: built again with the newest older interpreter the project allows (its stamp returned),
    as the error's hint would have told the user to pin. Else ``exc``, with that hint."""
    used = version.split()[-1]
    older = pybuild.fallback(directory, files, Path(account.venv_dir), opts, Path(account.home).parent, used,
                             failed_log="\n".join(tail_bytes(logfile, 1024 * 1024, keep_cut=True)))
    if older is None:
        hint = pybuild.others_hint(directory, opts, used)
        raise BuildError(f"{exc}\n{hint}" if hint else str(exc), killed=exc.killed) from None
    plan, older_version = older
    log.warning("service %s: a dependency failed to build from source with Python %s; building with %s "
                "(a .python-version file saying its minor version skips the first try)", service_id, used,
                older_version.split()[-1])
    try:
        _run_plan(plan, directory, account, policy, opts, logfile)
    except BuildError as again:
        raise BuildError(f"{again}\n(Python {used} failed first: a dependency did not build from source)",
                         killed=again.killed) from None
    return compute_stamp(plan, contents, older_version, directory)


def _collectstatic(directory: Path, account, policy, opts: BuildOptions, service_id: str, env) -> None:
    """Every deploy, as Heroku does (new code, new static files); a failure is a warning, since
    settings may need variables only the running service gets."""
    step = pybuild.collectstatic_step(directory, Path(account.venv_dir), env)
    if step is None:
        return
    logfile = _log_path(opts, service_id, account)
    try:
        _run_plan(Plan("django", (), (step,), Path(account.venv_dir) / STAMP_NAME, ()), directory, account,
                  policy, opts, logfile)
        log.info("service %s: collectstatic done", service_id)
    except BuildError as exc:
        log.warning("service %s: collectstatic failed (DISABLE_COLLECTSTATIC=1 skips it): %s", service_id,
                    str(exc).splitlines()[-1])
