"""Sandboxed vs unsandboxed Node builds through maestro's own build path (not a test; needs the registry).

Two fixture projects modelled on real apps, dependencies from the npm registry: an Express
API (a dozen runtime dependencies, ~110 packages) and a Vite + React front end (a build
step, ~70 packages with its bundler). Each is built by :func:`maestro_runtime.sources.builds.build`
as a project user, once with the full sandbox (bubblewrap, its own network namespace, the
egress proxy with an allowlist naming only the registry) and once with
``MAESTRO_SANDBOX_MODE=off``, alternating, from the same lock file and the same npm cache
state: cold (the user's npm cache emptied before every build) and warm (filled once before
the series). Prints medians, ranges and the ratio of medians; ``--json PATH`` writes them.

    python -m benchmarks.bench_node_sandbox [--runs 3] [--projects express,vite] [--caches cold,warm]

Root and a working bubblewrap are required. On a host the harness enters a private mount
namespace with a throwaway /etc (the project user is created there); inside a throwaway
container (no psutil for tests.fixtures) it uses the container's /etc.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

REGISTRY_VERSIONS = {  # exact top-level versions; the lock is made once per run, before any timing
    "express": {
        "name": "shop-api", "version": "1.0.0", "private": True, "main": "server.js",
        "scripts": {"start": "node server.js"},
        "dependencies": {
            "express": "4.21.2", "cors": "2.8.5", "helmet": "8.0.0", "morgan": "1.10.0", "dotenv": "16.4.7",
            "compression": "1.7.5", "cookie-parser": "1.4.7", "uuid": "11.0.5", "lodash": "4.17.21",
            "dayjs": "1.11.13", "joi": "17.13.3", "jsonwebtoken": "9.0.2"},
    },
    "vite": {
        "name": "dashboard", "version": "0.1.0", "private": True, "type": "module",
        "scripts": {"build": "vite build", "start": "vite preview --port $PORT"},
        "dependencies": {"react": "18.3.1", "react-dom": "18.3.1", "react-router-dom": "6.28.1"},
        "devDependencies": {"vite": "5.4.11", "@vitejs/plugin-react": "4.3.4", "@types/react": "18.3.18",
                            "@types/react-dom": "18.3.5"},
    },
}
SOURCES = {
    "express": {
        "server.js": "const express = require('express');\nconst app = express();\n"
                     "app.use(require('helmet')(), require('cors')(), require('compression')());\n"
                     "app.get('/', (req, res) => res.json({ ok: true }));\napp.listen(process.env.PORT || 3000);\n",
    },
    "vite": {
        "index.html": '<!doctype html><div id="root"></div><script type="module" src="/src/main.jsx"></script>\n',
        "vite.config.js": "import { defineConfig } from 'vite';\nimport react from '@vitejs/plugin-react';\n"
                          "export default defineConfig({ plugins: [react()] });\n",
        "src/main.jsx": "import React from 'react';\nimport { createRoot } from 'react-dom/client';\n"
                        "createRoot(document.getElementById('root')).render(<h1>dashboard</h1>);\n",
    },
}
# the proxy's summary line in the build log (and the older "egress for LABEL: N connection(s)")
EGRESS = re.compile(r"egress(?: for [^:\n]*)?: (\d+) connection")


def _isolate() -> None:
    try:
        from tests.fixtures.host import isolate_etc
    except ImportError:  # the image has no psutil; a throwaway container's /etc may be changed
        if not (Path("/run/.containerenv").exists() or Path("/.dockerenv").exists()):
            sys.exit("bench_node_sandbox: needs tests.fixtures (psutil) to protect this host's /etc")
        return
    isolate_etc()


def _registry_host() -> str:
    url = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True).stdout
    host = urlsplit(url.strip()).hostname
    if not host:
        sys.exit(f"bench_node_sandbox: npm names no registry ({url.strip()!r})")
    return host


def _seed(base: Path, name: str) -> Path:
    seed = base / "seeds" / name
    for rel, text in SOURCES[name].items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    (seed / "package.json").write_text(json.dumps(REGISTRY_VERSIONS[name], indent=2) + "\n")
    subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund",
                    "--cache", str(base / "seed-cache")], cwd=seed, check=True, capture_output=True)
    return seed


def _stats(samples: list[float]) -> dict:
    return {"median_s": round(statistics.median(samples), 2), "min_s": round(min(samples), 2),
            "max_s": round(max(samples), 2), "samples_s": [round(s, 2) for s in samples]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="builds per mode, project and cache state")
    parser.add_argument("--projects", default="express,vite")
    parser.add_argument("--caches", default="cold,warm")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_node_sandbox: run as root (project users, bubblewrap)")
    _isolate()
    from maestro_runtime.ops.accounts import ensure_account
    from maestro_runtime.sandbox.policy import SandboxPolicy
    from maestro_runtime.settings import Settings
    from maestro_runtime.sources import builds

    # not under /tmp: the sandbox gives builds a private /tmp, which would hide the project
    base = Path(tempfile.mkdtemp(prefix="maestro-bench-node-", dir="/srv" if Path("/srv").is_dir() else "/var/tmp"))
    base.chmod(0o755)
    try:
        allow = base / "sandbox-net-allow"
        allow.write_text(f"ALLOW_HOST_NETWORK=1\n{_registry_host()}\n")
        allow.chmod(0o644)
        account = ensure_account(f"mbn{uuid.uuid4().hex[:6]}", base / "home")
        policies = {}
        for mode in ("auto", "off"):
            settings = Settings.from_env({
                **os.environ, "MAESTRO_SANDBOX_MODE": mode, "MAESTRO_SANDBOX_NET_POLICY": "allow",
                "MAESTRO_SANDBOX_NET_ALLOW_FILE": str(allow), "MAESTRO_STATE_DIR": str(base / f"state-{mode}"),
                "MAESTRO_RUNTIME_DIR": str(base / f"run-{mode}")})
            policies[mode] = (settings, SandboxPolicy.from_settings(settings))
        on, why = policies["auto"][1].sandboxed()
        if not on:
            sys.exit(f"bench_node_sandbox: bubblewrap does not work here ({why})")
        npm_cache = Path(account.cache_dir) / "npm"
        count = 0

        def build(seed: Path, mode: str) -> tuple[float, int | None]:
            nonlocal count
            count += 1
            project = base / "projects" / f"{seed.name}-{count}"
            shutil.copytree(seed, project)
            subprocess.run(["chown", "-R", f"{account.uid}:{account.gid}", str(project)], check=True)
            settings, policy = policies[mode]
            started = time.perf_counter()
            built = builds.build(project, account, settings=settings, policy=policy, service_id=f"b{count}")
            elapsed = time.perf_counter() - started
            assert built == ["node"], built
            log = (settings.state_dir / "builds" / f"b{count}.build.log").read_text(errors="replace")
            connections = sum(int(m.group(1)) for m in EGRESS.finditer(log))
            shutil.rmtree(project)
            return elapsed, connections if mode == "auto" else None

        results = {"load_at_start": Path("/proc/loadavg").read_text().split()[:3], "series": []}
        node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        npm_v = subprocess.run(["npm", "--version"], capture_output=True, text=True).stdout.strip()
        results.update(node=node_v, npm=npm_v, runs=args.runs)
        for name in args.projects.split(","):
            seed = _seed(base, name)
            for cache in args.caches.split(","):
                if cache == "warm":
                    shutil.rmtree(npm_cache, ignore_errors=True)
                    build(seed, "off")  # fills the cache; not timed
                times: dict[str, list[float]] = {"auto": [], "off": []}
                conns: list[int] = []
                for i in range(args.runs):
                    for mode in ("off", "auto") if i % 2 == 0 else ("auto", "off"):
                        if cache == "cold":
                            shutil.rmtree(npm_cache, ignore_errors=True)
                        elapsed, connections = build(seed, mode)
                        times[mode].append(elapsed)
                        if connections is not None:
                            if cache == "cold" and not connections:
                                sys.exit("bench_node_sandbox: a sandboxed cold build used no proxy connection")
                            conns.append(connections)
                sandboxed, plain = _stats(times["auto"]), _stats(times["off"])
                row = {"project": name, "cache": cache, "sandboxed": sandboxed, "unsandboxed": plain,
                       "ratio_of_medians": round(sandboxed["median_s"] / plain["median_s"], 2),
                       "proxy_connections_per_build": conns}
                results["series"].append(row)
                print(f"{name:8} {cache:5} sandboxed {sandboxed['median_s']:6.2f}s "
                      f"({sandboxed['min_s']}-{sandboxed['max_s']})  unsandboxed {plain['median_s']:6.2f}s "
                      f"({plain['min_s']}-{plain['max_s']})  ratio {row['ratio_of_medians']:.2f}  "
                      f"proxy connections {conns}", flush=True)
        results["load_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        print(f"node {node_v}, npm {npm_v}; loadavg at start {' '.join(results['load_at_start'])}, "
              f"at end {' '.join(results['load_at_end'])}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
