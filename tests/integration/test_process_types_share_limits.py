"""A service's limits bound the service, whatever number of Procfile process types it declares.
Each type had a cgroup of its own with the whole of the service's limits, so a Procfile of N types
had N times the memory and the pids: 1500 `wN: sleep 1000` lines ran 1500 processes under a
pids_max of 128 (past a container's --pids-limit 512: no other service could fork). The types now
join the service's cgroup. Real boot, real supervisord, real useradd, real cgroups (skipped where
none is writable)."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from tests.integration.conftest import wait_for
from tests.integration.ops_helpers import services_file

pytestmark = pytest.mark.integration

FORKS = "sh -c 'sleep 1000 & sleep 1000 & sleep 1000 & wait'"


def test_process_types_together_stay_within_the_services_pids_limit(maestro):
    spec = services_file(maestro, [{"name": "many", "cmd": "python3 -m http.server $PORT", "pids_max": 12,
                                    "max_restarts": 1, "backoff": {"initial": "100ms"}}])
    # eight types of four processes each: 32 under a pids_max of 12 when each type had its own cgroup
    (maestro.root / "sources" / "many" / "Procfile").write_text("".join(f"w{i}: {FORKS}\n" for i in range(8)))
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    row = maestro.wait_running(["many"])["many"]
    pids = row["sandbox"]["limits"]["pids"]
    if not pids["enforced_by"].startswith("cgroup"):
        pytest.skip(f"no writable pids cgroup here ({pids['enforced_by']})")
    uid = psutil.Process(row["pid"]).uids().real
    rows = wait_for(lambda: (r := json.loads(maestro.run("list-services", "--json").stdout)) and
                    all(x["status"] not in ("STARTING", "NOT_LOADED") for x in r) and r, 30, what="types started")
    time.sleep(2)
    mine = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    assert len(mine) <= 12, (len(mine), sorted(x["name"] + ":" + x["status"] for x in rows))
    assert maestro.services()["many"]["status"] == "RUNNING"
