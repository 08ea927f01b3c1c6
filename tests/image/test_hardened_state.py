"""The hardened command as the README gives it (and the original design's, which users copy),
a read-only root with no /run tmpfs (Docker's --read-only), and supervisorctl with no flags."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.fixtures.archives import project_entries, tar_bytes
from tests.fixtures.httpserver import FixtureServer

from .conftest import HARDENED, http_get, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = ("python-api", "node-app", "static-site")
# The original design's hardening command, as users copy it: only /tmp is a tmpfs.
DESIGN_HARDENED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "512",
                   "--memory", "1g", "--cpus", "1.0", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m"]
# A small pure-Python package, pinned: the project installs it from the package registry.
DEPENDENCY = "six==1.16.0"
APP = """\
import http.server, os
import six

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"six {six.__version__}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def readme_hardened_flags() -> list[str]:
    """The flags of the README's hardened `docker run`, from --read-only up to the first volume."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"\*\*Hardened run\*\*.*?```\n(.*?)```", text, re.S)
    assert block, "README has no hardened run block"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    start = words.index("--read-only")
    end = next(i for i, w in enumerate(words) if i > start and w in ("-v", "-p", "-e"))
    return words[start:end]


def makefile_hardened_flags() -> list[str]:
    text = (REPO / "Makefile").read_text()
    match = re.search(r"^HARDENED = (.*?)(?:\n(?!\t))", text, re.S | re.M)
    assert match
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_readme_makefile_and_tests_use_the_same_hardened_command():
    assert readme_hardened_flags() == DESIGN_HARDENED
    assert makefile_hardened_flags() == DESIGN_HARDENED
    assert HARDENED == DESIGN_HARDENED


@pytest.fixture(scope="module")
def dependency_project():
    entries = project_entries("needs-six-1.0", {"app.py": APP, "requirements.txt": DEPENDENCY + "\n"})
    with FixtureServer() as server:
        yield server.add("/needs-six.tar.gz", tar_bytes(entries))


def test_readme_hardened_command_serves_a_project_with_a_dependency(start_container, dependency_project):
    """Verbatim flags from the README (the network is the host's, so pip reaches the registry the
    way the host does; the firewall stays off so the host's iptables are untouched)."""
    container = start_container(*readme_hardened_flags(), env={"SERVICES": f"{dependency_project}|||needs-six"})
    # A failed build shows as soon as its record is written, with its reason.
    built = wait_for(lambda: container.services().get("needs-six"), 180, what="needs-six to be built")
    assert built["status"] != "FAILED", built["error"]
    services = container.wait_running(["needs-six", *EXAMPLES], timeout=120)
    status, body = http_get(services["needs-six"]["port"])
    assert status == 200 and body == "six 1.16.0"
    for name in EXAMPLES:
        assert http_get(services[name]["port"])[0] == 200
    assert "Traceback" not in container.logs()
    container.engine("stop", "-t", "10", container.name)
    assert container.state()["ExitCode"] == 0


@pytest.mark.parametrize("flags", [[], DESIGN_HARDENED], ids=["default-caps", "design-hardened"])
def test_read_only_root_without_a_run_tmpfs_boots_and_serves(engine, start_container, fixture_url, flags):
    """Docker mounts no tmpfs on /run for --read-only; podman does unless told not to."""
    if not engine.is_podman:
        pytest.skip("--read-only-tmpfs is podman's; under Docker plain --read-only is this case")
    container = start_container("--read-only", "--read-only-tmpfs=false", *flags,
                                env={"SERVICES": f"{fixture_url}|||api1"})
    services = container.wait_running([*EXAMPLES, "api1"])
    for name in (*EXAMPLES, "api1"):
        assert http_get(services[name]["port"])[0] == 200
    log = container.logs()
    assert "Traceback" not in log and "Read-only file system" not in log
    assert container.exec("touch", "/run/x", check=False).returncode != 0  # really no /run tmpfs
    assert container.healthcheck().returncode == 0
    status = container.exec("supervisorctl", "status").stdout
    for name in (*EXAMPLES, "api1"):
        assert re.search(rf"^{re.escape(name)}\s+RUNNING", status, re.M), status
    container.engine("stop", "-t", "10", container.name)
    assert container.state()["ExitCode"] == 0


def test_supervisorctl_with_no_flags(start_container):
    container = start_container()
    container.wait_running(list(EXAMPLES))
    names = (*EXAMPLES, "maestro-logs", "maestro-controller")

    def all_running() -> bool:  # the log listener counts as started after its first second
        status = container.exec("supervisorctl", "status").stdout
        return all(re.search(rf"^{re.escape(name)}\s+RUNNING", status, re.M) for name in names)

    wait_for(all_running, timeout=20, what="supervisorctl status: every program RUNNING")
    # The static site logs its start line on stdout; `tail -f` follows the same file.
    tail = container.exec("supervisorctl", "tail", "static-site")
    assert "Serving HTTP" in tail.stdout, tail.stdout + tail.stderr
    follow = container.engine("exec", container.name, "timeout", "3", "supervisorctl", "tail", "-f", "static-site",
                              check=False)
    assert "Serving HTTP" in follow.stdout, follow.stdout + follow.stderr
