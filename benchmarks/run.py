"""The benchmark harness: every figure measured beside its floor, repeated, median and min-max.

    python3 -m benchmarks            # full: N = 1, 10, 30, 100, 5 runs; updates benchmarks/README.md
    python3 -m benchmarks --quick    # CI: N = 1, 3, 1 run, results/quick.{json,md}

Needs root (real users, real supervisord); runs in a private mount namespace with
a throwaway /etc, and restores the account files after each boot so every boot
creates its users like a fresh container does. Sandbox off, firewall off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

from .common import (
    BIN,
    HEALTHCHECK,
    REPO,
    BareHost,
    Host,
    PortAllocator,
    Stat,
    isolate_etc,
    restored_accounts,
    silent_resolver,
    wait_ports,
)
from .install import SYSTEM_PYTHON, shipped_bin

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
PREPARED_RE = re.compile(r"prepared (\d+) service\(s\).*\[(\d+\.\d+)s\]")
MiB = 1024 * 1024


@dataclass
class Samples:
    """Raw samples of one figure; summarised at the end."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def stat(self, key: str) -> Stat | None:
        vals = self.values.get(key)
        return Stat.of(vals) if vals else None


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


FULL = Config(mode="full", ns=(1, 10, 30, 100), runs=5, runs_large=5, health_ns=(1, 30, 100), list_ns=(30, 100),
              extras_n=30, rebuild_requirements="flask requests", rebuild_runs=3)
QUICK = Config(mode="quick", ns=(1, 3), runs=1, runs_large=1, health_ns=(1, 3), list_ns=(3,), extras_n=3,
               rebuild_requirements="six", rebuild_runs=1)


# ---------------------------------------------------------------- one boot each


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of a process tree, split by role."""
    out: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            cmd = " ".join(proc.cmdline())
            mem = proc.memory_full_info()
        except psutil.Error:
            continue
        if "maestro_runtime.engine.parent" in cmd:
            role = "parent"
        elif "supervisord" in cmd:
            role = "supervisord"
        elif "maestro-logs" in cmd or "maestro_runtime.engine.log_listener" in cmd:
            role = "log_listener"
        elif "maestro_runtime.control.controller" in cmd:
            role = "controller"
        else:
            role = "services"
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


DNS_HOSTS = tuple(f"h{i}.maestro-bench-unresolvable.example" for i in range(4))
DNS_N = 3


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


# ---------------------------------------------------------------- report


def machine(bin_dir: Path) -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    # Versions as the timed install sees them (it may be another interpreter than this harness).
    versions = subprocess.run(
        [str(bin_dir / "python3"), "-c", "import importlib.metadata as m, platform, sys; "
         "print(platform.python_version(), sys.executable, m.version('supervisor'))"],
        capture_output=True, text=True, check=True).stdout.split()
    return {
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "os": Path("/etc/os-release").read_text().split('PRETTY_NAME="')[1].split('"')[0]
        if Path("/etc/os-release").exists() else "",
        "python": f"{versions[0]} ({versions[1]}); services: /usr/bin/python3",
        "supervisor": versions[2],
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def summarise(cfg: Config, s: Samples) -> dict:
    def st(key: str) -> dict | None:
        stat = s.stat(key)
        return asdict(stat) if stat else None

    def ratio(a: str, b: str) -> float | None:
        sa, sb = s.stat(a), s.stat(b)
        return round(sa.median / sb.median, 3) if sa and sb and sb.median else None

    boot = {}
    for n in cfg.ns:
        boot[str(n)] = {
            "maestro": st(f"maestro_boot_{n}"), "floor": st(f"floor_boot_{n}"),
            "ratio": ratio(f"maestro_boot_{n}", f"floor_boot_{n}"),
            "entrypoint_exec": st(f"maestro_exec_{n}"), "provision": st(f"maestro_provision_{n}"),
        }
    ns = [n for n in cfg.ns if s.stat(f"maestro_boot_{n}")]
    scaling = {}
    if len(ns) >= 2:
        lo, hi = ns[0], ns[-1]
        for who in ("maestro", "floor"):
            a, b = s.stat(f"{who}_boot_{lo}"), s.stat(f"{who}_boot_{hi}")
            if a and b:
                scaling[f"{who}_ms_per_service"] = round((b.median - a.median) / (hi - lo) * 1000, 1)
        for n in ns:
            m = s.stat(f"maestro_boot_{n}")
            scaling[f"maestro_ms_per_service_at_{n}"] = round(m.median / n * 1000, 1) if m else None
    memory = {}
    mem_keys = sorted({k.split("_mem_", 1)[1] for k in s.values if "_mem_" in k})
    for key in mem_keys:
        memory[key] = {"maestro": st(f"maestro_mem_{key}"), "floor": st(f"floor_mem_{key}")}
    added = {}
    for kind in ("rss", "pss"):
        m, f = s.stat(f"maestro_mem_total_{kind}"), s.stat(f"floor_mem_total_{kind}")
        if m and f:
            added[f"added_{kind}_mib_per_service"] = round((m.median - f.median) / cfg.extras_n, 3)
    return {
        "mode": cfg.mode,
        "config": {**asdict(cfg), "bin_dir": str(cfg.bin_dir)},
        "boot": boot,
        "scaling": scaling,
        "healthcheck": {str(n): {"wall": st(f"health_wall_{n}"), "cpu": st(f"health_cpu_{n}"),
                                 "curl_serial_wall": st(f"curl_wall_{n}")} for n in cfg.health_ns},
        "list_services": {str(n): {"wall": st(f"list_wall_{n}"), "cpu": st(f"list_cpu_{n}"),
                                   "supervisorctl_status_wall": st(f"supervisorctl_status_{n}")}
                          for n in cfg.list_ns},
        "remove_service": {"wall": st("maestro_remove"), "cpu": st("maestro_remove_cpu"),
                           "floor_stop_remove": st("floor_remove"), "n": cfg.extras_n},
        "deploy": {"until_answers": st("maestro_deploy"), "floor_update": st("floor_deploy"), "n": cfg.extras_n},
        "unresolvable_allowlist": {"remove": st("dns_remove"), "deploy": st("dns_deploy"),
                                   "dns_queries": st("dns_queries"), "n": DNS_N, "hosts": len(DNS_HOSTS)},
        "rebuild": {"first": st("rebuild_first"), "second": st("rebuild_second"),
                    "requirements": cfg.rebuild_requirements},
        "memory": {"n": cfg.extras_n, "by_role_mib": memory, **added},
        "raw": s.values,
    }


def _f(d: dict | None, scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
    if not d:
        return "-"
    return Stat(**d).fmt(unit, scale, digits)


def markdown(result: dict, info: dict[str, str], seconds: float) -> str:
    lines = [f"Mode: {result['mode']}; median (min-max) of {result['config']['runs']} run(s) "
             f"({result['config']['runs_large']} at N >= 100); harness wall time {seconds / 60:.1f} min.", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
             "### Boot to ready (every port answers HTTP)", "",
             "| N | maestro | bare supervisord (floor) | ratio | entrypoint until exec | of which provisioning |",
             "|---|---|---|---|---|---|"]
    for n, b in result["boot"].items():
        lines.append(f"| {n} | {_f(b['maestro'])} | {_f(b['floor'])} | {b['ratio'] or '-'} | "
                     f"{_f(b['entrypoint_exec'])} | {_f(b['provision'])} |")
    sc = result["scaling"]
    if sc:
        lines += ["", "Scaling (marginal cost per service between the smallest and largest N): "
                  f"maestro {sc.get('maestro_ms_per_service', '-')} ms, floor {sc.get('floor_ms_per_service', '-')} ms."
                  " Boot time / N: " + ", ".join(f"N={k.rsplit('_', 1)[1]}: {v} ms" for k, v in sc.items()
                                                  if k.startswith("maestro_ms_per_service_at_"))]
    lines += ["", "### Operator commands", "", "| figure | maestro | baseline |", "|---|---|---|"]
    for n, h in result["healthcheck"].items():
        lines.append(f"| healthcheck wall, N={n} | {_f(h['wall'], 1000, 'ms', 0)} | "
                     f"{_f(h['curl_serial_wall'], 1000, 'ms', 0)} (serial curl) |")
        lines.append(f"| healthcheck CPU, N={n} | {_f(h['cpu'], 1000, 'ms', 0)} | |")
    for n, li in result["list_services"].items():
        lines.append(f"| list-services --json, N={n} | {_f(li['wall'], 1000, 'ms', 0)} (CPU "
                     f"{_f(li['cpu'], 1000, 'ms', 0)}) | {_f(li['supervisorctl_status_wall'], 1000, 'ms', 0)}"
                     " (supervisorctl status) |")
    r, d = result["remove_service"], result["deploy"]
    lines.append(f"| remove-service, N={r['n']} | {_f(r['wall'], 1000, 'ms', 0)} | "
                 f"{_f(r['floor_stop_remove'], 1000, 'ms', 0)} (supervisorctl stop + remove) |")
    lines.append(f"| deploy until it answers, N={d['n']} | {_f(d['until_answers'], 1000, 'ms', 0)} | "
                 f"{_f(d['floor_update'], 1000, 'ms', 0)} (program file + supervisorctl update) |")
    u = result.get("unresolvable_allowlist") or {}
    if u.get("remove"):
        why = f"firewall off, {u['hosts']} unresolvable allowlist hosts, resolver never answers"
        lines.append(f"| remove-service, N={u['n']}, {why} | {_f(u['remove'], 1000, 'ms', 0)} | goal < 300 ms |")
        lines.append(f"| deploy until it answers, N={u['n']}, same | {_f(u['deploy'], 1000, 'ms', 0)} | "
                     f"DNS queries: {int(u['dns_queries']['high'])} |")
    rb = result["rebuild"]
    lines.append(f"| rebuild: first boot ({rb['requirements']}) | {_f(rb['first'])} | |")
    lines.append(f"| rebuild: second boot (skipped) | {_f(rb['second'], 1000, 'ms', 1)} | |")
    mem = result["memory"]
    lines += ["", f"### Memory at N={mem['n']} (MiB; median)", "", "| process | maestro RSS | maestro PSS | "
              "floor RSS | floor PSS |", "|---|---|---|---|---|"]
    roles = sorted({k.rsplit("_", 1)[0] for k in mem["by_role_mib"]})
    for role in roles:
        cells = []
        for who in ("maestro", "floor"):
            for kind in ("rss", "pss"):
                v = mem["by_role_mib"].get(f"{role}_{kind}", {}).get(who)
                cells.append(f"{v['median']:.1f}" if v else "-")
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    lines += ["", f"Added per service: RSS {mem.get('added_rss_mib_per_service', '-')} MiB, "
              f"PSS {mem.get('added_pss_mib_per_service', '-')} MiB."]
    return "\n".join(lines) + "\n"


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
        cfg = replace(cfg, bin_dir=shipped_bin())
    isolate_etc()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    info = machine(cfg.bin_dir)
    started = time.monotonic()
    s = Samples()
    alloc = PortAllocator()
    for n in cfg.ns:
        runs = cfg.runs_large if n >= 100 else cfg.runs
        for run in range(runs):
            # Alternate the order so a drift of the machine's load hits both sides alike.
            order = (floor_boot, maestro_boot) if run % 2 == 0 else (maestro_boot, floor_boot)
            for fn in order:
                fn(n, alloc, cfg, s)
            b = s.stat(f"maestro_boot_{n}")
            f = s.stat(f"floor_boot_{n}")
            print(f"N={n} run {run + 1}/{runs}: maestro {s.values[f'maestro_boot_{n}'][-1]:.2f}s "
                  f"floor {s.values[f'floor_boot_{n}'][-1]:.2f}s (medians {b.median:.2f}/{f.median:.2f})",
                  flush=True)
    for _ in range(cfg.runs):
        dns_case(alloc, cfg, s)
    note = "" if args.no_rebuild else rebuild(cfg, s)
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


def update_readme(table: str) -> None:
    text = README.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        README.write_text(f"{head}{begin}\n{table}{end}{tail}")
