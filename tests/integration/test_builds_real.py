"""Real dependency builds as a throwaway system user: pip from the package registry, npm from its registry.

The second build must run neither pip nor npm: asserted through the build's
return value, the untouched build log and stamp, and a booby-trapped pip/npm.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.projects import free_port, wait_http, write

from maestro_runtime.engine.launch import SYSTEM_PATH, drop_privileges_argv
from maestro_runtime.ops.accounts import delete_account, ensure_account
from maestro_runtime.settings import Settings
from maestro_runtime.sources import builds
from maestro_runtime.sources.builds import BuildError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates a system user"),
]

PY_MAIN = """\
import http.server, os, six
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"six {six.__version__} as {os.getuid()}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
NODE_MAIN = """\
const ms = require('ms');
require('http').createServer((q, r) => r.end('ms ' + ms(60000) + ' as ' + process.getuid()))
  .listen(process.env.PORT, '127.0.0.1');
"""


class _Settings(SimpleNamespace):
    """Settings read anew from ``environ`` (tests edit it between builds)."""

    build_log_dir = Settings.build_log_dir  # the real one: derived from state_dir

    @property
    def build(self):
        return Settings.from_env(self.environ).build


@pytest.fixture
def world():
    # not under /tmp: the sandbox gives builds a private /tmp, which would hide the project
    base = Path(tempfile.mkdtemp(prefix="maestro-build-it-", dir="/srv"))
    base.chmod(0o755)
    user = f"mbt{uuid.uuid4().hex[:8]}"
    account = ensure_account(user, base / "home")
    project = base / "projects" / "web"
    project.mkdir(parents=True)
    settings = _Settings(environ=dict(os.environ), state_dir=base / "state")
    yield SimpleNamespace(base=base, account=account, project=project, settings=settings)
    delete_account(user)
    shutil.rmtree(base, ignore_errors=True)


def own(world):
    for root, dirs, files in os.walk(world.project):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), world.account.uid, world.account.gid)
    os.chown(world.project, world.account.uid, world.account.gid)


def build(world):
    return builds.build(world.project, world.account, settings=world.settings, policy=None, service_id="web")


def start(world, argv):
    port = free_port()
    env = {"PATH": f"{world.account.venv_dir}/bin:{world.project}/node_modules/.bin:{SYSTEM_PATH}",
           "PORT": str(port), "HOME": str(world.account.home)}
    proc = subprocess.Popen([*drop_privileges_argv(world.account.uid, world.account.gid), *argv],
                            cwd=world.project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        return wait_http(f"http://127.0.0.1:{port}/", proc).text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def booby_trap(world, names):
    """Replace pip/npm where the second build would find them with scripts that fail loudly."""
    trap = world.base / "trap.log"
    for path in names:
        path.parent.mkdir(parents=True, exist_ok=True)
        backup = path.with_name(path.name + ".real")
        if path.exists():
            path.rename(backup)
        path.write_text(f"#!/bin/sh\necho ran >> {trap}\nexit 1\n")
        path.chmod(0o755)
    return trap


def test_python_dependency_into_own_venv_then_skipped(world):
    write(world.project, {"requirements.txt": "six==1.16.0\n", "main.py": PY_MAIN})
    own(world)
    assert build(world) == ["python"]
    venv = world.account.venv_dir
    site = next(venv.glob("lib/python*/site-packages"))
    assert (site / "six.py").is_file()
    assert pwd.getpwuid((site / "six.py").stat().st_uid).pw_name == world.account.user  # built as the user
    env = builds.build_environment(world.project, world.account, builds.BuildOptions())
    assert env["PIP_CACHE_DIR"] == str(world.account.cache_dir / "pip")  # per-project cache in the user's home
    assert start(world, ["python", "main.py"]) == f"six 1.16.0 as {world.account.uid}"

    log = (world.base / "state" / "builds" / "web.build.log")
    log_text, stamp = log.read_text(), venv / builds.STAMP_NAME
    mtime = stamp.stat().st_mtime_ns
    # venv/bin/python is what runs pip: trap it (keeping a copy to restore for the app)
    real = venv / "bin" / "python"
    target = real.resolve()
    real.unlink()
    trap = booby_trap(world, [real])
    try:
        assert build(world) == []
    finally:
        real.unlink()
        real.symlink_to(target)
    assert not trap.exists(), "pip ran on the second boot"
    assert log.read_text() == log_text and stamp.stat().st_mtime_ns == mtime


def test_node_dependency_then_skipped(world):
    package = {"name": "web", "version": "1.0.0", "main": "server.js", "dependencies": {"ms": "2.1.3"},
               "devDependencies": {"left-pad": "1.3.0"}}
    write(world.project, {"package.json": json.dumps(package), "server.js": NODE_MAIN})
    own(world)
    assert build(world) == ["node"]
    assert (world.project / "node_modules" / "ms" / "package.json").is_file()
    assert not (world.project / "node_modules" / "left-pad").exists()  # production deps only
    assert (world.account.cache_dir / "npm").is_dir()
    assert start(world, ["node", "server.js"]) == f"ms 1m as {world.account.uid}"
    stamp = world.project / "node_modules" / builds.STAMP_NAME
    mtime = stamp.stat().st_mtime_ns
    log = world.base / "state" / "builds" / "web.build.log"
    log_text = log.read_text()
    assert "npm install" in log_text
    # npm comes from the system PATH, which a test must not trap: the evidence that it did not run is
    # the build's own answer, the untouched stamp and the untouched log (every command is logged).
    assert build(world) == []
    assert stamp.stat().st_mtime_ns == mtime and log.read_text() == log_text


def test_failed_build_names_the_problem(world):
    write(world.project, {"requirements.txt": "this-package-does-not-exist-maestro==0.0.1\n"})
    own(world)
    with pytest.raises(BuildError) as info:
        build(world)
    message = str(info.value)
    assert "python build failed" in message and "this-package-does-not-exist-maestro" in message
    assert not (world.account.venv_dir / builds.STAMP_NAME).exists()


def test_build_through_the_sandbox_policy_wrapper(world):
    """With the real sandbox policy (whatever mode this host allows), the build still runs as the user."""
    from maestro_runtime.sandbox import policy as sandbox
    from maestro_runtime.settings import Settings

    world.settings.environ.update(
        MAESTRO_STATE_DIR=str(world.base / "state"), MAESTRO_RUNTIME_DIR=str(world.base / "run"),
        MAESTRO_HOME_ROOT=str(world.base / "home"), MAESTRO_PROJECTS_DIR=str(world.base / "projects"),
    )
    policy = sandbox.SandboxPolicy.from_settings(Settings.from_env(world.settings.environ))
    # The sandbox's build network policy may deny the registry: install from a local wheelhouse.
    wheels = world.project / "wheelhouse"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels),
                    "six==1.16.0"], check=True)
    world.settings.environ["PIP_INSTALL_OPTIONS"] = f"--no-index --find-links {wheels}"
    write(world.project, {"requirements.txt": "six==1.16.0\n"})
    own(world)
    built = builds.build(world.project, world.account, settings=world.settings, policy=policy, service_id="web")
    assert built == ["python"]
    six = next(world.account.venv_dir.glob("lib/python*/site-packages/six.py"))
    assert six.stat().st_uid == world.account.uid
    log = (world.base / "state" / "builds" / "web.build.log").read_text()
    assert "sandbox_cli" not in log or "exit 0" in log
