"""First boot vs second boot of a Python project with dependencies (not a test).

The first build makes the venv and pip-installs the requirements; the second
must find the stamp unchanged and run no pip at all. Prints both times and
their ratio, and writes them as JSON when ``--json PATH`` is given.

    python benchmarks/bench_rebuild.py [--requirements "flask requests"] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

from maestro_runtime.ops.accounts import Account
from maestro_runtime.settings import Settings
from maestro_runtime.sources import builds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", default="flask requests", help="space-separated requirements")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="maestro-bench-"))
    try:
        entry = pwd.getpwuid(os.getuid())
        home = base / "home"
        (home / ".maestro" / "tmp").mkdir(parents=True)
        account = Account(entry.pw_name, os.getuid(), os.getgid(), home)
        project = base / "project"
        project.mkdir()
        (project / "requirements.txt").write_text("\n".join(args.requirements.split()) + "\n")
        (project / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
        settings = Settings.from_env({**os.environ, "MAESTRO_STATE_DIR": str(base / "state")})

        def boot() -> tuple[float, list[str]]:
            started = time.perf_counter()
            built = builds.build(project, account, settings=settings, policy=None, service_id="bench")
            return time.perf_counter() - started, built

        first, built_first = boot()
        second, built_second = boot()
        assert built_first == ["python"] and built_second == [], (built_first, built_second)
        result = {
            "requirements": args.requirements.split(),
            "first_boot_s": round(first, 3),
            "second_boot_s": round(second, 4),
            "ratio_first_over_second": round(first / second, 1),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
