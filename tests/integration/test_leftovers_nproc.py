"""ops/leftovers.end_all reaches a uid that runs more processes than root's RLIMIT_NPROC (a container
run with ``--ulimit nproc=N``): real processes of a real uid, a real kill (review16b).

After a setuid the kernel refuses execve (EAGAIN) while the new uid has more processes than the
caller's RLIMIT_NPROC: a killer that dropped with setpriv and then exec'd never ran."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from maestro_runtime.ops import leftovers
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def test_every_process_of_a_uid_over_root_s_nproc_limit_ends():
    uid = next(u for u in iter(lambda: random.randrange(40000, 50000), None) if not leftovers.running_as(u))
    procs = [subprocess.Popen(["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                               "sleep", "300"]) for _ in range(12)]
    try:
        wait_for(lambda: len(leftovers.running_as(uid)) == 12, 10, what="12 processes of the uid")
        code = f"from maestro_runtime.ops import leftovers; print(len(leftovers.end_all({uid}, {uid}, wait=3)))"
        out = subprocess.run(["/usr/bin/prlimit", "--nproc=8", "--", sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=30, check=True)
        assert out.stdout.strip() == "0", out
        for proc in procs:
            assert proc.wait(5) == -9
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
