"""``python3 -m benchmarks.bench_early [--runs 3]``: when does each project first answer?

Three projects in one boot: a static site and two Python projects with real builds from PyPI
(flask; requests + six). For each: when its provisioning ended (its ``service X: user ...``
line) and when it first answered HTTP, both from the entrypoint's spawn; the gap is its start.
Run it with PYTHONPATH pointing at the checkout to time (``--dev-install`` style: this
interpreter's supervisord). Root; a private /etc like the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from .common import Host, PortAllocator, http_ok, isolate_etc, restored_accounts

APP = (
    "import http.server, os\n"
    "import {module}\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'{name}')\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)
PROJECTS = {"site": None, "flaskapp": ("flask", "flask\n"), "reqapp": ("requests", "requests\nsix\n")}
LINE = re.compile(r"^(\S+Z) \[maestro\]\[info\] service (\S+): user ", re.M)


def one_boot(alloc: PortAllocator, bin_dir: Path) -> dict[str, dict[str, float]]:
    low, high = alloc.take(len(PROJECTS) + 2)
    host = Host.create((low, high), bin_dir=bin_dir)
    entries, ports = [], {}
    for i, (name, build) in enumerate(PROJECTS.items()):
        folder = host.root / "src" / name
        folder.mkdir(parents=True)
        (folder / "index.html").write_text(name)
        entry = {"name": name, "repo": str(folder), "port": low + i}
        if build:
            (folder / "app.py").write_text(APP.format(module=build[0], name=name))
            (folder / "requirements.txt").write_text(build[1])
            entry["cmd"] = "python app.py"
        entries.append(entry)
        ports[name] = low + i
    spec = host.root / "services.yml"
    spec.write_text(json.dumps({"services": entries}))
    answered: dict[str, float] = {}
    try:
        with restored_accounts():
            started_wall, started = time.time(), time.monotonic()
            host.start(MAESTRO_SERVICES_FILE=str(spec))
            while len(answered) < len(ports) and time.monotonic() - started < 300:
                for name, port in ports.items():
                    if name not in answered and http_ok(port, timeout=0.5):
                        answered[name] = time.monotonic() - started
                time.sleep(0.02)
            provisioned = {m.group(2): datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
                           - started_wall for m in LINE.finditer(host.log())}
    finally:
        host.destroy()
    return {name: {"provisioned": provisioned.get(name, float("nan")), "answered": answered.get(name, float("nan"))}
            for name in ports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    isolate_etc()
    alloc = PortAllocator()
    for run in range(args.runs):
        result = one_boot(alloc, Path(sys.executable).parent)
        print(f"run {run + 1}: " + "; ".join(
            f"{name} provisioned {r['provisioned']:.2f}s answered {r['answered']:.2f}s "
            f"(+{r['answered'] - r['provisioned']:.2f}s)" for name, r in result.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
