"""A project written for Render builds and runs with what Render sets (render-examples/django's
pattern: its build.sh runs collectstatic, whose settings need RENDER), the operator's env on top;
a failing declared step fails the service naming the file, with its last lines.

A real boot of the runtime; the projects are ours, modelled on the platform's samples.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from integration.conftest import http_get as _http_get
from integration.conftest import wait_for

pytestmark = pytest.mark.integration

SERVER = paas.PY_SERVER.format(name="render-app", extra=(
    '" ".join([os.environ.get("RENDER", "-"), os.environ.get("WEB_CONCURRENCY", "-"), '
    'os.environ.get("GREETING", "-"), "secret" if "SECRET_KEY" in os.environ else "no-secret", BUILT])'))
# Like the sample's settings: production paths only on Render, and collectstatic needs them.
GEN = ("import os, sys\n"
       "if os.environ.get('RENDER') != 'true':\n"
       "    sys.exit('ImproperlyConfigured: STATIC_ROOT is not set (RENDER unset)')\n"
       "open('server.py', 'w').write('BUILT = ' + repr('built-' + os.environ['WEB_CONCURRENCY']) + '\\n' + SERVER)\n")
RENDER_YAML = ("services:\n  - type: web\n    name: renderapp\n    env: python\n"
               "    buildCommand: ./build.sh\n    startCommand: python3 server.py\n    envVars:\n"
               "      - key: WEB_CONCURRENCY\n        value: 4\n      - key: GREETING\n        value: from-file\n"
               "      - key: SECRET_KEY\n        generateValue: true\n")


def test_render_project_builds_and_runs_with_renders_environment(maestro):
    src = paas.write(maestro.root / "sources" / "renderapp", {
        "gen.py": f"SERVER = {SERVER!r}\n" + GEN, "build.sh": "#!/bin/sh\nset -e\npython3 gen.py\n",
        "render.yaml": RENDER_YAML})
    (src / "build.sh").chmod(0o755)
    broken = paas.write(maestro.root / "sources" / "broken", {
        "main.py": "print(1)\n",
        "render.yaml": ("services:\n  - type: web\n    name: broken\n"
                        "    buildCommand: 'echo compiling; echo \"boom: RENDER is $RENDER\"; exit 3'\n"
                        "    startCommand: python3 main.py\n")})
    maestro.boot(SERVICES=f"{src}|||renderapp; {broken}|||broken", MAESTRO_ENV_RENDERAPP_GREETING="operator")
    svc = wait_for(lambda: (s := maestro.services().get("renderapp")) and s["status"] in {"RUNNING", "FAILED"}
                   and s, 120, what="renderapp started or failed")
    assert svc["status"] == "RUNNING", (svc.get("error"), maestro.log()[-3000:])
    body = wait_for(lambda: _http_get(svc["port"]), 30, what="an answer")
    assert body == "render-app true 4 operator no-secret built-4\n"
    failed = wait_for(lambda: (s := maestro.services().get("broken")) and s["status"] == "FAILED" and s, 60,
                      what="broken FAILED")
    error = failed["error"]
    assert "build step (render.yaml buildCommand) failed (exit 3)" in error, error
    # The tail, as lines: the step's own output says what went wrong (with Render's RENDER set).
    assert "\ncompiling\nboom: RENDER is true\n" in error, error
    log = maestro.log()
    assert "render.yaml: GREETING, IS_PULL_REQUEST, RENDER, RENDER_SERVICE_NAME, RENDER_SERVICE_TYPE, " \
           "WEB_CONCURRENCY set as Render sets them" in log
    assert "from-file" not in log  # keys only, values never
