"""The real image under podman (or docker): built once per session, containers always removed.

Containers use ``--network=host`` so they reach the archive fixture server on
127.0.0.1 and the tests reach their services on 127.0.0.1; each container gets
its own random port range. When no engine is usable the tests are skipped,
except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.archives import project_entries, tar_bytes
from tests.fixtures.httpserver import FixtureServer
from tests.integration.conftest import ServiceQueries, wait_for

REPO = Path(__file__).resolve().parents[2]
NODE_FIXTURES = REPO / "tests" / "fixtures" / "node"
TEST_IMAGE = os.environ.get("MAESTRO_TEST_IMAGE", "localhost/maestro-runtime:image-test")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
HEALTHCHECK = ["/usr/bin/python3", "-I", "-S", "/opt/maestro/healthcheck/healthcheck.py"]
HARDENED = [
    "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "512",
    "--memory", "1g", "--cpus", "1.0", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m",
]  # = README's hardened command = the Makefile's HARDENED (test_hardened_state checks it)
USER_CAPS = ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL"]

# The fixture service: serves its folder, writes /markers/<service> on SIGTERM,
# and exits at once while a file named `broken` sits next to it (to make it FATAL).
FIXTURE_SERVER = """\
import http.server, os, signal, sys

def bye(*_):
    try:
        with open(os.path.join("/markers", os.environ["MAESTRO_SERVICE"]), "w") as f:
            f.write("TERM")
    except OSError:
        pass
    sys.exit(0)

signal.signal(signal.SIGTERM, bye)
if os.path.exists("broken"):
    sys.exit(3)

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Quiet).serve_forever()
"""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/image" in str(item.fspath):
            item.add_marker(pytest.mark.image)


def http_get(port: int, path: str = "/", timeout: float = 3.0) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.status, response.read().decode(errors="replace")


def detect_engine() -> str | None:
    name = os.environ.get("CONTAINER_ENGINE")
    if name:
        return name if shutil.which(name) else None
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    return "podman" if shutil.which("podman") else None


@dataclass
class Engine:
    name: str
    env: dict[str, str]

    @property
    def is_podman(self) -> bool:
        return os.path.basename(self.name) == "podman"

    def __call__(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 180):
        proc = subprocess.run([self.name, *args], env=self.env, input=input, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
        return proc

    def remove(self, name: str) -> None:
        # One name per call: `podman rm -f A B` removes nothing when one is missing.
        self("rm", "-f", "-v", *(["-t", "0"] if self.is_podman else []), name, check=False)


@dataclass
class Container(ServiceQueries):
    engine: Engine
    name: str
    low: int  # first port of its range
    markers: Path
    projects: Path | None = None
    extra: list[str] = field(default_factory=list)

    def exec(self, *args: str, check: bool = True, input: str | None = None, interactive: bool = False):
        flags = ["-i"] if interactive or input is not None else []
        return self.engine("exec", *flags, self.name, *args, check=check, input=input)

    def list_json(self) -> str:
        return self.exec("list-services", "--json").stdout

    def wait_running(self, names, timeout: float = 90.0) -> dict[str, dict]:
        return super().wait_running(names, timeout)

    def healthcheck(self) -> subprocess.CompletedProcess:
        if self.engine.is_podman:
            return self.engine("healthcheck", "run", self.name, check=False)
        return self.exec(*HEALTHCHECK, check=False)

    def health_status(self) -> str:
        return self.engine("inspect", "-f", "{{.State.Health.Status}}", self.name).stdout.strip()

    def logs(self) -> str:
        proc = self.engine("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def state(self) -> dict:
        return json.loads(self.engine("inspect", self.name).stdout)[0]["State"]


@pytest.fixture(scope="session")
def engine() -> Engine:
    name = detect_engine()
    if name is None:
        message = "no container engine (podman or a docker daemon): run scripts/ensure-engine.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ)
    if os.path.basename(name) == "podman":
        env.setdefault("CONTAINERS_CONF", str(REPO / "config" / "containers.conf"))
        os.environ.setdefault("CONTAINERS_CONF", env["CONTAINERS_CONF"])  # testinfra's podman backend
    eng = Engine(name, env)
    if eng("info", check=False).returncode != 0:
        message = f"'{name} info' fails: the container engine is not usable"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return eng


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """Build once per session (the layer cache makes a rebuild take seconds); reuse with MAESTRO_TEST_IMAGE_REUSE=1."""
    reuse = os.environ.get("MAESTRO_TEST_IMAGE_REUSE") == "1"
    if not (reuse and engine("image", "inspect", TEST_IMAGE, check=False).returncode == 0):
        start = time.monotonic()
        proc = subprocess.run([str(REPO / "scripts" / "build-image.sh")],
                              env={**engine.env, "CONTAINER_ENGINE": engine.name, "IMAGE": TEST_IMAGE},
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            pytest.fail(f"image build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        print(f"image {TEST_IMAGE} built in {time.monotonic() - start:.1f}s")
    return TEST_IMAGE


@pytest.fixture(scope="session")
def archive_server():
    entries = project_entries("fixture-1.0", {"server.py": FIXTURE_SERVER, "index.html": "<h1>fixture</h1>\n"})
    with FixtureServer() as server:
        server.add("/fixture.tar.gz", tar_bytes(entries))
        for app in sorted(NODE_FIXTURES.iterdir()):  # /pnpm-app.tar.gz, /yarn-app.tar.gz
            files = {f.name: f.read_text() for f in sorted(app.iterdir())}
            server.add(f"/{app.name}.tar.gz", tar_bytes(project_entries(app.name, files)))
        yield server


@pytest.fixture(scope="session")
def corepack_env() -> dict[str, str]:
    """Environment for containers that build pnpm/yarn projects. corepack checks the npm
    registry's signature of the pnpm or yarn it fetches; where the registry is a mirror that
    serves no signatures (as on our CI machines), it can check none, so it is told not to."""
    url = "https://registry.npmjs.org/pnpm/9.15.9"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            signed = bool(json.load(response).get("dist", {}).get("signatures"))
    except (OSError, ValueError) as exc:
        pytest.fail(f"the npm registry is needed for the corepack tests: {url}: {exc}")
    return {} if signed else {"COREPACK_INTEGRITY_KEYS": "0"}


@pytest.fixture(scope="session")
def fixture_url(archive_server) -> str:
    return archive_server.url("/fixture.tar.gz")


def preseeded_examples(root: Path) -> Path:
    """A copy of examples/ without the fixed ports (containers share the host network)."""
    projects = root / "projects"
    for name in ("python-api", "node-app", "static-site"):
        shutil.copytree(REPO / "examples" / name, projects / name)
        (projects / name / ".maestro-port").unlink(missing_ok=True)
    projects.chmod(0o755)
    return projects


class Launcher:
    """start(*run_flags, env={...}, projects=True) -> a running Container; close() removes them all."""

    def __init__(self, engine: Engine, image: str):
        self.engine, self.image = engine, image
        self.created: list[Container] = []
        self.roots: list[Path] = []

    def start(self, *flags: str, env: dict[str, str] | None = None, projects: bool = True,
              wait: bool = True) -> Container:
        engine = self.engine
        root = Path(tempfile.mkdtemp(prefix="maestro-image-"))
        root.chmod(0o755)
        self.roots.append(root)
        markers = root / "markers"
        markers.mkdir()
        markers.chmod(0o777)
        low = random.randrange(10000, 32000, 100)  # below the ephemeral port range
        name = f"maestro-test-{uuid.uuid4().hex[:10]}"
        container = Container(engine, name, low, markers)
        mounts = ["-v", f"{markers}:/markers"]
        if projects:
            container.projects = preseeded_examples(root)
            mounts += ["-v", f"{container.projects}:/opt/projects"]
        environment = {
            "MAESTRO_PORT_RANGE": f"{low}-{low + 99}",
            "MAESTRO_FIREWALL_DISABLE": "1",  # host network: never touch the host's iptables
            **(env or {}),
        }
        env_flags = [x for k, v in environment.items() for x in ("-e", f"{k}={v}")]
        self.created.append(container)
        engine("run", "-d", "--name", name, "--network=host", *mounts, *env_flags, *flags, self.image)
        if wait:
            wait_for(lambda: container.exec("list-services", "--json", check=False).returncode == 0
                     and not container.exec("list-services", "--json").stderr.strip(),
                     60, what=f"supervisord in {name}")
        return container

    def close(self) -> None:
        for container in self.created:
            self.engine.remove(container.name)
        for root in self.roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_container(engine: Engine, image: str):
    launcher = Launcher(engine, image)
    yield launcher.start
    launcher.close()


@pytest.fixture(scope="module")
def module_launcher(engine: Engine, image: str):
    launcher = Launcher(engine, image)
    yield launcher
    launcher.close()
