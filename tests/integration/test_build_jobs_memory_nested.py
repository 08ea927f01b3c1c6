"""Builds at once follow a memory limit set above our own cgroup folder (sandbox/cgroups.py).

cgroups.detect moves the entrypoint and supervisord into ``init`` below the container's folder
(cgroup v2's "no internal processes"); the controller, its tasks and `docker exec`'d commands
run in that folder, which has no limit of its own. A real memory cgroup with a 1 GiB limit and
an unlimited folder below it, a process in that folder loading the settings: one build at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.test_build_jobs_memory import CORES, PRINT_JOBS, _memory_group

pytestmark = pytest.mark.integration


def test_a_limit_above_our_own_cgroup_still_counts():
    folder, limit_file = _memory_group(f"build-jobs-up-{os.getpid()}")
    folder.mkdir()
    leaf = folder / "init"
    try:
        (folder / limit_file).write_text(str(1 << 30))
        leaf.mkdir()

        def enter() -> None:
            (leaf / "cgroup.procs").write_text(str(os.getpid()))

        env = {k: v for k, v in os.environ.items() if k != "MAESTRO_BUILD_JOBS"}
        inside = subprocess.run([sys.executable, "-c", PRINT_JOBS], env=env, preexec_fn=enter,
                                capture_output=True, text=True, check=True)
        assert inside.stdout.strip() == f"{CORES} 1", inside.stderr
    finally:
        if leaf.exists():
            leaf.rmdir()
        folder.rmdir()
