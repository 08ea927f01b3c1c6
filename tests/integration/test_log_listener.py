"""The log listener under a real supervisord: non-ASCII output, per-service files, rotation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from maestro_runtime.engine.supervisord import render_main_config
from tests.integration.conftest import wait_for

PROGRAM = """[program:{name}]
command={python} {script}
autorestart=false
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE
stdout_events_enabled=true
stderr_events_enabled=true
"""


def _run(tmp_path: Path, programs: dict[str, str], max_bytes: int = 1 << 20, backups: int = 3,
         seconds: float = 3.0) -> tuple[str, Path]:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    for name, code in programs.items():
        script = tmp_path / f"{name}.py"
        script.write_text(code, encoding="utf-8")
        (conf_d / f"{name}.conf").write_text(PROGRAM.format(name=name, python=sys.executable, script=script))
    main = tmp_path / "supervisord.conf"
    logs = tmp_path / "logs"
    main.write_text(render_main_config(conf_path=main, socket=tmp_path / "s.sock", include_dir=conf_d,
                                       pidfile=tmp_path / "s.pid", childlogdir=tmp_path, loglevel="info",
                                       logs_dir=logs, log_max_bytes=max_bytes, log_backups=backups))
    out = tmp_path / "out.txt"
    with out.open("ab") as handle:  # append: the listener writes to the same file
        daemon = subprocess.Popen(["supervisord", "-n", "-c", str(main)], stdout=handle, stderr=subprocess.STDOUT)
        try:
            time.sleep(seconds)
        finally:
            daemon.terminate()
            daemon.wait(20)
    return out.read_text(errors="replace"), logs


NON_ASCII = ("import time\nprint('first: ▲ Next.js-like ✓ ünïcödé', flush=True)\nfor i in range(3):\n"
             "    time.sleep(0.3); print(f'line {i}', flush=True)\ntime.sleep(30)\n")
PLAIN = "import time\nfor i in range(6):\n    time.sleep(0.2); print(f'other {i}', flush=True)\ntime.sleep(30)\n"


def test_non_ascii_output_keeps_every_line_of_every_service(tmp_path):
    out, logs = _run(tmp_path, {"fancy": NON_ASCII, "plain": PLAIN})
    assert "[fancy] first: ▲ Next.js-like ✓ ünïcödé" in out, out
    for i in range(3):
        assert f"[fancy] line {i}" in out, out
    for i in range(6):
        assert f"[plain] other {i}" in out, out
    line = next(x for x in out.splitlines() if "[fancy] line 0" in x)
    assert line[:4].isdigit() and line[10] == "T" and line[23] == "Z", line  # ISO timestamp first
    assert "UNKNOWN" not in out
    text = (logs / "fancy.log").read_text()
    assert " out first: ▲ Next.js-like ✓ ünïcödé\n" in text and " out line 2\n" in text
    assert (logs / "fancy.log").stat().st_mode & 0o777 == 0o600


def test_files_rotate_at_the_configured_size_and_count(tmp_path):
    noisy = "import time\nfor i in range(3000):\n    print(f'noise line {i:05d} ' + 'x' * 40, flush=True)\n" \
            "time.sleep(30)\n"
    _out, logs = _run(tmp_path, {"noisy": noisy}, max_bytes=8192, backups=2, seconds=5)
    files = sorted(p.name for p in logs.iterdir())
    assert files == ["noisy.log", "noisy.log.1", "noisy.log.2"], files
    assert all((logs / f).stat().st_size <= 8192 for f in files)
    wait_for(lambda: "noise line 02999" in (logs / "noisy.log").read_text(), 5, what="the last line")
