"""A project's render.yaml whose envVars share one big value through YAML aliases (`value: *s`):
150 KB of file, 200 MB of environment. Root copied it into the service's record (a 200 MB file every
list-services and HEALTHCHECK then parsed), its launch files and its own memory (the boot peaked
at 1.5 GB; a 4 MB file goes past any container's memory), for a process execve could never start.
The service now fails alone, in one line naming its environment; the others run.
Real boot, real supervisord, real useradd."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def _peak_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def test_an_aliased_render_yaml_environment_fails_its_service_alone(maestro):
    bomb = maestro.preseed("bomb")
    lines = ["services:", "  - type: web", "    name: web", "    startCommand: python3 -m http.server $PORT",
             "    envVars:", "      - key: K0", f"        value: &s {'x' * 100_000}"]
    lines += [f"      - {{key: K{i}, value: *s}}" for i in range(1, 2000)]
    (bomb / "render.yaml").write_text("\n".join(lines) + "\n")
    maestro.preseed("victim")
    maestro.boot(wait=False)
    peak, deadline = 0, time.monotonic() + 90
    while time.monotonic() < deadline and not (maestro.root / "state" / "services" / "bomb.json").exists():
        peak = max(peak, _peak_kib(maestro.proc.pid))
        time.sleep(0.2)
    rows = wait_for(lambda: (r := maestro.wait_running(["victim"]))["bomb"]["status"] != "PROVISIONING" and r, 90,
                    what="bomb provisioned")
    peak = max(peak, _peak_kib(maestro.proc.pid))
    assert (maestro.root / "state" / "services" / "bomb.json").stat().st_size < 64 * 1024
    assert rows["bomb"]["status"] == "FAILED", rows["bomb"]
    assert " variables of " in rows["bomb"]["error"] and "at most 2 MiB" in rows["bomb"]["error"]
    assert peak < 400 * 1024, f"the boot peaked at {peak // 1024} MiB"
