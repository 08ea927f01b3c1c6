"""A real boot with the sandbox required: bubblewrap, the service's own user, graceful stops."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import http_get, wait_for

pytestmark = pytest.mark.integration

SERVER = """\
import json, os, signal, sys, http.server
here = os.getcwd()
def probe(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return exc.__class__.__name__
seen = {"other": probe(os.environ["OTHER"]), "other_home": probe(os.environ["OTHER_HOME"]),
        "uid": os.getuid(), "pids": len([p for p in os.listdir("/proc") if p.isdigit()])}
try:
    open("/usr/maestro-test", "w")
    seen["usr"] = "writable"
except OSError as exc:
    seen["usr"] = exc.__class__.__name__
with open(os.path.join(here, "data", "seen.json"), "w") as fh:
    json.dump(seen, fh)
def bye(*_):
    open(os.path.join(here, "data", "TERM"), "w").write("graceful")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_sandboxed_services_are_isolated_and_stop_gracefully(maestro):
    names = ("sbx-a", "sbx-b")
    for name in names:
        folder = maestro.preseed(name)
        (folder / "server.py").write_text(SERVER)
        (folder / "data").mkdir()
        (folder / ".maestro-cmd").write_text("python3 server.py")
    home_root = maestro.root / "home"
    yaml = maestro.root / "services.yml"
    yaml.write_text("")
    maestro.env.update(MAESTRO_SANDBOX_MODE="require")
    # Each service is told where the other lives, and must not be able to look.
    (maestro.projects / "sbx-a" / ".maestro-cmd").write_text(
        f"OTHER={maestro.projects / 'sbx-b'} OTHER_HOME={home_root / 'svc_sbx-b'} python3 server.py")
    (maestro.projects / "sbx-b" / ".maestro-cmd").write_text(
        f"OTHER={maestro.projects / 'sbx-a'} OTHER_HOME={home_root / 'svc_sbx-a'} python3 server.py")
    maestro.boot()
    services = maestro.wait_running(names)
    for name in names:
        svc = services[name]
        assert svc["sandbox"]["sandbox"] == "bubblewrap", svc["sandbox"]
        http_get(svc["port"])
        seen_path = maestro.projects / name / "data" / "seen.json"
        seen = json.loads(wait_for(lambda p=seen_path: p.exists() and p.read_text(), 10, what="seen.json"))
        assert seen["other"] in ("FileNotFoundError", "PermissionError"), seen
        assert seen["other_home"] in ("FileNotFoundError", "PermissionError"), seen
        assert seen["uid"] != 0 and seen["usr"] in ("OSError", "PermissionError", "ReadOnlyFileSystemError"), seen
        assert seen["pids"] <= 5, seen  # its own PID namespace
        assert not os.path.exists("/usr/maestro-test")

    maestro.run("remove-service", "sbx-a")
    marker = maestro.projects / "sbx-a" / "data" / "TERM"
    wait_for(marker.exists, 10, what="sbx-a's SIGTERM handler")
    assert maestro.stop(timeout=15) == 0
    assert (maestro.projects / "sbx-b" / "data" / "TERM").read_text() == "graceful", maestro.log()[-3000:]
    leftovers = subprocess.run(["pgrep", "-f", str(maestro.projects)], capture_output=True, text=True)
    assert leftovers.stdout == ""
