"""Ten projects with real builds in one boot: does each answer within its own build + start + 2 s?

    python3 -m benchmarks.bench_projects [--sandbox] [--runs N] [--out PREFIX] [--check] [--log-level debug]

The ten fixture projects of ``benchmarks/projects.py`` (Flask, FastAPI, Django, Bottle, Starlette
from PyPI; Express, Fastify, an esbuild-bundled Koa server and a Vite site from npm; one static
site) are local folders named as ``repo:`` in one services file, all booted at once by
``maestro-entrypoint`` with a fresh state (every build downloads its dependencies; users are
created). The poller asks every port for the project's own marker from the moment the entrypoint
is spawned. Per project:

* **build**: from the boot log, the first ``building ... dependencies`` line to the last
  ``build done`` line (absolute end: *build ended*, seconds after the boot began);
* **spawned**: when supervisord started the program (the start time of the process that
  supervisord forked, read from ``/proc`` when the port first answers);
* **start**: answered - spawned (the app's own start-up);
* **answered**: when ``GET /`` first returned the project's own marker.

The check is ``answered <= build ended + start + 2 s`` (a project without a build: ``start + 2 s``
after the boot began): a service starts once it is ready, not after the slowest build.

The whole boot log of a run where a project failed or never answered is kept as
``PREFIX-failed-<UTC time>.log`` (path printed), so a rare failure can be read afterwards;
``--log-level debug`` makes it hold an internal error's traceback.

Runs the checkout this module is imported from (``PYTHONPATH``), installed as the image installs
it (``benchmarks/install.py``; ``--dev-install`` runs the current interpreter's install). Root, a
private mount namespace with a throwaway /etc, firewall off; sandbox off unless ``--sandbox``
(then ``MAESTRO_SANDBOX_MODE=require`` and an egress allowlist of the package registries).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from .common import BIN, Host, PortAllocator, isolate_etc, port_open, restored_accounts
from .install import DEFAULT_VENV, SYSTEM_PYTHON, shipped_bin
from .projects import PROJECTS, Project, write_project

RESULTS = Path(__file__).resolve().parent / "results"
SLACK = 2.0
REGISTRIES = ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org")
LINE_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \[maestro\]\[\w+\] (.*)$")
BUILDING_RE = re.compile(r"^service (\S+): building (\w+) dependencies")
BUILT_RE = re.compile(r"^service (\S+): (\w+) build done in (\d+\.\d+)s")


# ---------------------------------------------------------------- pure parts


def log_events(text: str) -> list[tuple[float, str]]:
    """(epoch seconds, message) of every time-stamped runtime line of a boot log."""
    out = []
    for line in text.splitlines():
        match = LINE_RE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
            out.append((when.timestamp(), match.group(2)))
    return out


def build_windows(events: list[tuple[float, str]]) -> dict[str, dict[str, float]]:
    """Per service: first build start, last build end (epoch) and the summed build durations."""
    out: dict[str, dict[str, float]] = {}
    for when, message in events:
        if match := BUILDING_RE.match(message):
            out.setdefault(match.group(1), {}).setdefault("start", when)
        elif match := BUILT_RE.match(message):
            entry = out.setdefault(match.group(1), {})
            entry["end"] = when
            entry["seconds"] = entry.get("seconds", 0.0) + float(match.group(3))
    return out


def verdict(answered: float | None, build_end: float | None, start: float | None) -> tuple[float | None, bool]:
    """The limit (seconds after the boot began) and whether the project answered within it."""
    if answered is None or start is None:
        return None, False
    limit = (build_end or 0.0) + start + SLACK
    return limit, answered <= limit


# ---------------------------------------------------------------- the boot


def own_content(port: int, marker: str) -> bool:
    if not port_open(port):
        return False
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        body = conn.getresponse().read(65536).decode(errors="replace")
        conn.close()
        return marker in body
    except (OSError, http.client.HTTPException):
        return False


def started_at(pid: int) -> float:
    """A process's start on CLOCK_BOOTTIME (field 22 of /proc/PID/stat, in clock ticks). psutil's
    create_time adds the boot time, which /proc/stat gives in whole seconds: up to 1 s off."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")


def spawn_time(port: int) -> float | None:
    """Start (CLOCK_BOOTTIME) of the process supervisord forked for whatever listens on ``port``."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                proc = psutil.Process(conn.pid)
                while (parent := proc.parent()) is not None:
                    if any("supervisord" in part for part in parent.cmdline()[:2]):
                        return started_at(proc.pid)
                    proc = parent
    return None


def free_range(count: int) -> tuple[int, int]:
    """A port range nothing listens on now (the machine may be shared with other test runs)."""
    alloc = PortAllocator()
    while True:
        low, high = alloc.take(count)
        if not any(port_open(port) for port in range(low, high + 1)):
            return low, high


def ended(host: Host) -> dict[str, tuple[str, str]]:
    """Status and error of every service that will not answer any more. Only these two: EXITED or
    STOPPED may be a moment before the controller's restart, or before an early start."""
    proc = host.cli("list-services", "--json", timeout=60)
    if proc.returncode != 0:
        return {}
    return {s["name"]: (s["status"], s.get("error") or "") for s in json.loads(proc.stdout)
            if s["status"] in ("FATAL", "FAILED")}


def boot_once(projects: tuple[Project, ...], bin_dir: Path, sandbox: bool, timeout: float,
              log_level: str = "info", keep_prefix: Path = RESULTS / "projects") -> dict:
    low, high = free_range(len(projects) + 2)
    began = time.time()
    host = Host.create((low, high), bin_dir=bin_dir, ENTRYPOINT_LOG_LEVEL=log_level)
    ports = {p.name: low + i for i, p in enumerate(projects)}
    entries = []
    for project in projects:
        folder = write_project(project, host.root / "src" / project.name)
        entries.append({"repo": str(folder), "name": project.name, "port": ports[project.name]})
    (host.root / "src").chmod(0o755)
    services = host.root / "services.yml"
    services.write_text(json.dumps({"services": entries}, indent=1) + "\n")  # JSON is YAML
    host.extra_env["MAESTRO_SERVICES_FILE"] = str(services)
    if sandbox:
        allow = host.root / "sandbox-net-allow"
        allow.write_text("ALLOW_HOST_NETWORK=1\n" + "\n".join(REGISTRIES) + "\n")
        allow.chmod(0o644)
        host.extra_env.update(MAESTRO_SANDBOX_MODE="require", MAESTRO_SANDBOX_NET_POLICY="allow",
                              MAESTRO_SANDBOX_NET_ALLOW_FILE=str(allow))
    answered: dict[str, float] = {}
    spawned: dict[str, float] = {}
    try:
        with restored_accounts():
            began, began_boot = time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)
            host.start()
            deadline = time.monotonic() + timeout
            next_status, gone = time.monotonic() + 5, {}
            while len(answered) + len(gone) < len(projects) and time.monotonic() < deadline:
                if (answered or host.exec_done()) and time.monotonic() > next_status:  # ask who gave up
                    gone = {name: v for name, v in ended(host).items() if name not in answered}
                    next_status = time.monotonic() + 5
                for project in projects:
                    if project.name not in answered and own_content(ports[project.name], project.marker):
                        answered[project.name] = time.time()
                        if (at := spawn_time(ports[project.name])) is not None:
                            spawned[project.name] = began + (at - began_boot)  # as epoch, like the rest
                if host.proc and host.proc.poll() is not None:
                    break  # the entrypoint (or its parent) ended: nothing more will answer
                time.sleep(0.05)
            status = {}
            proc = host.cli("list-services", "--json", timeout=60)
            if proc.returncode == 0:
                status = {s["name"]: (s["status"], s.get("error") or "") for s in json.loads(proc.stdout)}
            log = host.log()
    except BaseException:  # the harness itself failed (a CLI timeout, ^C): the boot log survives it
        if host.log():
            print(f"boot log kept in {keep_log({'log': host.log()}, keep_prefix, began)}", file=sys.stderr)
        raise
    finally:
        host.destroy()
    return report(projects, began, answered, spawned, log_events(log), status, sandbox, log)


def report(projects: tuple[Project, ...], began: float, answered: dict[str, float], spawned: dict[str, float],
           events: list[tuple[float, str]], status: dict, sandbox: bool, log: str) -> dict:
    windows = build_windows(events)
    prepared = next((when - began for when, message in events if message.startswith("prepared ")), None)
    rows = []
    for project in projects:
        win = windows.get(project.name, {})
        build_end = win["end"] - began if "end" in win else None
        answer = answered[project.name] - began if project.name in answered else None
        spawn = spawned[project.name] - began if project.name in spawned else None
        start = answer - spawn if answer is not None and spawn is not None else None
        limit, ok = verdict(answer, build_end, start)
        error = status.get(project.name, ("", ""))[1][:300]
        if project.kind != "static" and build_end is None:  # a renamed log line must not pass for "no build"
            limit, ok = None, False
            error = error or "no 'build done' line for it in the boot log"
        rows.append({
            "project": project.name, "kind": project.kind,
            "build_s": win.get("seconds"), "build_began": win["start"] - began if "start" in win else None,
            "build_ended": build_end, "spawned": spawn, "start_s": start, "answered": answer,
            "limit": limit, "within": ok, "status": status.get(project.name, ("?", ""))[0],
            "error": error,
        })
    tail = "" if all(r["answered"] is not None for r in rows) else log[-4000:]
    return {"sandbox": sandbox, "prepared_at": prepared, "rows": rows, "log_tail": tail,
            "failed": failed(rows), "log": log}


def failed(rows: list[dict]) -> bool:
    """A run whose boot log is worth keeping: a project never answered, or one failed (a status
    error), even if it answered later (a previous version, a restart)."""
    return any(r["answered"] is None or r["error"] or r["status"] in ("FATAL", "FAILED") for r in rows)


def keep_log(run: dict, prefix: Path, when: float) -> Path:
    """The whole boot log of a failed run, beside the results (never overwritten: time-stamped)."""
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = prefix.with_name(f"{prefix.name}-failed-{stamp}.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run["log"])
    return path


# ---------------------------------------------------------------- output


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(runs: list[dict], load: str) -> str:
    lines = [f"Ten projects, one boot; sandbox {'on' if runs[0]['sandbox'] else 'off'}; {len(runs)} run(s); "
             f"loadavg at start {load}. Times in seconds after the entrypoint was spawned; "
             f"limit = build ended + start + {SLACK:.0f} s.", ""]
    for i, run in enumerate(runs, 1):
        rows = run["rows"]
        within = sum(r["within"] for r in rows)
        ends = [r["build_ended"] for r in rows if r["build_ended"] is not None]
        lines += [f"### Run {i}: {within}/{len(rows)} within their own build + start + {SLACK:.0f} s", "",
                  f"Every program added by then (`prepared` line): {_s(run['prepared_at'])} s; "
                  f"last build ended {_s(max(ends) if ends else None)} s.", "",
                  "| project | kind | build | build began | build ended | spawned | start | answered | limit | ok |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ok = "yes" if r["within"] else ("NO" if r["answered"] is not None else f"NO ({r['status']})")
            lines.append(f"| {r['project']} | {r['kind']} | {_s(r['build_s'])} | {_s(r['build_began'])} | "
                         f"{_s(r['build_ended'])} | {_s(r['spawned'])} | {_s(r['start_s'])} | "
                         f"{_s(r['answered'])} | {_s(r['limit'])} | {ok} |")
        for r in rows:
            if r["error"]:
                lines.append(f"\n{r['project']}: {r['status']}: {r['error']}")
        lines.append("")
    if len(runs) > 1:
        lines += ["### Medians over runs", "", "| project | build | build ended | start | answered | within |",
                  "|---|---|---|---|---|---|"]
        for k, project in enumerate(runs[0]["rows"]):
            def med(key: str, k: int = k) -> float | None:
                vals = [run["rows"][k][key] for run in runs if run["rows"][k][key] is not None]
                return statistics.median(vals) if vals else None
            within = sum(run["rows"][k]["within"] for run in runs)
            lines.append(f"| {project['project']} | {_s(med('build_s'))} | {_s(med('build_ended'))} | "
                         f"{_s(med('start_s'))} | {_s(med('answered'))} | {within}/{len(runs)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.bench_projects", description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", action="store_true", help="builds and services in the sandbox (default off)")
    parser.add_argument("--runs", type=int, default=1, help="boots, one after another (default 1)")
    parser.add_argument("--only", help="comma-separated project names (default: all ten)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every project (default 900)")
    parser.add_argument("--out", type=Path, default=RESULTS / "projects", help="result prefix (.json, .md)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every project answered within its limit")
    parser.add_argument("--dev-install", action="store_true", help="run the current interpreter's install")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the timed install (default {DEFAULT_VENV})")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"),
                        help="ENTRYPOINT_LOG_LEVEL of the boots (debug: an internal error's traceback)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_projects needs root (real users, supervisord)", file=sys.stderr)
        return 2
    projects = PROJECTS
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {p.name for p in PROJECTS}
        if unknown:
            parser.error(f"--only: unknown {', '.join(sorted(unknown))} (known: {', '.join(p.name for p in PROJECTS)})")
        projects = tuple(p for p in PROJECTS if p.name in names)
    bin_dir = BIN if args.dev_install or not SYSTEM_PYTHON.exists() else shipped_bin(args.venv)
    isolate_etc()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs = []
    for i in range(args.runs):
        began = time.time()
        run = boot_once(projects, bin_dir, args.sandbox, args.timeout, args.log_level, args.out)
        if run["failed"]:
            run["log_kept"] = str(keep_log(run, args.out, began))
            print(f"run {i + 1}: a project failed; its boot log is kept in {run['log_kept']}", flush=True)
        del run["log"]  # the json keeps rows and the tail; the whole log only for a failed run, as a file
        runs.append(run)
        rows = run["rows"]
        print(f"run {i + 1}/{args.runs}: {sum(r['within'] for r in rows)}/{len(rows)} within limit; answered "
              + ", ".join(f"{r['project']} {_s(r['answered'])}" for r in rows), flush=True)
    table = markdown(runs, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"load_at_start": load, "runs": runs}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)
    for run in runs:
        if run["log_tail"]:
            print("some project never answered; end of the boot log:\n" + run["log_tail"], file=sys.stderr)
    if any(r["answered"] is None for run in runs for r in run["rows"]):
        return 1
    return 1 if args.check and not all(r["within"] for run in runs for r in run["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
