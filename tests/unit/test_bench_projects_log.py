"""bench_projects keeps the whole boot log of a run where a project failed (a rare race is read afterwards)."""

from benchmarks.bench_projects import failed, keep_log


def row(**changes):
    base = {"project": "fastapi", "answered": 2.1, "error": "", "status": "RUNNING"}
    return {**base, **changes}


def test_which_runs_keep_their_log():
    assert not failed([row(), row(project="static")])
    assert failed([row(), row(answered=None, status="FAILED", error="internal error: TypeError(...)")])
    assert failed([row(error="a previous version kept running")])  # answered, but it failed
    assert failed([row(answered=None, status="STARTING")])  # never answered, whatever the reason


def test_the_log_is_kept_whole_and_never_overwritten(tmp_path):
    text = "".join(f"line {i}\n" for i in range(5000))  # longer than the tail the json keeps
    first = keep_log({"log": text}, tmp_path / "projects", 1764470000.25)
    second = keep_log({"log": "other"}, tmp_path / "projects", 1764470000.5)
    assert first.name == "projects-failed-20251130T023320.250000Z.log"
    assert first.read_text() == text and second.read_text() == "other"
