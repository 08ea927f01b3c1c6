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
import shlex
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.engine.launch import (
    ROOT_ENVIRONMENT,
    SYSTEM_PATH,
    drop_privileges_argv,
    service_env_argv,
    shims_dir,
)
from maestro_runtime.sandbox.netpolicy import is_proxy_key
from maestro_runtime.sources import buildplan, buildstep, node, pybuild
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
from maestro_runtime.sources.declared import declared_build, platform_env
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
    # Python: the install step only (making the venv again changes nothing); Node: install and build.
    steps = plan.steps if plan.ecosystem == "node" else plan.steps[-1]
    for part in (plan.ecosystem, str(directory), tool_version, json.dumps(steps)):
        digest.update(part.encode() + b"\0")
    for name in plan.inputs:
        digest.update(name.encode() + b"\0" + hashlib.sha256(contents.get(name, b"")).digest())
    return digest.hexdigest()


# ---------------------------------------------------------------- running (shell)


def build_environment(directory: Path, account, opts: BuildOptions) -> dict[str, str]:
    cache = Path(account.cache_dir)
    env = {**platform_env(directory), **dict(opts.passthrough)}  # the platform's, then the operator's
    env.update(
        HOME=str(account.home),
        USER=account.user,
        LOGNAME=account.user,
        LANG="C.UTF-8",
        PATH=f"{account.venv_dir}/bin:{directory}/node_modules/.bin:{SYSTEM_PATH}:{shims_dir(str(account.home))}",
        TMPDIR=str(account.tmp_dir),
        XDG_CACHE_HOME=str(cache),
        PIP_CACHE_DIR=str(cache / "pip"),
        npm_config_cache=str(cache / "npm"),
        npm_config_update_notifier="false",
        COREPACK_HOME=str(cache / "corepack"),
        COREPACK_ENABLE_DOWNLOAD_PROMPT="0",
        COREPACK_ENABLE_AUTO_PIN="0",  # never a packageManager field written into package.json
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(pybuild.uv_environment(account, env))
    return env


def command_prefix(account, directory: Path, policy) -> list[str]:
    """Sandbox wrapper (when the policy offers one), then the drop to the project's user."""
    wrapper = getattr(policy, "build_wrapper", None)
    prefix = list(wrapper(account, directory) or ()) if callable(wrapper) else []
    if prefix:
        return prefix  # the sandbox wrapper drops to the account itself
    if os.geteuid() == 0:  # to the project's user, or (degraded mode) root with no capability
        return drop_privileges_argv(account.uid, account.gid)
    return []


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


def wrap(prefix: list[str], step: Sequence[str], env: Mapping[str, str], opts: BuildOptions,
         ) -> tuple[list[str], dict[str, str]]:
    """argv and process environment of one step.

    The build's environment (HOME, PATH into the project's venv, caches) is applied only by
    the last exec, after the drop: the root processes before it (the sandbox wrapper,
    setpriv) get a fixed environment, so nothing the project can write (a ``.pth`` in
    ``~/.local``, a venv on PATH, loader variables) is seen by root. The sandbox wrapper
    gets its config as a file (``--config``), never as variables to parse again.

    Behind the sandbox wrapper that last exec is a plain ``env K=V`` (no ``-i``): the wrapper
    already starts its command, after its own drop, with ``env -i`` and the sandbox's
    environment, whose proxy variables are the only way out of the sandbox's network
    namespace; the build's variables are added to it, never a replacement for it.
    """
    wrapped = bool(prefix) and prefix[0] != "/usr/bin/setpriv"
    if wrapped:
        # Proxy variables go to the wrapper (--env), which keeps them only where its network
        # is not its own proxy's; after it they would override that proxy, the only way out.
        proxy = [f"--env={k}={v}" for k, v in env.items() if is_proxy_key(k)]
        if proxy and prefix[-1] == "--":
            prefix = [*prefix[:-1], *proxy, "--"]
        last = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items() if not is_proxy_key(k))]
    else:
        last = service_env_argv(env)
    argv = [*prefix, *last, *step]
    if not prefix:
        return argv, dict(env)
    root_env = dict(ROOT_ENVIRONMENT)
    # The sandbox wrapper gets the operator's own PYTHONPATH (a development checkout), never the build's.
    if wrapped and opts.operator_pythonpath:
        root_env["PYTHONPATH"] = opts.operator_pythonpath
    return argv, root_env


# Every build step (and release phase) at the highest oom_score_adj, inherited by all it starts:
# when the container runs out of memory, the kernel ends a build (which fails, or runs again alone:
# ops/buildslots.py), not a running service or the runtime. Raising it needs no privilege.
FIRST_TO_GO = ("/usr/bin/choom", "-n", "1000", "--") if os.access("/usr/bin/choom", os.X_OK) else ()


def _run_plan(plan: Plan, directory: Path, account, policy, opts: BuildOptions, logfile: Path) -> None:
    build_env = build_environment(directory, account, opts)
    prefix = command_prefix(account, directory, policy)
    with open(logfile, "a") as out:
        out.write(f"{STEP_HEADER}{plan.ecosystem}\n")  # list-services' PROVISIONING rows name it (ops/inventory.py)
        for step in plan.steps:
            out.write(f"$ {shlex.join(step)}\n")
            out.flush()
            started = time.monotonic()
            try:
                argv, env = wrap(prefix, step, build_env, opts)
                proc = subprocess.run([*FIRST_TO_GO, *argv], cwd=directory, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=opts.timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
            except OSError as exc:
                out.write(f"cannot run {step[0]}: {exc}\n")
                code = 127
            out.write(f"# exit {code} after {time.monotonic() - started:.1f}s\n")
            out.flush()
            if code != 0:
                killed = code in (-9, 137)  # SIGKILL: what the kernel's OOM killer sends
                if code is None:
                    what = "timed out"
                elif killed:
                    what = f"was killed (exit {code}: out of memory?)"
                else:
                    what = f"failed (exit {code})"
                raise BuildError(
                    f"{plan.ecosystem} build {what}: {shlex.join(step[:4])}...; log {logfile}, last lines:\n"
                    + tail(logfile.read_text(errors="replace")), killed=killed)


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
        except ValueError as exc:
            raise BuildError(f"package.json is not valid JSON: {exc}") from exc
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
        if _read_stamp(plan.stamp_path, trusted) == stamp and _shims_present(plan):
            log.info("service %s: %s dependencies up to date, build skipped", service_id, ecosystem)
            continue
        logfile = _log_path(opts, service_id, account)
        header = f"# {ecosystem} build of {service_id} in {directory}, {time.ctime()}\n"
        if built:  # one log per boot: the node build follows the python one
            with open(logfile, "a") as fh:
                fh.write(header)
        else:
            logfile.write_text(header)
        log.info("service %s: building %s dependencies (log %s)", service_id, ecosystem, logfile)
        started = time.monotonic()
        try:
            _run_plan(plan, directory, account, policy, opts, logfile)
        except BuildError as exc:
            hint = pybuild.others_hint(directory, opts, version.split()[-1]) if ecosystem == "python" else None
            if hint is None or exc.killed:
                raise
            raise BuildError(f"{exc}\n{hint}") from None
        _check_untouched(directory, contents)
        # The stamp folder is made when missing (npm with no dependencies makes no node_modules).
        _write_stamp(plan.stamp_path, stamp, plan, account, trusted)
        log.info("service %s: %s build done in %.1fs", service_id, ecosystem, time.monotonic() - started)
        built.append(ecosystem)
    if step is not None and buildstep.run(step, directory, account, policy, opts, service_id, deps_built=bool(built)):
        built.append("build step")
    _collectstatic(directory, account, policy, opts, service_id, getattr(settings, "environ", None) or {})
    return built


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
