"""The benchmark report: raw samples summarised (median, min-max), the markdown table, the README block."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from .common import Stat

if TYPE_CHECKING:
    from .run import Config

README = Path(__file__).resolve().parent / "README.md"
PEER_TITLES = {"floor": "bare supervisord", "s6": "s6 (s6-svscan)", "runit": "runit (runsvdir)", "circus": "circus"}
DNS_N = 3
DNS_HOSTS = tuple(f"h{i}.maestro-bench-unresolvable.example" for i in range(4))


@dataclass
class Samples:
    """Raw samples of one figure; summarised at the end."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def stat(self, key: str) -> Stat | None:
        vals = self.values.get(key)
        return Stat.of(vals) if vals else None



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


CPU_ROLES = ("total", "services", "parent", "supervisord", "controller", "log_listener")
ROLE_TITLES = {"services": "services (launch chain + servers)", "parent": "entrypoint (provisioning, useradd)",
               "supervisord": "supervisord", "controller": "controller", "log_listener": "log listener"}


def summarise(cfg: Config, s: Samples) -> dict:
    def st(key: str) -> dict | None:
        stat = s.stat(key)
        return asdict(stat) if stat else None

    def ratio(a: str, b: str) -> float | None:
        sa, sb = s.stat(a), s.stat(b)
        return round(sa.median / sb.median, 3) if sa and sb and sb.median else None

    boot = {}
    for n in cfg.ns:
        # The floor (bare supervisord) is a peer too: "fastest peer" is the fastest of them all.
        medians = {who: stat.median for who in ("floor", *cfg.peers) if (stat := s.stat(f"{who}_boot_{n}"))}
        fastest = min(medians, key=medians.__getitem__) if medians else None
        boot[str(n)] = {
            "maestro": st(f"maestro_boot_{n}"), "floor": st(f"floor_boot_{n}"),
            "ratio": ratio(f"maestro_boot_{n}", f"floor_boot_{n}"),
            "peers": {peer: st(f"{peer}_boot_{n}") for peer in cfg.peers},
            "fastest_peer": fastest,
            "ratio_fastest_peer": ratio(f"maestro_boot_{n}", f"{fastest}_boot_{n}") if fastest else None,
            "entrypoint_exec": st(f"maestro_exec_{n}"), "provision": st(f"maestro_provision_{n}"),
            # CPU seconds of each process tree when its last port answered (run.py cpu_of)
            "cpu": {"maestro": {role: st(f"maestro_cpu_{n}_{role}") for role in CPU_ROLES},
                    **{who: st(f"{who}_cpu_{n}") for who in ("floor", *cfg.peers)}},
        }
    ns = [n for n in cfg.ns if s.stat(f"maestro_boot_{n}")]
    scaling = {}
    if len(ns) >= 2:
        lo, hi = ns[0], ns[-1]
        for who in ("maestro", "floor", *cfg.peers):
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


def cpu_table(result: dict, peers: list[str]) -> list[str]:
    """CPU seconds each contender's process tree had used when its last port answered: the same
    N servers everywhere, so what is left over is each supervisor's own work (less noisy than wall)."""
    rows = [(n, b["cpu"]) for n, b in result["boot"].items() if (b.get("cpu") or {}).get("maestro", {}).get("total")]
    if not rows:
        return []
    roles = [r for r in CPU_ROLES if r != "total"]
    lines = ["", "### CPU until ready (seconds of CPU, every process of the tree)", "",
             "| N | maestro | " + "".join(f"of which {ROLE_TITLES[r]} | " for r in roles) + "floor | "
             + "".join(f"{PEER_TITLES.get(p, p)} | " for p in peers),
             "|---|---|" + "---|" * len(roles) + "---|" + "---|" * len(peers)]
    for n, cpu in rows:
        lines.append(f"| {n} | {_f(cpu['maestro']['total'])} | "
                     + "".join(f"{_f(cpu['maestro'].get(r))} | " for r in roles)
                     + f"{_f(cpu.get('floor'))} | " + "".join(f"{_f(cpu.get(p))} | " for p in peers))
    return lines


def markdown(result: dict, info: dict[str, str], seconds: float) -> str:
    peers = list(result["config"].get("peers") or [])
    lines = [f"Mode: {result['mode']}; median (min-max) of {result['config']['runs']} run(s) "
             f"({result['config']['runs_large']} at N >= 100); harness wall time {seconds / 60:.1f} min.", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
             "### Boot to ready (every port answers HTTP)", "",
             "| N | maestro | bare supervisord (floor) | ratio | "
             + "".join(f"{PEER_TITLES.get(p, p)} | " for p in peers)
             + ("maestro / fastest peer | " if peers else "") + "entrypoint until exec | of which provisioning |",
             "|---|---|---|---|" + "---|" * (len(peers) + bool(peers)) + "---|---|"]
    for n, b in result["boot"].items():
        fastest = b.get("fastest_peer")
        cells = [_f(b["peers"].get(p)) for p in peers]
        if peers:
            cells.append(f"{b['ratio_fastest_peer']} ({PEER_TITLES.get(fastest, fastest)})" if fastest else "-")
        lines.append(f"| {n} | {_f(b['maestro'])} | {_f(b['floor'])} | {b['ratio'] or '-'} | "
                     + "".join(f"{c} | " for c in cells)
                     + f"{_f(b['entrypoint_exec'])} | {_f(b['provision'])} |")
    lines += ["", "ratio: maestro / floor. Every contender runs the same N `python3 -m http.server` commands, "
              "timed by the same poller, in a rotating order each run; maestro creates N users on every boot, "
              "the peers run the commands as root (benchmarks/peers.py)."] if peers else []
    sc = result["scaling"]
    if sc:
        lines += ["", "Scaling (marginal cost per service between the smallest and largest N): "
                  f"maestro {sc.get('maestro_ms_per_service', '-')} ms, floor {sc.get('floor_ms_per_service', '-')} ms"
                  + "".join(f", {p} {sc.get(f'{p}_ms_per_service', '-')} ms" for p in peers) + "."
                  " Boot time / N: " + ", ".join(f"N={k.rsplit('_', 1)[1]}: {v} ms" for k, v in sc.items()
                                                  if k.startswith("maestro_ms_per_service_at_"))]
    lines += cpu_table(result, peers)
    if not result["config"]["extras_n"]:  # --boot-only
        return "\n".join(lines) + "\n"
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


def update_readme(table: str) -> None:
    text = README.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        README.write_text(f"{head}{begin}\n{table}{end}{tail}")
