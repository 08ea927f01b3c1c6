"""The benchmark harness: every figure measured beside its floor and peers, repeated, median and min-max.

    python3 -m benchmarks            # full: N = 1, 10, 30, 100, 5 runs; updates benchmarks/README.md
    python3 -m benchmarks --quick    # CI: N = 1, 3, 1 run, results/quick.{json,md}

Needs root (real users, real supervisord); runs in a private mount namespace with
a throwaway /etc, and restores the account files after each boot so every boot
creates its users like a fresh container does. Sandbox off, firewall off.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from .common import (
    BIN,
    HEALTHCHECK,
    REPO,
    BareHost,
    Host,
    PortAllocator,
    fresh_file_system,
    isolate_etc,
    restored_accounts,
    silent_resolver,
    wait_ports,
)
from .install import DEFAULT_VENV, SYSTEM_PYTHON, shipped_bin
from .peers import PEERS, PeerHost, available
from .report import DNS_HOSTS, DNS_N, README, Samples, machine, markdown, summarise, update_readme

RESULTS = Path(__file__).resolve().parent / "results"
PREPARED_RE = re.compile(r"prepared (\d+) service\(s\).*\[(\d+\.\d+)s\]")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    mode: str  # "full" or "quick"
    ns: tuple[int, ...]
    runs: int
    runs_large: int  # for N >= 100, where one run takes long
    health_ns: tuple[int, ...]
    list_ns: tuple[int, ...]
    extras_n: int  # remove/deploy/memory are measured on a host of this size
    rebuild_requirements: str
    rebuild_runs: int
    bin_dir: Path = BIN  # the install being timed (see install.py)
    peers: tuple[str, ...] = PEERS  # peer supervisors booted beside the floor (see peers.py)


FULL = Config(mode="full", ns=(1, 10, 30, 100), runs=5, runs_large=5, health_ns=(1, 30, 100), list_ns=(30, 100),
              extras_n=30, rebuild_requirements="flask requests", rebuild_runs=3)
QUICK = Config(mode="quick", ns=(1, 3), runs=1, runs_large=1, health_ns=(1, 3), list_ns=(3,), extras_n=3,
               rebuild_requirements="six", rebuild_runs=1)


# ---------------------------------------------------------------- one boot each


def role_of(cmd: str) -> str:
    """Which part of the runtime a process of the tree is (by its command line)."""
    if "maestro_runtime.engine.parent" in cmd:
        return "parent"  # the entrypoint's PID after its exec: its CPU counts the whole boot
    if "supervisord" in cmd:
        return "supervisord"
    if "maestro-logs" in cmd or "maestro_runtime.engine.log_listener" in cmd:
        return "log_listener"
    if "-m maestro_runtime.control" in cmd:
        return "controller"
    return "services"


def tree_of(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_of(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a process tree so far, split by role: each live process's own
    and that of its reaped children (a service's launch chain, the entrypoint's useradd...)."""
    out: dict[str, float] = {}
    for proc in tree_of(pid):
        try:
            times = proc.cpu_times()
            role = role_of(" ".join(proc.cmdline()))
        except psutil.Error:
            continue
        seconds = times.user + times.system + times.children_user + times.children_system
        out[role] = out.get(role, 0.0) + seconds
        out["total"] = out.get("total", 0.0) + seconds
    return out


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of a process tree, split by role."""
    out: dict[str, float] = {}
    for proc in tree_of(pid):
        try:
            role = role_of(" ".join(proc.cmdline()))
            mem = proc.memory_full_info()
        except psutil.Error:
            continue
        for kind, value in (("rss", mem.rss), ("pss", mem.pss)):
            out[f"{role}_{kind}"] = out.get(f"{role}_{kind}", 0.0) + value / MiB
            out[f"total_{kind}"] = out.get(f"total_{kind}", 0.0) + value / MiB
    return out


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user+sys of the child), exit status, stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode, out


def wait_all_running(host: Host, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    laggards: list = []
    while time.monotonic() < deadline:
        proc = host.cli("list-services", "--json")
        if proc.returncode == 0:
            services = json.loads(proc.stdout)
            laggards = [(s["name"], s["status"], s["error"]) for s in services if s["status"] != "RUNNING"]
            if len(services) >= n and not laggards:
                return
        time.sleep(0.3)
    # Say which and why, so a flaky run can be diagnosed from its output alone.
    raise TimeoutError(f"services never all RUNNING: {laggards[:10]}\n{host.log()[-3000:]}")


def floor_boot(n: int, alloc: PortAllocator, cfg: Config, s: Samples) -> None:
    low, _ = alloc.take(n)
    ports = list(range(low, low + n))
    scratch = Host.create((low, low + n))  # only for the static folders
    dirs = scratch.preseed([f"p{i:03d}" for i in range(n)])
    bare = BareHost.create(dirs, ports, bin_dir=cfg.bin_dir)
    try:
        started = time.monotonic()
        bare.start()
        ready = wait_ports(ports, timeout=60 + n)
        s.add(f"floor_boot_{n}", ready - started)
        s.add(f"floor_cpu_{n}", cpu_of(bare.proc.pid if bare.proc else 0).get("total", 0.0))
        if n == cfg.extras_n:
            time.sleep(1.5)  # past startsecs, like the maestro side
            mem = memory_of(bare.proc.pid if bare.proc else 0)
            for key, value in mem.items():
                s.add(f"floor_mem_{key}", value)
            # Baseline of deploy: a hand-written program file and `supervisorctl update`.
            port = ports[-1] + 1
            conf = bare.root / "conf.d" / "extra.conf"
            python = "/usr/bin/python3"
            conf.write_text(f"[program:extra]\ncommand={python} -m http.server {port} --directory {dirs[0]} "
                            "--bind 0.0.0.0\nstdout_logfile=NONE\nstderr_logfile=NONE\n")
            t0 = time.monotonic()
            bare.ctl("update")
            s.add("floor_deploy", wait_ports([port], timeout=30) - t0)
            # Baseline of remove-service: `supervisorctl stop` + `remove` of one program.
            t0 = time.monotonic()
            bare.ctl("stop", "p0")
            bare.ctl("remove", "p0")
            s.add("floor_remove", time.monotonic() - t0)
    finally:
        bare.destroy()
        scratch.destroy()


def peer_boot(peer: str, n: int, alloc: PortAllocator, cfg: Config, s: Samples) -> None:
    """A peer supervisor with the floor's N commands, until every port answers (peers.py)."""
    low, _ = alloc.take(n)
    ports = list(range(low, low + n))
    host = PeerHost.create(peer, ports)
    try:
        started = time.monotonic()
        proc = host.start()
        s.add(f"{peer}_boot_{n}", wait_ports(ports, timeout=60 + n) - started)
        s.add(f"{peer}_cpu_{n}", cpu_of(proc.pid).get("total", 0.0))
    finally:
        host.destroy()


def maestro_boot(n: int, alloc: PortAllocator, cfg: Config, s: Samples) -> None:
    low, high = alloc.take(n + 2)
    ports = list(range(low, low + n))
    host = Host.create((low, high), bin_dir=cfg.bin_dir)
    host.preseed([f"p{i:03d}" for i in range(n)], ports)
    exec_at: list[float] = []

    def tick() -> None:
        if not exec_at and host.exec_done():
            exec_at.append(time.monotonic())

    try:
        with restored_accounts():
            started = time.monotonic()
            host.start()
            ready = wait_ports(ports, timeout=120 + 2 * n, on_tick=tick)
            s.add(f"maestro_boot_{n}", ready - started)
            for role, seconds in cpu_of(host.proc.pid if host.proc else 0).items():
                s.add(f"maestro_cpu_{n}_{role}", seconds)
            if exec_at:
                s.add(f"maestro_exec_{n}", exec_at[0] - started)
            match = PREPARED_RE.search(host.log())
            if match:
                s.add(f"maestro_provision_{n}", float(match.group(2)))
                if int(match.group(1)) != n:
                    raise RuntimeError(f"prepared {match.group(1)} of {n}:\n{host.log()[-2000:]}")
            if n in cfg.health_ns or n in cfg.list_ns or n == cfg.extras_n:
                wait_all_running(host, n)
                extras(host, n, ports, cfg, s)
    finally:
        host.destroy()


# The image's HEALTHCHECK runs Debian's python3; a pyenv build can start several times slower.
HEALTH_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def extras(host: Host, n: int, ports: list[int], cfg: Config, s: Samples) -> None:
    env = host.env
    if n in cfg.health_ns:
        wall, cpu, code, _ = timed([HEALTH_PYTHON, "-I", "-S", str(HEALTHCHECK)], env)
        if code != 0:
            raise RuntimeError(f"healthcheck failed at N={n}")
        s.add(f"health_wall_{n}", wall)
        s.add(f"health_cpu_{n}", cpu)
        # The reference's way: one curl after another.
        loop = " ".join(str(p) for p in ports)
        wall, cpu, _, _ = timed(["/bin/sh", "-c", f"for p in {loop}; do curl -fsS -o /dev/null "
                                 f"http://127.0.0.1:$p/ || exit 1; done"])
        s.add(f"curl_wall_{n}", wall)
        s.add(f"curl_cpu_{n}", cpu)
    if n in cfg.list_ns:
        wall, cpu, code, out = timed([str(host.bin_dir / "list-services"), "--json"], env)
        assert code == 0 and len(json.loads(out)) == n
        s.add(f"list_wall_{n}", wall)
        s.add(f"list_cpu_{n}", cpu)
        conf = str(Path(env["MAESTRO_RUNTIME_DIR"]) / "supervisord.conf")
        wall, _, _, _ = timed([str(host.bin_dir / "supervisorctl"), "-c", conf, "status"], env)
        s.add(f"supervisorctl_status_{n}", wall)
    if n == cfg.extras_n:
        for key, value in memory_of(host.proc.pid if host.proc else 0).items():
            s.add(f"maestro_mem_{key}", value)
        # deploy of one static project into the running host: until it answers.
        src = host.root / "src-extra"
        src.mkdir()
        (src / "index.html").write_text("<h1>extra</h1>")
        port = ports[-1] + 1
        t0 = time.monotonic()
        proc = host.cli("deploy", "--repo", str(src), "--name", "extra", "--port", str(port), "--yes", "--wait", "0")
        assert proc.returncode == 0, proc.stderr
        s.add("maestro_deploy", wait_ports([port], timeout=30) - t0)
        wall, cpu, code, _ = timed([str(host.bin_dir / "remove-service"), "p000", "--yes"], env)
        assert code == 0
        s.add("maestro_remove", wall)
        s.add("maestro_remove_cpu", cpu)


def dns_case(alloc: PortAllocator, cfg: Config, s: Samples) -> None:
    """remove-service and deploy with the firewall disabled, an allowlist of names and a resolver
    that never answers (glibc's default 5 s x 2 per lookup): no rules are made, so no DNS either."""
    low, high = alloc.take(DNS_N + 2)
    ports = list(range(low, low + DNS_N))
    host = Host.create((low, high), bin_dir=cfg.bin_dir)
    allow = host.root / "sandbox-net-allow"
    allow.write_text("ALLOW_HOST_NETWORK=1\n" + "\n".join(DNS_HOSTS) + "\n")
    allow.chmod(0o644)
    host.extra_env.update(MAESTRO_SANDBOX_NET_POLICY="allow", MAESTRO_SANDBOX_NET_ALLOW_FILE=str(allow))
    host.preseed([f"p{i:03d}" for i in range(DNS_N)], ports)
    try:
        with restored_accounts(), silent_resolver() as queries:
            host.start()
            wait_ports(ports, timeout=120)
            wait_all_running(host, DNS_N)
            src = host.root / "src-extra"
            src.mkdir()
            (src / "index.html").write_text("<h1>extra</h1>")
            port = ports[-1] + 1
            t0 = time.monotonic()
            proc = host.cli("deploy", "--repo", str(src), "--name", "extra", "--port", str(port), "--yes",
                            "--wait", "0")
            assert proc.returncode == 0, proc.stderr
            s.add("dns_deploy", wait_ports([port], timeout=60) - t0)
            wall, _, code, _ = timed([str(host.bin_dir / "remove-service"), "p000", "--yes"], host.env)
            assert code == 0
            s.add("dns_remove", wall)
            s.add("dns_queries", float(len(queries)))
    finally:
        host.destroy()


def rebuild(cfg: Config, s: Samples) -> str:
    script = Path(__file__).resolve().parent / "bench_rebuild.py"
    if not script.exists():
        return "benchmarks/bench_rebuild.py missing"
    out = RESULTS / "rebuild.tmp.json"
    for _ in range(cfg.rebuild_runs):
        proc = subprocess.run([sys.executable, str(script), "--requirements", cfg.rebuild_requirements,
                               "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
        if proc.returncode != 0:
            return f"bench_rebuild.py failed: {proc.stderr.strip()[-300:]}"
        data = json.loads(out.read_text())
        s.add("rebuild_first", data["first_boot_s"])
        s.add("rebuild_second", data["second_boot_s"])
    out.unlink(missing_ok=True)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, one run (for CI)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 5; quick 1)")
    parser.add_argument("--runs-large", type=int, help="runs at N >= 100 (default: --runs)")
    parser.add_argument("--ns", help="comma-separated N list for boot (default 1,10,30,100)")
    parser.add_argument("--no-rebuild", action="store_true", help="skip the pip rebuild figure")
    parser.add_argument("--out", type=Path, help="result prefix (default benchmarks/results/{latest,quick})")
    parser.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md")
    parser.add_argument("--dev-install", action="store_true",
                        help="time the current interpreter's install, not a venv installed as the image does")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"where the timed install lives (default {DEFAULT_VENV})")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"peer supervisors booted beside the floor (default {','.join(PEERS)}; '' for none)")
    parser.add_argument("--boot-only", action="store_true",
                        help="boot figures only (no operator commands, memory, DNS case or rebuild)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks need root (real users, supervisord)", file=sys.stderr)
        return 2
    cfg = QUICK if args.quick else FULL
    if args.runs or args.ns or args.runs_large:
        ns = tuple(int(x) for x in args.ns.split(",")) if args.ns else cfg.ns
        runs = args.runs or cfg.runs
        cfg = replace(cfg, ns=ns, runs=runs, runs_large=args.runs_large or runs,
                      health_ns=tuple(n for n in cfg.health_ns if n in ns) or (ns[0],),
                      list_ns=tuple(n for n in cfg.list_ns if n in ns) or (ns[-1],),
                      extras_n=cfg.extras_n if cfg.extras_n in ns else ns[-1])
    if not args.dev_install and SYSTEM_PYTHON.exists():
        cfg = replace(cfg, bin_dir=shipped_bin(args.venv))
    wanted = tuple(p for p in args.peers.split(",") if p)
    unknown = [p for p in wanted if p not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)} (known: {', '.join(PEERS)})")
    have, missing = available(wanted)
    for line in missing:
        print(f"skipped peer {line}", file=sys.stderr)
    cfg = replace(cfg, peers=have)
    if args.boot_only:
        cfg = replace(cfg, health_ns=(), list_ns=(), extras_n=0, rebuild_runs=0)
    isolate_etc()
    trees = fresh_file_system()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    info = machine(cfg.bin_dir)
    info["trees"] = trees
    started = time.monotonic()
    s = Samples()
    alloc = PortAllocator()
    contenders = [("floor", floor_boot), ("maestro", maestro_boot),
                  *((peer, functools.partial(peer_boot, peer)) for peer in cfg.peers)]
    for n in cfg.ns:
        runs = cfg.runs_large if n >= 100 else cfg.runs
        for run in range(runs):
            # Rotate the order each run so a drift of the machine's load hits every contender alike.
            k = run % len(contenders)
            for _, fn in contenders[k:] + contenders[:k]:
                fn(n, alloc, cfg, s)
            print(f"N={n} run {run + 1}/{runs}: " + ", ".join(
                f"{who} {s.values[f'{who}_boot_{n}'][-1]:.2f}s" for who, _ in contenders), flush=True)
    if not args.boot_only:
        for _ in range(cfg.runs):
            dns_case(alloc, cfg, s)
    note = "" if args.no_rebuild or args.boot_only else rebuild(cfg, s)
    seconds = time.monotonic() - started
    result = summarise(cfg, s)
    result["machine"] = info
    result["wall_seconds"] = round(seconds, 1)
    if note:
        result["notes"] = [note]
    table = markdown(result, info, seconds) + (f"\nNote: {note}\n" if note else "")
    RESULTS.mkdir(exist_ok=True)
    prefix = args.out or RESULTS / (cfg.mode if cfg.mode == "quick" else "latest")
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    prefix.with_suffix(".md").write_text(table)
    if cfg.mode == "full" and not args.no_readme and README.exists():
        update_readme(table)
    print(table)
    return 0
