"""A program name is one service's or one process type's, never both (ops/processes.py)."""

from pathlib import Path

import pytest

from maestro_runtime.engine.programs import ProgramFiles
from maestro_runtime.ops.processes import clash, holders, refuse_clash
from maestro_runtime.spec import SpecError
from maestro_runtime.state.records import RecordStore, ServiceRecord
from tests.fixtures.provisioners import bare_provisioner


def test_clash_names_both():
    held = {"web-worker": "service web-worker", "api-clock": "the clock process type of service api"}
    field, reason = clash("web", {"worker": "python w.py"}, held)
    assert field == "processes"
    assert reason == ("process type worker would be program web-worker, which is already service web-worker: "
                      "rename one of them")
    field, reason = clash("api-clock", {}, held)
    assert field == "name" and reason.startswith("api-clock is already the clock process type of service api")
    assert clash("web", {"Worker": "a", "worker": "b"}, {})[1] == \
        "process types Worker and worker would both be program web-worker"
    assert "not a valid name" in clash("web", {"w" * 70: "x"}, {})[1]
    assert clash("web", {"worker": "x", "clock": "y"}, {"api": "service api", "api-worker": "service api-worker"}) \
        is None


def _folders(tmp_path: Path) -> tuple[ProgramFiles, RecordStore]:
    for sub in ("conf", "launch", "records"):
        (tmp_path / sub).mkdir()
    return ProgramFiles(tmp_path / "conf", tmp_path / "launch"), RecordStore(tmp_path / "records")


def _active(programs: ProgramFiles, *names: str) -> None:
    for name in names:
        (programs.conf_dir / f"{name}.conf").write_text("[program:x]\n")


def test_holders_read_active_programs_records_and_current_type_lists(tmp_path):
    programs, _ = _folders(tmp_path)
    _active(programs, "web", "web-worker", "solo")
    (programs.launch_dir / "web.types").write_text("web-worker\n")
    (programs.launch_dir / "gone.types").write_text("gone-clock\n")  # from an earlier boot: gone holds nothing
    held, stale = holders("new", programs, ["failed-one"])
    assert held == {"web-worker": "the worker process type of service web", "web": "service web",
                    "solo": "service solo", "failed-one": "service failed-one"}
    assert stale is None
    # the active service's own process programs are its own
    held, _ = holders("web", programs, [])
    assert "web-worker" not in held and "web" not in held


def test_a_type_list_left_from_an_earlier_boot_loses_what_others_hold(tmp_path):
    """web had a worker last boot; this boot web-worker is a service and started first: web's
    failure must not take the program of web-worker with it."""
    programs, store = _folders(tmp_path)
    _active(programs, "web-worker")
    (programs.launch_dir / "web.types").write_text("web-worker\nweb-clock\n")
    store.save(ServiceRecord(id="web-worker", name="web-worker", kind="env", origin="SERVICES[2]", source="",
                             directory="", user="u", port=1))
    record = ServiceRecord(id="web", name="web", kind="env", origin="SERVICES[1]", source="", directory="",
                           user="u", port=2, processes={"worker": "python w.py"})
    with pytest.raises(SpecError) as caught:
        refuse_clash(record, programs, store)
    assert str(caught.value) == ("SERVICES[1]: processes: process type worker would be program web-worker, which "
                                 "is already service web-worker: rename one of them")
    assert programs.process_ids("web") == ["web-clock"]
    programs.remove_all("web")  # what the failure does
    assert (programs.conf_dir / "web-worker.conf").exists()


def test_a_service_named_like_an_active_process_type_is_refused_and_its_removal_spares_it(tmp_path):
    programs, store = _folders(tmp_path)
    _active(programs, "web", "web-worker")
    (programs.launch_dir / "web.types").write_text("web-worker\n")
    record = ServiceRecord(id="web-worker", name="web-worker", kind="deploy", origin="deploy", source="",
                           directory="", user="u", port=3)
    with pytest.raises(SpecError, match="web-worker is already the worker process type of service web"):
        refuse_clash(record, programs, store)
    programs.remove_all("web-worker")
    assert (programs.conf_dir / "web-worker.conf").exists(), "web's worker program stays"


def test_removing_a_service_that_failed_before_activation_spares_a_program_now_anothers(tmp_path):
    """web had a worker last boot; this boot web failed before its activation (its list is last
    boot's) and web-worker is a service of its own: removing web leaves web-worker's program."""
    provisioner = bare_provisioner(tmp_path)
    programs, store = provisioner.programs, provisioner.store
    _active(programs, "web-worker")
    programs.script("web-worker").write_text("#!/bin/sh\n")
    (programs.launch_dir / "web.types").write_text("web-worker\nweb-clock\n")
    store.save(ServiceRecord(id="web-worker", name="web-worker", kind="env", origin="SERVICES[2]", source="",
                             directory="", user="u", port=1))
    provisioner.deactivate("web")
    assert (programs.conf_dir / "web-worker.conf").exists() and programs.script("web-worker").exists()
    assert not (programs.launch_dir / "web.types").exists()


def test_removal_waits_for_an_activation_that_is_taking_a_name(tmp_path):
    """a-b had a worker last boot (program a-b-worker) and failed this boot before its activation;
    meanwhile service a activates with a process type b-worker: the same program, now a's (a-b's
    list is stale, so a's check let it through). a-b's removal looks at who holds what, then
    removes: an activation writing between the two would lose its program. The removal waits."""
    import threading

    provisioner = bare_provisioner(tmp_path)
    programs = provisioner.programs
    (programs.launch_dir / "a-b.types").write_text("a-b-worker\n")
    removal = threading.Thread(target=provisioner.deactivate, args=("a-b",))
    with provisioner._naming:  # a's activation: checked, now writing its programs
        removal.start()
        removal.join(1.0)
        assert removal.is_alive(), "the removal ran while an activation was writing"
        _active(programs, "a", "a-b-worker")
        programs.script("a-b-worker").write_text("#!/bin/sh\n")
        (programs.launch_dir / "a.types").write_text("a-b-worker\n")
    removal.join(10)
    assert (programs.conf_dir / "a-b-worker.conf").exists() and programs.script("a-b-worker").exists()
    assert not (programs.launch_dir / "a-b.types").exists()


def test_a_procfile_of_too_many_types_fails_its_service():
    """1500 `wN:` lines were 1500 programs for supervisord, the controller and list-services."""
    from maestro_runtime.ops.processes import MAX_PROCESS_TYPES

    assert clash("web", {f"w{i}": "sleep 1" for i in range(MAX_PROCESS_TYPES)}, {}) is None
    field, reason = clash("web", {f"w{i}": "sleep 1" for i in range(1500)}, {})
    assert field == "processes" and reason == "1500 process types (Procfile or processes:); at most 32"
