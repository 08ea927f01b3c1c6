"""A service started from its launch plan (engine/spawn.py) is the service its launch script starts.

Real boot, real supervisord with maestro's plugin, real users. The service reports what it is:
ids, supplementary groups, no_new_privs, folder, whole environment, cgroups, process group. Then
the same program is started again three ways and must report the same: from the plan with a
script body that would fail (so the plan, not the script, ran), from the script alone (no plan
line: what any other supervisord does), and from a plan that does not parse (the script runs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from maestro_runtime.engine.spawn import PLAN_PREFIX
from maestro_runtime.engine.supervisord import Supervisor

from .conftest import http_get, wait_for

pytestmark = pytest.mark.integration

WHO = (
    "import http.server, json, os\n"
    "def report():\n"
    "    status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
    "    return {'ids': [os.getresuid(), os.getresgid()], 'groups': os.getgroups(),\n"
    "            'no_new_privs': status['NoNewPrivs'].strip(), 'cwd': os.getcwd(), 'env': dict(os.environ),\n"
    "            'cgroups': sorted(l.split(':', 2)[2] for l in open('/proc/self/cgroup').read().splitlines()),\n"
    "            'own_group': os.getpgrp() == os.getpid(), 'fds': sorted(os.listdir('/proc/self/fd'))}\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = json.dumps(report()).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)


def _restart(supervisor: Supervisor, port: int) -> dict:
    supervisor.call("supervisor.stopProcess", "who", True)
    supervisor.call("supervisor.startProcess", "who", False)
    return json.loads(wait_for(lambda: _ask(port), 20, 0.1, what="who to answer"))


def _ask(port: int) -> str | None:
    try:
        return http_get(port)
    except OSError:
        return None


def test_the_plan_starts_the_same_service_as_the_script(maestro):
    source = maestro.root / "sources" / "who"
    source.mkdir(parents=True)
    (source / "app.py").write_text(WHO)
    spec = maestro.root / "services.yml"
    spec.write_text(json.dumps({"services": [{"name": "who", "repo": str(source), "cmd": "python3 app.py",
                                              "env": {"GREETING": "hi there; 'quoted' `x` %(ENV_X)s"}}]}))
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec), SECRET_OF_THE_CONTAINER="never seen")
    service = maestro.wait_running(["who"])["who"]
    port = service["port"]
    seen = json.loads(wait_for(lambda: _ask(port), 20, 0.1, what="who to answer"))

    uid, gid = os.stat(service["directory"]).st_uid, os.stat(service["directory"]).st_gid
    assert seen["ids"] == [[uid] * 3, [gid] * 3] and uid != 0
    assert seen["groups"] == [] and seen["no_new_privs"] == "1" and seen["own_group"]
    assert seen["cwd"] == service["directory"]
    assert seen["env"]["GREETING"] == "hi there; 'quoted' `x` %(ENV_X)s" and seen["env"]["PORT"] == str(port)
    assert not any(k.startswith("SUPERVISOR_") for k in seen["env"]) and "SECRET_OF_THE_CONTAINER" not in seen["env"]
    # stdio, its socket, the request's, the listing's own: nothing of supervisord's
    assert seen["fds"] == ["0", "1", "2", "3", "4", "5"]
    memory = Path("/sys/fs/cgroup/memory/maestro/who")
    if memory.is_dir():  # cgroup v1 here; elsewhere the plan's paths are whatever was detected
        assert "/maestro/who" in seen["cgroups"]

    launch = Path(maestro.env["MAESTRO_RUNTIME_DIR"]) / "launch" / "who.sh"
    script = launch.read_text()
    first, plan, *body = script.splitlines(keepends=True)
    assert plan.startswith(PLAN_PREFIX)
    supervisor = Supervisor(maestro.socket)

    # The plan runs, not the script: a body that would fail is never read.
    launch.write_text(first + plan + "exit 99\n")
    assert _restart(supervisor, port) == seen

    # The script alone (no plan line), as any supervisord without the plugin runs it: the same service.
    launch.write_text(first + "".join(body))
    assert _restart(supervisor, port) == seen

    # A plan line that does not parse: the script runs.
    launch.write_text(first + PLAN_PREFIX + "{not json\n" + "".join(body))
    assert _restart(supervisor, port) == seen
