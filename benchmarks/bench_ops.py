"""Operations figures at N services (issue 13): the controller's CPU while it probes every service,
``list-services --json`` with rich status, and the HEALTHCHECK reading the probe states.

    python3 -m benchmarks.bench_ops [--n 100] [--interval 10] [--window 60] [--runs 10] \
        [--installed [--baseline-installed /work/main]]

Root; a relocated host (benchmarks.common.Host) with N pre-seeded static projects,
each probed by HTTP every ``--interval`` seconds. Commands are timed from this
interpreter's install (like ``--dev-install`` of run.py: ~30 ms of start-up more
than the image's wheel install). ``list-services`` of the checkout named by
``--baseline-path`` (e.g. /work/main) is timed on the same host beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .common import HEALTHCHECK, Host, PortAllocator, isolate_etc, restored_accounts, wait_ports
from .install import DEFAULT_VENV, REPO, SYSTEM_PYTHON, shipped_bin


def own_venv(checkout: Path) -> Path:
    """bin/ of a venv per checkout: helpers benchmarking their own trees at once never share one."""
    tag = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:10]
    return shipped_bin(DEFAULT_VENV.with_name(f"venv-{tag}"), repo=checkout)


def controller_process(host: Host) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if "-m maestro_runtime.control" in cmd and proc.environ().get("MAESTRO_STATE_DIR") == str(
                host.root / "state"):
            return proc
    raise RuntimeError("no controller process found")


# CPU seconds of each timed command (its own + supervisord's meanwhile), by command line: on a
# machine shared with other jobs, wall times swing with the load, CPU times far less.
CPU: dict[str, list[float]] = {}
SUPERVISORD: list[psutil.Process] = []


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    times = proc.cpu_times()
    return times.user + times.system


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    server = SUPERVISORD[0] if SUPERVISORD else None
    for _ in range(runs):
        before, server_before = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu(server)
        began = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        out.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        CPU.setdefault(" ".join(argv), []).append(after.ru_utime + after.ru_stime - before.ru_utime
                                                  - before.ru_stime + _cpu(server) - server_before)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{argv[0]} failed: {proc.stderr[-500:]}")
    return out


def ms(values: list[float], argv: list[str] | None = None) -> str:
    text = f"{statistics.median(values) * 1000:.0f} ms ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"
    cpu = CPU.get(" ".join(argv or ()))
    if cpu:
        text += f", CPU {statistics.median(cpu) * 1000:.0f} ms ({min(cpu) * 1000:.0f}-{max(cpu) * 1000:.0f})"
    return text


def cpu_ratio(argv: list[str], peer: list[str]) -> str:
    return f"{statistics.median(CPU[' '.join(argv)]) / statistics.median(CPU[' '.join(peer)]):.2f}"


def supervisord_process(host: Host) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or ()
        if any(part.endswith("supervisord") for part in cmd[:2]) and str(host.root) in " ".join(cmd):
            return proc
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--interval", default="10")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline-path", default="")
    parser.add_argument("--installed", action="store_true",
                        help="also time list-services from a wheel install in a venv of the system python3 "
                             "(benchmarks/install.py), and the HEALTHCHECK with /usr/bin/python3 -I -S, as the "
                             "image runs them")
    parser.add_argument("--baseline-installed", default="",
                        help="a checkout (e.g. /work/main) installed the same way and timed beside, on the same "
                             "host: its list-services and its healthcheck.py (with --installed)")
    args = parser.parse_args()
    isolate_etc()
    low, high = PortAllocator().take(args.n)
    ports = list(range(low, low + args.n))
    with restored_accounts():
        host = Host.create((low, high), MAESTRO_HEALTH_INTERVAL=f"{args.interval}s")
        try:
            host.preseed([f"s{i:03d}" for i in range(args.n)], ports)
            host.start()
            wait_ports(ports, 180)
            time.sleep(15)  # every service probed once (first probe 1 s after its start), samples settled
            controller = controller_process(host)
            before, began = controller.cpu_times(), time.monotonic()
            time.sleep(args.window)
            after, wall = controller.cpu_times(), time.monotonic() - began
            cpu = (after.user + after.system - before.user - before.system) / wall * 100
            env = host.env
            listing = json.loads(subprocess.run(["list-services", "--json"], env=env, capture_output=True,
                                                text=True, timeout=60).stdout)
            healthy = sum(1 for row in listing if row["health"] == "healthy")
            listing_cmd = [str(host.bin_dir / "list-services"), "--json"]
            shipped = [str(own_venv(REPO) / "list-services"), "--json"] if args.installed else None
            peer = Path(args.baseline_installed) if args.baseline_installed and args.installed else None
            peer_ls = [str(own_venv(peer) / "list-services"), "--json"] if peer else None
            image_hc = [str(SYSTEM_PYTHON), "-I", "-S", str(HEALTHCHECK)]
            peer_hc = [str(SYSTEM_PYTHON), "-I", "-S", str(peer / "healthcheck" / "healthcheck.py")] if peer else None
            ls, base, hc, inst, inst_base, hc_img, hc_base = [], [], [], [], [], [], []
            SUPERVISORD[:] = [p for p in (supervisord_process(host),) if p is not None]
            # The installs run as in the image: no PYTHONPATH (a checkout's would shadow the wheel).
            image_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
            for _ in range(args.runs):  # interleaved: a noisy neighbour weighs on all alike
                ls += timed(listing_cmd, env, 1)
                if shipped:
                    inst += timed(shipped, image_env, 1)
                    hc_img += timed(image_hc, image_env, 1)
                if peer_ls and peer_hc:
                    inst_base += timed(peer_ls, image_env, 1)
                    hc_base += timed(peer_hc, image_env, 1)
                if args.baseline_path:
                    base += timed(listing_cmd, {**env, "PYTHONPATH": args.baseline_path}, 1)
                hc += timed([sys.executable, "-I", "-S", str(HEALTHCHECK)], env, 1)
            print(f"N = {args.n}, probe interval {args.interval} s, {healthy} healthy by the controller's probes")
            print(f"controller CPU over {wall:.0f} s: {cpu:.2f}% of one core "
                  f"(RSS {controller.memory_info().rss / 2**20:.1f} MiB)")
            print(f"list-services --json (rich status): {ms(ls, listing_cmd)}")
            if shipped:
                print(f"list-services --json (rich status), installed as the image does: {ms(inst, shipped)}")
            if peer_ls and peer_hc and shipped:
                print(f"list-services --json of {peer}, installed the same way, same host: {ms(inst_base, peer_ls)} "
                      f"(ratio of medians: wall {statistics.median(inst) / statistics.median(inst_base):.2f}, "
                      f"CPU {cpu_ratio(shipped, peer_ls)})")
            if hc_img:
                print(f"HEALTHCHECK wall, /usr/bin/python3 -I -S as the image runs it: {ms(hc_img, image_hc)}")
            if peer_hc:
                print(f"HEALTHCHECK wall of {peer}, same way, same host: {ms(hc_base, peer_hc)} "
                      f"(ratio of medians: wall {statistics.median(hc_img) / statistics.median(hc_base):.2f}, "
                      f"CPU {cpu_ratio(image_hc, peer_hc)})")
            if base:
                print(f"list-services --json of {args.baseline_path} (no rich status), same host: {ms(base)}")
            print(f"HEALTHCHECK wall (reads the probe states): {ms(hc)}")
            print(f"loadavg: {os.getloadavg()}")
            if os.environ.get("BENCH_PROFILE"):  # where list-services spends its time, in this process
                import cProfile
                import pstats

                os.environ.update(env)
                from maestro_runtime.cli import list_services

                profile = cProfile.Profile()
                with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                    profile.runcall(list_services.main, ["--json"], standalone_mode=False)
                pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        finally:
            host.destroy()


if __name__ == "__main__":
    main()
