"""The memory rlimit fallback (no writable cgroup controller) with a real Node process under the
real prlimit argv the runtime builds.

Issue 12 re-run: with memory 512M as RLIMIT_DATA, render-examples/sveltekit's `vite build` aborted
(exit 134, V8 heap out of memory in a worker isolate) although its peak RSS was 382 MB: RLIMIT_DATA
counts writable memory a process *reserves*, and V8 isolates reserve much more than they touch.
The workload below has that shape: a main isolate and worker isolates that each allocate a large
buffer and touch a tenth of it (resident well under 512M, reserved well over it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maestro_runtime.sandbox import cgroups

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("node") is None, reason="needs node"),
              pytest.mark.skipif(not Path("/usr/bin/prlimit").exists(), reason="needs util-linux prlimit")]

WORKERS = 5
WORKLOAD = r"""
const { Worker, isMainThread } = require('worker_threads');
const MB = 1 << 20;
function work() {
  const b = new Uint8Array(96 * MB);  // reserved: counted by RLIMIT_DATA
  for (let i = 0; i < b.length; i += 40960) b[i] = 1;  // resident: a tenth of it
  return b;
}
const kept = work();
if (isMainThread) {
  let done = 0;
  for (let i = 0; i < WORKERS; i++) {
    const w = new Worker(__filename);
    w.on('error', (e) => { console.error('worker failed:', e.message); process.exit(2); });
    w.on('exit', (c) => { if (c) process.exit(3); if (++done === WORKERS) console.log('built', kept.length); });
  }
} else {
  setTimeout(() => kept[0], 1500);  // all isolates hold their buffers at the same time
}
""".replace("WORKERS", str(WORKERS))
# Runs the command and prints the peak resident set of its process (KiB) on the last line.
PEAK = ("import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")

LIMITS = cgroups.Limits(memory=512 << 20)
NO_CGROUPS = cgroups.Layout()  # what the README's normal `docker run` gets: nothing writable


def run(prefix, tmp_path, *argv) -> tuple[int, int, str]:
    script = tmp_path / "build.js"
    script.write_text(WORKLOAD)
    args = argv or ("node", str(script))
    proc = subprocess.run([sys.executable, "-c", PEAK, *prefix, *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    code, peak_kib = proc.stdout.split()[-2:]
    return int(code), int(peak_kib), proc.stdout + proc.stderr


def test_a_build_gets_no_data_rlimit_and_a_node_build_passes(tmp_path):
    build = cgroups.prepare(NO_CGROUPS, "build-step", LIMITS)  # what sandbox/runner.py runs a build step with
    assert build.enforced["memory"] is None and not any(a.startswith("--data") for a in build.prlimit)
    code, peak, out = run(build.prlimit, tmp_path)
    assert code == 0 and "built" in out, out
    assert peak < 512 << 10, f"the workload is an ordinary one for a 512M limit: peak RSS {peak} KiB"
    # What the same build got before: RLIMIT_DATA at the limit itself.
    old = ("/usr/bin/prlimit", f"--data={LIMITS.memory}", "--")
    code, _, out = run(old, tmp_path)
    assert code != 0, "the workload no longer shows the problem (its reservations fit in RLIMIT_DATA=512M)"


def test_a_service_gets_data_rlimit_at_twice_the_limit_which_still_stops_a_runaway(tmp_path):
    plan = cgroups.plan_groups(NO_CGROUPS, "svc", LIMITS)  # what a service's launch script runs under
    assert plan.enforced["memory"] == "rlimit-data"
    assert f"--data={2 * LIMITS.memory}" in plan.prlimit
    code, _, out = run(plan.prlimit, tmp_path)
    assert code == 0 and "built" in out, out
    # A process that really uses three times its limit is still stopped.
    hog = "b = bytearray(3 * 512 << 20)\nb[::4096] = b'x' * (len(b) // 4096)\nprint('allocated')\n"
    code, _, out = run(plan.prlimit, tmp_path, sys.executable, "-c", hog)
    assert code != 0 and "MemoryError" in out and "allocated" not in out, out
