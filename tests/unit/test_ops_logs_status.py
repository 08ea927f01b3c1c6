"""maestro logs' file reading and following; list-services' rich rows and attention order."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from maestro_runtime.control.runstate import RunState
from maestro_runtime.ops import logs
from maestro_runtime.ops.inventory import Extras, build_views, format_table
from maestro_runtime.state.records import ServiceRecord


def test_files_oldest_first_and_selection(tmp_path):
    for name, text in (("api.log.2", "2026-01-01T00:00:01.000Z out one\n"),
                       ("api.log.1", "2026-01-01T00:00:02.000Z err two\n"),
                       ("api.log", "2026-01-01T00:00:03.000Z out three ✓\n"),
                       ("api.log.x", "ignored\n"), ("apiother.log", "ignored\n")):
        (tmp_path / name).write_text(text)
    paths = logs.log_files(tmp_path, "api")
    assert [p.name for p in paths] == ["api.log.2", "api.log.1", "api.log"]
    lines = list(logs.read_lines(paths))
    assert logs.select(lines, last=2, since=None) == lines[1:]
    assert logs.select(lines, last=None, since="2026-01-01T00:00:02.000Z") == lines[1:]
    assert [logs.display(x) for x in lines] == ["2026-01-01T00:00:01.000Z one", "2026-01-01T00:00:02.000Z [stderr] two",
                                                "2026-01-01T00:00:03.000Z three ✓"]


def test_follow_reads_new_lines_across_a_rotation(tmp_path):
    path = tmp_path / "api.log"
    path.write_text("old line\n")
    got: list[str] = []
    done = threading.Event()
    thread = threading.Thread(target=logs.follow, args=(path, got.append),
                              kwargs={"stop": done.is_set, "interval": 0.02})
    thread.start()
    try:
        time.sleep(0.1)
        with path.open("a") as handle:
            handle.write("new 1\n")
        time.sleep(0.1)
        path.rename(tmp_path / "api.log.1")  # what RotatingFileHandler does
        path.write_text("after rotation\n")
        deadline = time.monotonic() + 3
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        done.set()
        thread.join(2)
    assert got == ["new 1", "after rotation"]


def record(name: str, **kw) -> ServiceRecord:
    return ServiceRecord(id=name, name=name, kind="file", origin="o", source="s", directory="/d", user="u",
                         port=8000, **kw)


def test_rich_rows_and_attention_first():
    records = [record("ok"), record("sick"), record("dead"), record("waiting")]
    processes = {
        "ok": {"statename": "RUNNING", "pid": 10, "start": time.time() - 5},
        "sick": {"statename": "RUNNING", "pid": 11, "start": time.time() - 5},
        "dead": {"statename": "EXITED", "pid": 0, "start": 1, "exitstatus": 3},
        "waiting": {"statename": "EXITED", "pid": 0, "start": 1, "exitstatus": 1},
    }
    extras = {
        "ok": Extras(run=RunState(phase="RUNNING", health="healthy"),
                     sample={"pid": 10, "cpu_percent": 97.5, "cpu_seconds": 3.0, "rss": 50 << 20}),
        "sick": Extras(run=RunState(phase="RUNNING", health="unhealthy", health_detail="HTTP 503")),
        "dead": Extras(run=RunState(phase="FATAL", restarts=3, last_exit_code=3, last_exit_at=5)),
        "waiting": Extras(run=RunState(phase="BACKOFF", next_restart_at=time.time() + 4, last_exit_at=5,
                                       last_exit_code=1)),
    }
    views = {v.name: v for v in build_views(records, processes, extras)}
    assert views["ok"].cpu_percent == 97.5 and views["ok"].memory_rss == 50 << 20 and views["ok"].schema == 2
    assert views["dead"].status == "FATAL" and views["dead"].last_exit == "exit 3" and views["dead"].restarts == 3
    assert views["waiting"].status == "BACKOFF" and 0 < views["waiting"].next_restart_in <= 4
    assert views["sick"].health == "unhealthy"
    table = format_table(list(views.values())).splitlines()
    order = [line.split()[0] for line in table[1:5]]
    assert order[:2] == ["sick", "dead"] and order[2] == "waiting" and order[3] == "ok"
    assert "98%" in table[4] and "50.0M" in table[4]  # 97.5 rounds half to even


def test_services_still_provisioning_are_rows_of_their_own():
    """A boot's list of what it provisions (ops/reconcile.py): a row per service without a record
    yet, PROVISIONING, with the time the boot has been at it; recorded ones and junk give none."""
    from maestro_runtime.ops.inventory import PROVISIONING, provisioning_views

    listed = {"pid": 1, "since": 100.0, "services": {
        "web": {"user": "svc_web", "port": 8001, "kind": "env", "source": "https://u:secret@h/x.git", "ref": None},
        "done": {"user": "svc_done", "port": 8002, "kind": "env", "source": "/x", "ref": None},
        "odd": "not an entry",
        "api": {"port": "8003"},
    }}
    rows = {v.name: v for v in provisioning_views(listed, {"done"}, now=112.5)}
    assert set(rows) == {"web", "api"}
    web = rows["web"]
    assert (web.status, web.uptime, web.user, web.port, web.kind) == (PROVISIONING, 12, "svc_web", 8001, "env")
    assert "secret" not in web.source
    assert rows["api"].port is None and rows["api"].status == PROVISIONING
    assert web.as_json()["status"] == "PROVISIONING"
    for junk in (None, [], {"services": []}, {"services": None}):
        assert provisioning_views(junk, set(), now=0) == []


def test_the_line_that_says_why_a_service_died(tmp_path):
    """Its last stderr line (a traceback ends with the exception), else its last line; printable,
    one line, clipped; read from the end of a large file without reading it whole."""
    from maestro_runtime.ops.logs import last_error, tail_bytes

    lines = ["2026-11-30T10:00:00.000Z out Starting gunicorn 20.0.4",
             "2026-11-30T10:00:00.100Z err Traceback (most recent call last):",
             "2026-11-30T10:00:00.101Z err ModuleNotFoundError: No module named 'pkg_resources'",
             "2026-11-30T10:00:00.200Z out worker exiting",
             "2026-11-30T10:00:00.300Z out   "]
    assert last_error(lines) == "ModuleNotFoundError: No module named 'pkg_resources'"
    assert last_error(lines[:1]) == "Starting gunicorn 20.0.4"
    assert last_error([]) is None
    assert last_error(["2026-11-30T10:00:00.000Z err bell\x07 and\x1b[31m escape"]) == "bell  and [31m escape"
    assert len(last_error(["t err " + "x" * 500], width=50)) == 50
    log = tmp_path / "web.log"
    log.write_text("t out " + "y" * 40000 + "\n" + "\n".join(lines) + "\n")
    tail = tail_bytes(log, size=4096)
    assert tail[-5:] == lines and all(not line.startswith("t out yyy") for line in tail)
    assert last_error(tail) == "ModuleNotFoundError: No module named 'pkg_resources'"
    assert tail_bytes(tmp_path / "missing.log") == []


def test_a_provisioning_row_says_its_step_from_the_build_log():
    """Before its build log is written this boot: fetching; then the build step it ran last."""
    from maestro_runtime.ops import inventory
    from maestro_runtime.ops.inventory import format_table, provisioning_step, provisioning_views
    from maestro_runtime.sources.builds import STEP_HEADER

    assert inventory.STEP_HEADER == STEP_HEADER  # a copy: list-services does not import the build machinery

    log = [f"{STEP_HEADER}python", "$ /srv/venv/bin/python -m pip install -r requirements.txt", "Collecting flask",
           "# exit 0 after 3.1s", f"{STEP_HEADER}build step", "$ /bin/sh -c 'npm run build'", "> vite build"]
    assert provisioning_step(log, modified=150.0, since=100.0) == "build step: /bin/sh -c 'npm run build'"
    assert provisioning_step(log[:3], modified=150.0, since=100.0).startswith("python: /srv/venv/bin/python -m pip")
    assert provisioning_step(log, modified=90.0, since=100.0) == "fetching"  # last boot's log
    assert provisioning_step([], modified=None, since=100.0) == "fetching"
    assert provisioning_step(["partial line"], modified=150.0, since=100.0) == "building"
    assert provisioning_step(["$ npm ci"], modified=150.0, since=100.0) == "building: npm ci"  # header cut off
    listed = {"pid": 1, "since": 100.0, "services": {"web": {"user": "svc_web", "port": 8001}}}
    (web,) = provisioning_views(listed, set(), now=112.5)
    web = replace(web, step="building: npm run build")  # list-services fills it from the build log
    assert web.as_json()["step"] == "building: npm run build"
    assert "building: npm run build" in format_table([web]).splitlines()[1]


def test_the_table_prints_no_control_character_a_service_wrote():
    """A step from a build's output, a Procfile command, an error quoting a build's last lines:
    a terminal acts on none of them (OSC 52 writes the operator's clipboard, CSI clears the screen)."""
    from maestro_runtime.ops.inventory import format_table, provisioning_step, provisioning_views

    osc = "\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07"
    step = provisioning_step(["# maestro: node", f"$ npm ci{osc}\x1b[2J"], modified=150.0, since=100.0)
    (row,) = provisioning_views({"pid": 1, "since": 100.0, "services": {"web": {"user": "u", "port": 1}}},
                                set(), now=112.5)
    table = format_table([replace(row, step=step, error=f"build failed, last lines:\nok\n{osc}\x9b31m")])
    assert "npm ci" in table and "last lines:" in table and len(table.splitlines()) == 5
    assert all(c.isprintable() for line in table.splitlines() for c in line), repr(table)


def test_common_causes_in_a_last_line_come_with_what_fixes_them():
    from maestro_runtime.ops.logs import known_cause

    # Lines as the public samples printed them when they gave up (gunicorn 20; a Railway Django app).
    assert known_cause("ModuleNotFoundError: No module named 'pkg_resources'").startswith(
        "pkg_resources came with setuptools until 81: add setuptools<81")
    assert known_cause("KeyError: 'PGDATABASE'") == (
        "the app reads PGDATABASE from its environment: set it (YAML env:, SVC_<i>_ENV_PGDATABASE, "
        "MAESTRO_ENV_<SVC>_PGDATABASE, or the project's .env)")
    assert known_cause("KeyError: 'name'") is None and known_cause("Error: listen EADDRINUSE") is None


def test_clip_message_bounds_lines_and_their_width():
    from maestro_runtime.ops.logs import clip_message

    assert clip_message("build failed, last lines:\nok") == "build failed, last lines:\nok"
    huge = clip_message("failed:\n" + "x" * 10_000_000 + "\n" + "\n".join(f"l{i}" for i in range(100)))
    lines = huge.split("\n")
    assert lines[0] == "failed:" and lines[1] == "[61 lines left out]" and lines[-1] == "l99"
    assert len(lines) == 42 and all(len(line) <= 500 for line in lines)
    assert clip_message("a\n" + "y" * 600).endswith("… [140 characters left out]")


def test_logs_since_with_build_is_a_usage_error():
    """A build log's lines carry no time: --since with --build was silently ignored."""
    from click.testing import CliRunner

    from maestro_runtime.cli.lifecycle import logs

    result = CliRunner().invoke(logs, ["web", "--build", "--since", "10m"])
    assert result.exit_code == 2 and "--since does not apply to --build" in result.output, result.output
