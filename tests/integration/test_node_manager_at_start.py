"""A yarn project whose platform file says `yarn build` and `yarn start` (render-examples/
nextjs-hello-world's shape): both find the yarn its install used, on a host with no global yarn,
and the service starts with no download (corepack's network is off for services).

A real boot of the runtime; the install reaches the npm registry (as the other Node build tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from integration.conftest import http_get as _http_get
from integration.conftest import wait_for

pytestmark = pytest.mark.integration
END = {"RUNNING", "FAILED", "FATAL", "EXITED", "BACKOFF"}

SERVER = ("const n = require('is-number');\n"
          "const built = require('fs').readFileSync('built.txt', 'utf8').trim();\n"
          "const agent = (process.env.npm_config_user_agent || '').split(' ')[0].split('/')[0];\n"
          "require('http').createServer((q, r) => r.end(['yarn-app', n(5), built, agent,\n"
          "  process.env.COREPACK_ENABLE_NETWORK].join(' ') + '\\n')).listen(process.env.PORT);\n")


def test_yarn_build_and_yarn_start_from_render_yaml(maestro):
    src = paas.write(maestro.root / "sources" / "yarnapp", {
        "package.json": json.dumps({"name": "yarnapp", "version": "1.0.0", "private": True,
                                    "scripts": {"build": "node -e \"require('fs').writeFileSync('built.txt', "
                                                         "'built-by-' + process.env.npm_config_user_agent"
                                                         ".split('/')[0])\"",
                                                "start": "node server.js"},
                                    "dependencies": {"is-number": "7.0.0"}}, indent=2),
        "yarn.lock": paas.YARN_LOCK,
        "server.js": SERVER,
        "render.yaml": ("services:\n  - type: web\n    name: yarnapp\n    env: node\n"
                        "    buildCommand: yarn; yarn build\n    startCommand: yarn start\n"),
    })
    # Tests only: the registry mirror here serves no signatures for corepack to check.
    maestro.boot(SERVICES=f"{src}|||yarnapp", COREPACK_INTEGRITY_KEYS="0")
    svc = wait_for(lambda: (s := maestro.services().get("yarnapp")) and s["status"] in END and s, 240,
                   what="yarnapp started or failed")
    assert svc["status"] == "RUNNING", (svc, maestro.log()[-3000:])
    assert svc["command"] == "yarn start" and svc["command_reason"] == "detected: render.yaml startCommand"
    body = wait_for(lambda: _http_get(svc["port"]), 30, what="an answer")
    assert body == "yarn-app true built-by-yarn yarn 0\n", body
    log = maestro.log()
    assert "yarnapp: build step (render.yaml buildCommand): yarn build" in log
