"""A Procfile type runs as program <service>-<type>; a service of that name is not replaced by it,
nor does it replace it: whichever comes later fails, both named, and the other keeps running.

A real boot with real supervisord; the projects are ours.
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

# web serves what its worker last wrote: an answer proves the worker runs.
WEB = {"Procfile": "web: python3 main.py\nworker: python3 worker.py\n",
       "worker.py": "import os, time\nwhile True:\n"
                    "    open(os.path.expanduser('~/beat'), 'w').write('beat from web worker')\n    time.sleep(0.5)\n",
       "main.py": paas.PY_SERVER.format(name="web", extra="open(os.path.expanduser('~/beat')).read()")}
OTHER = {"main.py": paas.PY_SERVER.format(name="the service web-worker", extra='"alone"')}


def http_get(port: int, expect: str) -> str:
    def answer():
        text = _http_get(port)
        return text if expect in text else None
    return wait_for(answer, 30, what=f"{expect!r} on port {port}")


def failed(maestro, name: str) -> dict:
    """The failed row (a process type of the same name may be listed too: services() keeps one)."""
    return wait_for(lambda: next((s for s in json.loads(maestro.list_json())
                                  if s.get("name") == name and s["status"] == "FAILED"), None), 60,
                    what=f"{name} FAILED")


@pytest.mark.parametrize("web_first", [True, False], ids=["web-first", "web-worker-first"])
def test_a_service_name_wins_over_another_services_process_type(maestro, web_first):
    """Provisioning runs in parallel: the outcome depends on neither input order nor which build
    ends first. The service keeps its name; the one whose process type would take it fails."""
    web = paas.write(maestro.root / "sources" / "web", WEB)
    other = paas.write(maestro.root / "sources" / "other", OTHER)
    entries = [f"{web}|||web", f"{other}|||web-worker"]
    maestro.boot(SERVICES="; ".join(entries if web_first else reversed(entries)))
    port = maestro.wait_running(["web-worker"], timeout=60)["web-worker"]["port"]
    assert http_get(port, "alone") == "the service web-worker alone\n"
    error = failed(maestro, "web")["error"]
    assert ("processes: process type worker would be program web-worker, which is already service "
            "web-worker: rename one of them") in error, error
    assert "\n" not in error
    assert "python3 main.py" in (Path(maestro.env["MAESTRO_RUNTIME_DIR"]) / "launch" / "web-worker.sh").read_text()
