"""What a build's log costs: one step printing SIZE bytes of lines, through ``run_plan`` (the
project's user, the build's log on disk) against the same command writing to /dev/null as that
user (the floor, measured in the same run, alternating). Root; no sandbox (the log path is the
same behind it).

    python3 -m benchmarks.bench_build_log [--mb 200] [--runs 5]

Runs against whichever ``maestro_runtime`` is on PYTHONPATH (so the same script times another
checkout: ``PYTHONPATH=/other/tree python3 benchmarks/bench_build_log.py``).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from maestro_runtime.sources import buildrun
from maestro_runtime.sources.buildplan import Plan
from maestro_runtime.sources.builds import BuildOptions

# ~100-byte lines, like a compiler's or a bundler's: `yes` is far faster than any build prints.
LINE = "building module " + "x" * 80


def _account(base: Path):
    nobody = pwd.getpwnam("nobody")
    for name in ("home", "cache", "tmp", "venv"):
        (base / name).mkdir(exist_ok=True)
        os.chown(base / name, nobody.pw_uid, nobody.pw_gid)
    return SimpleNamespace(user="nobody", uid=nobody.pw_uid, gid=nobody.pw_gid, home=base / "home",
                           cache_dir=base / "cache", tmp_dir=base / "tmp", venv_dir=base / "venv")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    base = Path(tempfile.mkdtemp(prefix="maestro-bench-log-"))
    base.chmod(0o755)
    try:
        account = _account(base)
        opts = BuildOptions(log_dir=base / "builds")
        opts.log_dir.mkdir(mode=0o700)
        command = f"yes '{LINE}' | head -c {size}"
        floor_argv = [*buildrun.drop_privileges_argv(account.uid, account.gid), "/bin/sh", "-c", command]
        plan = Plan("bench", (), (("/bin/sh", "-c", command),), base / "venv" / "stamp", ())
        floor, logged, sizes = [], [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(floor_argv, stdout=subprocess.DEVNULL, cwd=base, check=True)
            floor.append(time.perf_counter() - started)
            log = opts.log_dir / "bench.build.log"
            log.write_text("")
            started = time.perf_counter()
            buildrun.run_plan(plan, base, account, None, opts, log)
            logged.append(time.perf_counter() - started)
            sizes.append(log.stat().st_size)
        ratios = [b / a for a, b in zip(floor, logged, strict=True)]
        print(f"{args.mb} MB of output, {args.runs} runs, load {Path('/proc/loadavg').read_text().split()[:3]}")
        print(f"  /dev/null       median {statistics.median(floor):.3f}s ({min(floor):.3f}-{max(floor):.3f})")
        print(f"  the build's log median {statistics.median(logged):.3f}s ({min(logged):.3f}-{max(logged):.3f}), "
              f"{args.mb / statistics.median(logged):.0f} MB/s; log on disk {max(sizes)} bytes")
        print(f"  ratio log / floor: median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
