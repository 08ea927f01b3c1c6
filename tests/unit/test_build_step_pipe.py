"""A build step's output reaches its log through a pipe root reads (sources/buildrun.py run_step):
the exit code, stdout and stderr as before, a timeout, and no wait on a process the step left
behind holding the pipe. Real processes (sh, sleep); no privilege drop (run_plan adds it)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time

import pytest

from maestro_runtime.sources.buildlog import CappedLog
from maestro_runtime.sources.buildrun import DRAIN, run_step


def _run(tmp_path, script: str, timeout: float | None = 30.0) -> tuple[int | None, str, float]:
    path = tmp_path / "web.build.log"
    started = time.monotonic()
    with CappedLog(path) as log:
        code = run_step(["/bin/sh", "-c", script], tmp_path, {"PATH": "/usr/bin:/bin"}, log, timeout)
    return code, path.read_text(), time.monotonic() - started


def test_both_streams_reach_the_log_and_the_code_comes_back(tmp_path):
    code, text, _ = _run(tmp_path, "echo out; echo err >&2; exit 3")
    assert code == 3
    assert text == "out\nerr\n"


def test_a_step_past_its_time_is_ended(tmp_path):
    code, text, took = _run(tmp_path, "echo started; exec sleep 30", timeout=1.0)
    assert code is None and text == "started\n"
    assert took < 10


def test_a_step_that_closed_its_output_is_still_timed(tmp_path):
    """EOF on the pipe is not the step's end: it may go on with its output elsewhere."""
    code, _, took = _run(tmp_path, "exec >/dev/null 2>&1; sleep 30", timeout=1.0)
    assert code is None and took < 10


def test_a_process_left_behind_holding_the_pipe_keeps_no_build_waiting(tmp_path):
    """Before, the log file was the step's stdout: such a process could write to root's log
    forever after the build ended. Now root closes the pipe: its next write fails (SIGPIPE)."""
    code, text, took = _run(tmp_path, "(sleep 3; echo late; echo later >&2) & echo $!; echo done")
    pid = int(text.split()[0])
    try:
        assert code == 0 and text.endswith("done\n")
        assert took < DRAIN + 2
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        assert "late" not in (tmp_path / "web.build.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_quiet_step_is_waited_for(tmp_path):
    code, text, took = _run(tmp_path, "sleep 1.2; echo finally")
    assert code == 0 and text == "finally\n" and took >= 1.2


def test_a_command_that_cannot_start_raises_oserror_and_leaks_no_descriptor(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    with CappedLog(tmp_path / "web.build.log") as log:
        try:
            run_step([str(tmp_path / "missing")], tmp_path, {}, log, 5)
        except OSError:
            pass
        else:
            raise AssertionError("a missing command ran")
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_runtime_with_many_descriptors_open_still_runs_steps(tmp_path):
    """A busy boot (parallel builds, sockets) may hand the pipe a descriptor past 1024, where
    select() fails (ValueError: filedescriptor out of range): poll() has no such limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open("/dev/null", os.O_RDONLY))
        code, text, _ = _run(tmp_path, "echo fine")
        assert code == 0 and text == "fine\n"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
