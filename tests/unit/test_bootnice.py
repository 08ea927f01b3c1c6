"""The controller's boot priority: real setpriority on this process's threads (root has CAP_SYS_NICE)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from maestro_runtime.engine import bootnice


def thread_nice(tid: int) -> int:
    # /proc/<pid>/task/<tid>/stat: field 19 is the nice value (after the ")" of the command name)
    return int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_cap_sys_nice_is_read_from_the_effective_set():
    assert bootnice.can_restore("Name:\tx\nCapEff:\t0000000000800000\n")
    assert not bootnice.can_restore("CapEff:\t00000000a80425fb\n")  # Docker's default set: no SYS_NICE
    assert not bootnice.can_restore("Name:\tx\n")


def test_no_marker_no_lowering(tmp_path):
    assert not bootnice.lower_while_booting(tmp_path / "booting")


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring nice 0 needs CAP_SYS_NICE (root)")
def test_lowered_threads_inherit_it_and_restore_brings_every_thread_back(tmp_path):
    marker = tmp_path / "booting"
    marker.touch()
    ready, done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def worker():
        seen["tid"] = threading.get_native_id()
        ready.set()
        done.wait(10)

    def run():  # in a thread of its own, so the test process's main thread keeps its priority
        assert bootnice.lower_while_booting(marker)
        child = threading.Thread(target=worker)
        child.start()
        ready.wait(10)
        seen["lowered"] = thread_nice(seen["tid"])
        bootnice.restore()
        seen["restored"] = thread_nice(seen["tid"])
        seen["self"] = thread_nice(threading.get_native_id())
        done.set()
        child.join()

    before = os.getpriority(os.PRIO_PROCESS, 0)
    outer = threading.Thread(target=run)
    outer.start()
    outer.join(20)
    assert seen == {"tid": seen["tid"], "lowered": bootnice.BOOT_NICE, "restored": 0, "self": 0}
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative nice needs CAP_SYS_NICE (root)")
def test_hurry_puts_the_calling_thread_ahead_and_restore_undoes_it():
    seen: dict[str, object] = {}

    def run():
        seen["hurried"] = bootnice.hurry()
        seen["during"] = thread_nice(threading.get_native_id())
        bootnice.restore()
        seen["after"] = thread_nice(threading.get_native_id())

    outer = threading.Thread(target=run)
    outer.start()
    outer.join(20)
    assert seen == {"hurried": True, "during": bootnice.HURRY_NICE, "after": 0}
