"""Service records and the port ledger when their files are damaged; the reaper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from maestro_runtime.state.ports import LedgerCorrupt, PortLedger
from maestro_runtime.state.records import RecordError, RecordStore, ServiceRecord, read_record

REPO = Path(__file__).resolve().parents[2]


def _record(**kw) -> ServiceRecord:
    base = dict(id="web", name="web", kind="env", origin="o", source="s", directory="/srv/web", user="svc_web",
                port=8001)
    return ServiceRecord(**{**base, **kw})


DAMAGE = {
    "torn": lambda p: p.write_text(_record().to_json()[:40]),
    "list": lambda p: p.write_text("[]"),
    "directory": lambda p: p.mkdir(),
    "fifo": lambda p: os.mkfifo(p),  # must not block
    "symlink": lambda p: p.symlink_to("/etc/hostname"),
    "wrong type": lambda p: p.write_text(json.dumps({**json.loads(_record().to_json()), "port": "80"})),
    "missing field": lambda p: p.write_text(json.dumps({"id": "web"})),
    "binary": lambda p: p.write_bytes(b"\xff\xfe\x00"),
    "huge": lambda p: p.write_bytes(b" " * (5 << 20)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_record_is_one_error_naming_the_file(tmp_path, damage):
    store = RecordStore(tmp_path)
    store.save(_record(id="good", name="good"))
    DAMAGE[damage](store.path("web"))
    done = threading.Event()
    result: dict = {}

    def read() -> None:
        try:
            store.load("web")
        except RecordError as exc:
            result["error"] = exc
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading the record blocked"
    error = result["error"]
    assert str(error).startswith(f"{store.path('web')}: unreadable service record (") and "\n" not in str(error)
    assert error.service_id == "web"
    records, problems = store.scan()
    assert [r.id for r in records] == ["good"] and [p.service_id for p in problems] == ["web"]
    aside = store.set_aside(store.path("web"))
    assert aside.name.startswith("web.json.corrupt-") and store.load("web") is None
    store.save(_record())  # the service can be recorded afresh
    assert read_record(store.path("web")).port == 8001


@pytest.mark.parametrize("damage", ["torn", "list", "directory", "ports not numbers", "fifo"])
def test_a_damaged_ledger_is_moved_aside_and_rebuilt(tmp_path, damage):
    path = tmp_path / "ports.json"
    {"torn": lambda: path.write_text('{"a": 80'), "list": lambda: path.write_text("[]"),
     "directory": lambda: path.mkdir(), "ports not numbers": lambda: path.write_text('{"a": "x"}'),
     "fifo": lambda: os.mkfifo(path)}[damage]()
    with pytest.raises(LedgerCorrupt, match=str(path)):
        PortLedger(path).read()
    with pytest.raises(LedgerCorrupt):  # nothing to rebuild from: reported, never guessed
        PortLedger(path).release("a")
    ledger = PortLedger(path, rebuild=lambda: {"a": 8001, "b": 8002})
    assert ledger.release("b") == 8002
    assert json.loads(path.read_text()) == {"a": 8001}
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("ports.json.corrupt-*")] == ["ports.json"]


def test_end_descendants_ends_the_orphans_a_subreaper_inherits(tmp_path):
    marker = tmp_path / "orphan"
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from maestro_runtime.engine import reaper
        assert reaper.become_subreaper()
        # The shell starts a sleeper in the background and exits: the sleeper is an orphan.
        sleeper = sys.executable + " -c 'import time; time.sleep(300)' {marker}"
        subprocess.run(["sh", "-c", sleeper + " &"], check=True)
        time.sleep(0.3)
        found = reaper.descendants()
        assert len(found) == 1, found
        met = reaper.end_descendants(grace=1.0)
        assert met == found and reaper.descendants() == []
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    leftover = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True)
    assert leftover.stdout == "", leftover.stdout
