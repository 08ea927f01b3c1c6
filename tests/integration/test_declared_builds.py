"""The build step a project declares for another platform runs as its build (render.yaml
``buildCommand``, railway ``build.buildCommand``, nixpacks ``[phases.build]``): in the project's
folder, as its user, after the dependencies; a reboot with the same code skips it; a failing
one fails the service with the file it came from.

A real boot of the runtime; the projects are ours, modelled on the platforms' samples.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from integration.conftest import http_get as _http_get
from integration.conftest import wait_for

pytestmark = pytest.mark.integration

# The server the build writes: it names who built it (the build step's user and its dependency).
GEN = ("import getpass, sys\n"
       "open('server.py', 'w').write(paas_server.replace('BUILT_BY', getpass.getuser() + ' ' + sys.argv[1]))\n")
SERVER = paas.PY_SERVER.format(name="made-by", extra='"BUILT_BY"')


def generator(tag: str) -> dict[str, str]:
    return {"gen.py": f"paas_server = {SERVER!r}\n" + GEN, "marker": tag}


def http_get(port: int) -> str:
    return wait_for(lambda: _http_get(port), 30, what=f"an answer on port {port}")


def test_declared_build_steps_run_as_the_build(maestro):
    src = maestro.root / "sources"
    render = paas.write(src / "render", {**generator("render"), "render.yaml": (
        "services:\n  - type: worker\n    name: q\n    buildCommand: exit 9\n"
        "  - type: web\n    name: site\n    env: python\n"
        "    buildCommand: pip install --upgrade pip && pip install -r requirements.txt && python3 gen.py render\n"
        "    startCommand: python3 server.py\n")})
    railway = paas.write(src / "railway", {**generator("railway"), "railway.toml": (
        '[build]\nbuildCommand = "python3 gen.py railway"\n[deploy]\nstartCommand = "python3 server.py"\n')})
    nixpacks = paas.write(src / "nixpacks", {**generator("nixpacks"), "nixpacks.toml": (
        '[phases.build]\ncmds = ["python3 gen.py nixpacks"]\n[start]\ncmd = "python3 server.py"\n')})
    # A Node app whose render.yaml build (not scripts.build) makes the server, with a devDependency.
    node = paas.node_build_makes_server(src / "node")
    manifest = json.loads((node / "package.json").read_text())
    manifest["scripts"] = {"start": "node dist/server.js", "build": "exit 7"}  # replaced by the declared step
    (node / "package.json").write_text(json.dumps(manifest, indent=2))
    (node / "render.yaml").write_text("services:\n  - type: web\n    name: n\n"
                                      "    buildCommand: npm ci && node build.js\n")
    broken = paas.write(src / "broken", {"main.py": "print(1)\n", "railway.json": json.dumps(
        {"build": {"buildCommand": "echo compiling; exit 4"}, "deploy": {"startCommand": "python3 main.py"}})})
    # No false success: a Python package with nothing to serve is not served as its own listing.
    pylib = paas.write(src / "pylib", {"pyproject.toml": '[project]\nname = "pylib"\nversion = "0"\n',
                                       "src/pylib/__init__.py": "X = 1\n"})
    specs = {"render": render, "railway": railway, "nixpacks": nixpacks, "node": node, "broken": broken,
             "pylib": pylib}
    maestro.boot(SERVICES="; ".join(f"{path}|||{name}" for name, path in specs.items()))
    services = maestro.wait_running(["render", "railway", "nixpacks", "node"], timeout=240)
    for name in ("render", "railway", "nixpacks"):
        assert http_get(services[name]["port"]) == f"made-by svc_{name} {name}\n"
    assert http_get(services["node"]["port"]) == "built-app made by the build, 1m\n"
    log = maestro.log()
    assert "render: build step (render.yaml buildCommand): python3 gen.py render" in log
    assert "'pip install --upgrade pip' and 'pip install -r requirements.txt' left out" in log
    assert "railway: build step (railway.toml build.buildCommand): python3 gen.py railway" in log
    assert "nixpacks: build step (nixpacks.toml [phases.build] cmds): python3 gen.py nixpacks" in log
    assert "node: build step (render.yaml buildCommand): node build.js" in log
    failed = wait_for(lambda: (s := maestro.services().get("broken")) and s["status"] == "FAILED" and s, 60,
                      what="broken FAILED")
    assert "build step (railway.json build.buildCommand) failed (exit 4)" in failed["error"], failed
    failed = wait_for(lambda: (s := maestro.services().get("pylib")) and s["status"] == "FAILED" and s, 60,
                      what="pylib FAILED")
    assert "a Python project (pyproject.toml) with nothing to serve and no way to start it" in failed["error"]

    # Same code, next boot: no build step runs.
    maestro.stop()
    before = maestro.log()
    maestro.proc = None
    maestro.boot()
    services = maestro.wait_running(["render", "railway", "nixpacks", "node"], timeout=60)
    second = maestro.log()[len(before):]
    for name in ("render", "railway", "nixpacks", "node"):
        assert f"{name}: build step (" in second and f"{name}: build step done" not in second, name
    assert "up to date, skipped" in second
    assert http_get(services["railway"]["port"]) == "made-by svc_railway railway\n"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_declared_build_step_runs_in_the_sandbox(maestro):
    """Like the other build steps: as the project's user inside bubblewrap, which shows it its own
    folder and home, not the rest of the machine (here: a file beside the test's folders)."""
    marker = maestro.root / "visible-outside.txt"
    marker.write_text("x")
    marker.chmod(0o644)
    probe = ("import os, sys\n"
             f"seen = 'sees-outside' if os.path.exists({str(marker)!r}) else 'confined'\n"
             "open('server.py', 'w').write(paas_server.replace('BUILT_BY', f'{os.getuid() != 0} {seen}'))\n")
    src = paas.write(maestro.root / "sources" / "sbx", {
        "gen.py": f"paas_server = {SERVER!r}\n" + probe,
        "railway.json": json.dumps({"build": {"buildCommand": "python3 gen.py"},
                                    "deploy": {"startCommand": "python3 server.py"}})})
    maestro.boot(SERVICES=f"{src}|||sbx", MAESTRO_SANDBOX_MODE="require")
    svc = maestro.wait_running(["sbx"], timeout=120)["sbx"]
    assert svc["sandbox"]["sandbox"] == "bubblewrap", svc["sandbox"]
    assert http_get(svc["port"]) == "made-by True confined\n"
    assert "sbx: build step (railway.json build.buildCommand): python3 gen.py" in maestro.log()
