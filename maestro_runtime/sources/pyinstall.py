"""Installing the exact Python a project pins (``uv python install``), from a source the operator names.

Only when ``MAESTRO_PYTHON_INSTALL_MIRROR`` or ``MAESTRO_PYTHON_DOWNLOADS_JSON_URL`` is set:
otherwise nothing is attempted, so no outside name is ever looked up. The install runs as
root, once per version per boot, bounded by ``MAESTRO_PYTHON_INSTALL_TIMEOUT``, into
``MAESTRO_PYTHON_INSTALL_DIR`` (root's, 0755: every project user can run what is there,
none can change it); the interpreters there are then chosen like any other. A failure is
the caller's warning, and the build goes on with the best interpreter here.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

from maestro_runtime.engine.launch import SYSTEM_PATH
from maestro_runtime.sources import uvbin
from maestro_runtime.sources.redact import redact

log = logging.getLogger("maestro.builds")

_LOCK = threading.Lock()  # parallel builds asking for one version install it once
_TRIED: dict[tuple[str, str], str | None] = {}  # (install dir, request) -> error, None when installed
# The operator's own variables a download may need (proxies, CAs), never a project's.
_PASS_KEYS = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                        "SSL_CERT_FILE", "SSL_CERT_DIR"})


def configured(opts) -> bool:
    return bool(opts.python_install_mirror or opts.python_downloads_json)


def source_name(opts) -> str:
    return redact(opts.python_install_mirror or opts.python_downloads_json)


def installed(install_dir: str) -> list[str]:
    """``python3.N`` of every interpreter installed there (uv's ``cpython-3.13.0-linux-x86_64-gnu``)."""
    found = glob.glob(os.path.join(glob.escape(install_dir), "cpython-*", "bin", "python3.*"))
    # Not through uv's minor-version links (cpython-3.13-...), which move to the next patch release.
    return sorted(p for p in found if re.fullmatch(r"python3\.\d+", os.path.basename(p))
                  and not os.path.islink(os.path.dirname(os.path.dirname(p))))


def unsafe_folder(path: Path) -> str | None:
    """Why root must not install through ``path``: a folder (or link) on the way, as written or
    resolved, that is not root's, or a folder others may change (a sticky /tmp is fine: what
    another user made in it is not root's, and is refused as such)."""
    real = Path(os.path.realpath(path))
    for folder in dict.fromkeys((path, *path.parents, real, *real.parents)):
        try:
            info = folder.lstat()
        except FileNotFoundError:
            continue
        if info.st_uid != 0:
            return f"{folder} is not root's"
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            return f"{folder} may be changed by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def uv_binary(given: str) -> str | None:
    """Root runs it: the operator's (MAESTRO_UV), the uv package's, or the one on root's PATH."""
    return given or uvbin.packaged_uv() or shutil.which("uv")


def install_argv(uv: str, request: str, install_dir: str) -> list[str]:
    """No configuration file (a project's uv.toml is never read by root), no links in ~/.local/bin."""
    return [uv, "python", "install", "--no-config", "--no-bin", "--no-cache", "--install-dir", install_dir,
            "--", request]


def install_env(opts) -> dict[str, str]:
    env = {k: v for k, v in opts.passthrough if k in _PASS_KEYS}
    env.update(PATH=SYSTEM_PATH, HOME=opts.python_install_dir, LANG="C.UTF-8", UV_NO_PROGRESS="1",
               UV_PYTHON_INSTALL_DIR=opts.python_install_dir)
    if opts.python_install_mirror:
        env["UV_PYTHON_INSTALL_MIRROR"] = opts.python_install_mirror
    if opts.python_downloads_json:
        env["UV_PYTHON_DOWNLOADS_JSON_URL"] = opts.python_downloads_json
    return env


def first_and_cause(text: str, code: int) -> str:
    """uv's error and its innermost cause, on one line (the URLs between them are the mirror's)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"exit {code}"
    cause = lines[-1].removeprefix("cause:").strip() if len(lines) > 1 else ""
    return redact(lines[0] + (f": {cause}" if cause else ""))


def install(request: str, opts) -> str | None:
    """Install ``request`` (``3.13``, ``3.12.4`` or ``>=3.12``); None when done, else why not (one line).
    Tried once per boot: a version the source lacks costs one timeout, not one per service."""
    key = (opts.python_install_dir, request)
    with _LOCK:
        if key not in _TRIED:
            _TRIED[key] = _install(request, opts)
        return _TRIED[key]


def _install(request: str, opts) -> str | None:
    folder = Path(opts.python_install_dir)
    uv = uv_binary(opts.uv)
    if uv is None:
        return "no uv binary found (MAESTRO_UV)"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        problem = unsafe_folder(folder.parent)
        if problem:
            return f"MAESTRO_PYTHON_INSTALL_DIR {folder}: {problem}"
        folder.mkdir(exist_ok=True, mode=0o755)
        problem = unsafe_folder(folder)
        if problem:
            return f"MAESTRO_PYTHON_INSTALL_DIR {folder}: {problem}"
        # uv makes its lock file 0666 (for other users' uv); one a service could hold would stall root's.
        fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"MAESTRO_PYTHON_INSTALL_DIR {folder}: {exc.strerror or exc}"
    log.info("installing Python %s from %s (uv python install into %s)", request, source_name(opts), folder)
    started = time.monotonic()
    try:
        proc = subprocess.run(install_argv(uv, request, str(folder)), cwd=folder, env=install_env(opts),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=opts.python_install_timeout, umask=0o022)
    except subprocess.TimeoutExpired:
        return f"uv python install {request} timed out after {opts.python_install_timeout:g}s"
    except OSError as exc:
        return f"cannot run {uv}: {exc.strerror or exc}"
    if proc.returncode != 0:
        return f"uv python install {request} failed: {first_and_cause(proc.stderr or proc.stdout, proc.returncode)}"
    log.info("installed Python %s in %.1fs", request, time.monotonic() - started)
    return None
