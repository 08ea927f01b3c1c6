"""A real maestro-runtime on this machine: real useradd, real supervisord, real HTTP.

Every path is relocated under a fresh folder; /etc is a throwaway copy (see
tests/conftest.py). Requires root.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from fixtures.host import leftovers

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (real users and supervisord)")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


def http_get(port: int, path: str = "/", timeout: float = 3.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.read().decode()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # keep polling until the deadline; report the last error
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def term_marker_server(marker_dir: Path) -> str:
    """A tiny HTTP service whose SIGTERM handler writes <marker_dir>/<service id>: proof of a graceful stop."""
    return (
        "import os, signal, sys, http.server\n"
        "def bye(*_):\n"
        f"    open('{marker_dir}/' + os.environ['MAESTRO_SERVICE'], 'w').write('TERM')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()\n"
    )


class ServiceQueries:
    """list-services as a dict, and waiting for RUNNING: shared by the host and the image harnesses."""

    def list_json(self) -> str:
        raise NotImplementedError

    def services(self) -> dict[str, dict]:
        return {s["name"]: s for s in json.loads(self.list_json())}

    def wait_running(self, names, timeout: float = 30.0) -> dict[str, dict]:
        def all_running():
            services = self.services()
            return services if all(services.get(n, {}).get("status") == "RUNNING" for n in names) else None

        return wait_for(all_running, timeout, what=f"{sorted(names)} RUNNING")


@dataclass
class Maestro(ServiceQueries):
    root: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "boot.log"

    @property
    def projects(self) -> Path:
        return self.root / "projects"

    def preseed(self, name: str, text: str | None = None, **meta: str) -> Path:
        folder = self.projects / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text(text or f"<h1>{name}</h1>")
        for key, value in meta.items():
            (folder / f".maestro-{key}").write_text(value)
        return folder

    def source(self, name: str, text: str | None = None) -> Path:
        folder = self.root / "sources" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.html").write_text(text or f"<h1>{name}</h1>")
        return folder

    def run(self, *args: str, input: str | None = None, check: bool = True, **extra_env: str):
        proc = subprocess.run(list(args), env={**self.env, **extra_env}, input=input, capture_output=True,
                              text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
        return proc

    def boot(self, wait: bool = True, **extra_env: str) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already booted"
        self.env.update(extra_env)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(["maestro-entrypoint"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: self.socket.exists() and self.run("list-services", "--json", check=False).returncode == 0
                     and not self.run("list-services", "--json").stderr, 60, what="supervisord to answer")

    @property
    def socket(self) -> Path:
        return Path(self.env["MAESTRO_RUNTIME_DIR"]) / "control" / "supervisor.sock"

    def list_json(self) -> str:
        return self.run("list-services", "--json").stdout

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def maestro():
    root = Path(tempfile.mkdtemp(prefix="maestro-it-"))
    root.chmod(0o755)  # service users must be able to traverse to their folders
    # Below the kernel's ephemeral range (32768+), so no outgoing connection can hold our port.
    low = random.randrange(10000, 32000, 100)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SERVICES", "SVC_", "MAESTRO_"))},
        "MAESTRO_STATE_DIR": str(root / "state"),
        "MAESTRO_RUNTIME_DIR": str(root / "run"),
        "SUPERVISOR_CONF_DIR": str(root / "run" / "conf.d"),
        "MAESTRO_HOME_ROOT": str(root / "home"),
        "MAESTRO_PRESEEDED_ROOTS": str(root / "projects"),
        "MAESTRO_PORT_RANGE": f"{low}-{low + 99}",
        "MAESTRO_SANDBOX_MODE": "off",
        "MAESTRO_FIREWALL_DISABLE": "1",
        "ENTRYPOINT_LOG_LEVEL": "info",
    }
    (root / "projects").mkdir()
    instance = Maestro(root, env)
    yield instance
    try:
        instance.stop()
    finally:
        # Nothing of the test may outlive it: a stray service would hold its port and its
        # user id, which the next test's new user gets (seen: userdel refused in a later test).
        stray = leftovers(str(root))
        for proc in stray:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _forget_cgroups(env)
        # The users stay in the throwaway /etc copy; the files go.
        shutil.rmtree(root, ignore_errors=True)
    assert not stray, f"processes outlived the test: {[' '.join(p.info['cmdline'] or ()) for p in stray]}"


def _forget_cgroups(env: dict[str, str]) -> None:
    """Cgroups live outside the test folder: remove the ones this test's services made."""
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.settings import Settings

    provisioner = Provisioner(Settings.from_env(env))
    for record in provisioner.store.all():
        provisioner.policy.forget(record)


@pytest.fixture
def place():
    """A folder a service's user can reach (pytest's tmp_path sits in a root-only 0700 folder)."""
    from tests.integration.workspace_fixtures import reachable_place

    with reachable_place("mtws") as folder:
        yield folder


@pytest.fixture
def user(place):
    """A throwaway system user, its home under ``place``."""
    from tests.integration.workspace_fixtures import system_user

    with system_user(place, "mtws") as account:
        yield account
