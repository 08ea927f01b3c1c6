"""atomic_write: whole file or nothing; fsync only when durable; the folder made only when missing.
A record's JSON is the same text as before (the fields as they are, sorted, indented)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict

import pytest

from maestro_runtime.engine.programs import ProgramFiles, ProgramText
from maestro_runtime.state import records
from maestro_runtime.state.records import ServiceRecord, atomic_write


@pytest.fixture
def fsyncs(monkeypatch):
    """A spy on os.fsync (the real call still runs): which writes asked for durability."""
    seen: list[int] = []
    real = os.fsync
    monkeypatch.setattr(records.os, "fsync", lambda fd: seen.append(fd) or real(fd))
    return seen


def test_durable_write_fsyncs_and_a_runtime_one_does_not(tmp_path, fsyncs):
    atomic_write(tmp_path / "record.json", "{}\n", mode=0o600)
    assert len(fsyncs) == 1
    atomic_write(tmp_path / "script.sh", "#!/bin/sh\n", mode=0o700, durable=False)
    assert len(fsyncs) == 1
    assert (tmp_path / "script.sh").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE((tmp_path / "script.sh").stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json", "script.sh"], "no temp file left"


def test_the_folder_is_made_when_missing(tmp_path):
    atomic_write(tmp_path / "a" / "b" / "f.txt", "x")
    assert (tmp_path / "a" / "b" / "f.txt").read_text() == "x"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def full(fd, mode):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.os, "fchmod", full)  # stands in for a full disk: it cannot be made here
    with pytest.raises(OSError) as caught:
        atomic_write(target, "new", durable=False)
    assert caught.value.filename == str(target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_runtime_files_are_not_fsynced_but_process_type_lists_are(tmp_path, fsyncs):
    files = ProgramFiles(tmp_path / "conf.d", tmp_path / "launch")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "launch").mkdir()
    assert files.write_service(ProgramText("web", "#!/bin/sh\nexec true\n", "[program:web]\n"), (), "probe\n")
    assert fsyncs == [], "launch script, probe script and program file are remade every boot"
    worker = ProgramText("web-worker", "#!/bin/sh\nexec w\n", "[program:web-worker]\n")
    files.write_processes("web", [worker])
    assert len(fsyncs) == 1, "the process-type list: what a later boot removes"
    assert (tmp_path / "launch" / "web.types").read_text() == "web-worker\n"
    assert (tmp_path / "launch" / "web.sh").read_text() == "#!/bin/sh\nexec true\n"
    assert not files.write(ProgramText("web", "#!/bin/sh\nexec true\n", "[program:web]\n")), "unchanged"


def test_record_json_is_the_text_asdict_gave():
    record = ServiceRecord(id="web", name="web", kind="env", origin="o", source="s", directory="/srv/web",
                           user="svc_web", port=8001, env={"B": "2", "A": "1"}, keep=["data"],
                           sandbox={"limits": {"memory": "512M"}, "notes": ["x"]}, health={"kind": "http"})
    assert record.to_json() == json.dumps(asdict(record), indent=1, sort_keys=True)
    assert ServiceRecord.from_dict(json.loads(record.to_json())) == record
