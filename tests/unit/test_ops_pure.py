"""Pure rules with no root needed: reconcile's roster, list-services' rows and table,
the log listener's line prefixing and the runtime's own log lines."""

from __future__ import annotations

import logging

import pytest

from maestro_runtime import log_format
from maestro_runtime.engine.log_listener import MAX_PARTIAL, LinePrefixer, parse_headers, split_payload
from maestro_runtime.ops import inventory
from maestro_runtime.ops.reconcile import roster
from maestro_runtime.spec import parse_services_string
from maestro_runtime.state.records import FAILED, ServiceRecord


def _record(service_id: str, kind: str = "env", **extra) -> ServiceRecord:
    fields = {"origin": "t", "source": "/src", "directory": f"/p/{service_id}", "user": f"svc_{service_id}",
              "port": 8000, **extra}
    return ServiceRecord(id=service_id, name=service_id, kind=kind, **fields)


# ---------------------------------------------------------------- reconcile's roster


def test_roster_ids_in_input_order_and_removals():
    parsed = parse_services_string("https://github.com/a/web|8080;https://github.com/b/web|8081")
    plan = roster(parsed, [_record("web"), _record("old")])
    assert [a.id for a in plan.assignments] == ["web", "web-1"]
    assert plan.removed == ("old",) and plan.kept == ()
    assert plan.wanted == {"web", "web-1"}


def test_roster_kept_deploys_reserve_their_ids():
    parsed = parse_services_string("https://github.com/a/web|8080")
    deployed = _record("web", kind="deploy")
    plan = roster(parsed, [deployed])
    assert plan.kept == (deployed,)
    assert [a.id for a in plan.assignments] == ["web-1"]  # the deploy keeps "web"
    assert plan.removed == ()


def test_roster_names_invalid_entries_after_the_good_ones():
    parsed = parse_services_string("./api|notaport;./api|8080")
    plan = roster(parsed, [_record("api-1")])
    assert [a.id for a in plan.assignments] == ["api"]
    assert [(i, e.field) for i, e in plan.invalid] == [("api-1", "port")]
    assert plan.removed == ()  # the failed entry keeps its row


def test_roster_is_pure_and_repeatable():
    parsed = parse_services_string("./a|0;./b|0;./a|0")
    existing = [_record("z")]
    assert roster(parsed, existing) == roster(parsed, existing)
    assert [r.id for r in existing] == ["z"]


# ---------------------------------------------------------------- list-services


@pytest.mark.parametrize("ready, up, process, status", [
    (False, True, {"statename": "RUNNING", "pid": 5, "start": 0}, "FAILED"),
    (True, False, None, "unknown"),
    (True, True, None, "NOT_LOADED"),
    (True, True, {"statename": "BACKOFF", "pid": 0, "start": 0}, "BACKOFF"),
])
def test_status_rules(ready, up, process, status):
    record = _record("web") if ready else _record("web", state=FAILED, error="boom")
    row = inventory.view(record, process, now=100.0, supervisor_up=up)
    assert row.status == status
    assert row.pid is None and row.uptime is None


def test_running_row_has_pid_uptime_and_redacted_source():
    record = _record("web", source="https://user:s3cret@example.com/x.tar.gz")
    row = inventory.view(record, {"statename": "RUNNING", "pid": 42, "start": 40.0}, now=100.0, supervisor_up=True)
    assert (row.status, row.pid, row.uptime) == ("RUNNING", 42, 60)
    assert "s3cret" not in row.source
    assert set(row.as_json()) == set(inventory.JSON_KEYS)


def test_spawn_error_shows_as_the_error():
    row = inventory.view(_record("web"), {"statename": "FATAL", "spawnerr": "no such file"}, 0, True)
    assert row.error == "no such file"


@pytest.mark.parametrize("seconds, text", [(None, "-"), (5, "5s"), (65, "1m05s"), (3700, "1h01m"),
                                           (90000, "1d1h")])
def test_format_uptime(seconds, text):
    assert inventory.format_uptime(seconds) == text


def test_table_clips_long_cells_and_lists_errors_and_degradations():
    long = _record("web", command="x" * 100, degraded=["no cgroups"])
    failed = _record("api", state=FAILED, error="port taken")
    views = inventory.build_views([long, failed], {"web": {"statename": "RUNNING", "pid": 1, "start": 0}})
    table = inventory.format_table(views, width=20).splitlines()
    assert table[0].split() == ["NAME", "STATUS", "HEALTH", "RESTARTS", "LAST", "EXIT", "PID", "UPTIME", "CPU",
                                "RSS", "ACTIVE", "USER", "PORT", "COMMAND", "WHY", "SOURCE"]
    assert table[1].startswith("api ")  # what needs attention (FAILED) comes first
    web = next(line for line in table if line.startswith("web "))
    assert "x" * 19 + "…" in web and "x" * 20 not in web
    assert "! api: port taken" in table and "~ web: not enforced: no cgroups" in table
    assert "unknown" in inventory.format_table(inventory.build_views([long], None))


# ---------------------------------------------------------------- log listener


def test_prefixer_emits_whole_lines_per_service_and_channel():
    p = LinePrefixer()
    assert p.feed("web", "stdout", "GET / 200\npart") == ["GET / 200"]
    assert p.feed("api", "stdout", "other\n") == ["other"]
    assert p.feed("web", "stderr", "err\n") == ["err"]  # the stdout partial stays apart
    assert p.feed("web", "stdout", "ial ✓\n") == ["partial ✓"]  # text, not bytes: UTF-8 is whole
    assert p.partial == {}


def test_prefixer_flushes_an_overlong_partial_line():
    p = LinePrefixer()
    out = p.feed("web", "stdout", "a" * (MAX_PARTIAL + 1))
    assert out == ["a" * (MAX_PARTIAL + 1)] and p.partial == {}


def test_event_headers_and_payload():
    assert parse_headers("ver:3.0 len:42 eventname:PROCESS_LOG_STDOUT\n") == {
        "ver": "3.0", "len": "42", "eventname": "PROCESS_LOG_STDOUT"}
    meta, data = split_payload("processname:web channel:stderr\nline 1\nline 2\n")
    assert meta["processname"] == "web" and meta["channel"] == "stderr" and data == "line 1\nline 2\n"


def test_runtime_log_lines_are_prefixed_lines_and_redacted(capsys):
    """A multi-line message is printed as lines (issue 12: a failed build's tail is readable),
    every one prefixed and stamped, never a continuation a reader could take for a service's."""
    root = logging.getLogger("maestro")
    saved = (list(root.handlers), root.level, root.propagate)
    logger = log_format.setup_logging("debug")
    try:
        logger.warning("fetch of https://u:tok3n@h/x failed:\nsecond line")
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 2 and all(" [maestro][warn] " in line for line in lines)
        assert lines[1].endswith("[maestro][warn] | second line")
        assert "tok3n" not in "".join(lines) and "***@h/x" in lines[0]
        assert log_format.setup_logging("nonsense").level == logging.INFO
    finally:
        root.handlers[:], root.level, root.propagate = saved


# ---------------------------------------------------------------- deploy's prompts


def test_deploy_suggests_the_user_it_would_really_create(monkeypatch):
    from maestro_runtime.cli import deployment as cli
    from maestro_runtime.spec.naming import default_user

    asked = {}

    def prompt(text, default=None, show_default=True):
        asked[text] = default
        return default

    monkeypatch.setattr(cli.click, "prompt", prompt)
    cli._ask({"repo": "/srv/x", "port": "0", "ref": "main", "name": "My App", "user": None, "cmd": ""})
    assert asked["UNIX user"] == "svc_my-app"
    long_name = "a" * 40
    cli._ask({"repo": "/srv/x", "port": "0", "ref": "main", "name": long_name, "user": None, "cmd": ""})
    assert asked["UNIX user"] == default_user(long_name) != f"svc_{long_name}"
