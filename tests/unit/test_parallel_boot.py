"""The boot's bounded pool and the ports given ahead of it (pure parts of parallel provisioning)."""

from __future__ import annotations

import threading
import time

import pytest

from maestro_runtime.ops.parallel import map_bounded
from maestro_runtime.state.ports import PortLedger


def test_results_in_input_order_each_handed_over_and_never_more_than_jobs_at_once():
    running, peak, lock = 0, 0, threading.Lock()

    def work(item: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05 * (5 - item % 5))  # later items end first
        with lock:
            running -= 1
        return item * 10

    seen: list[int] = []
    assert map_bounded(work, list(range(10)), 3, on_result=seen.append) == [i * 10 for i in range(10)]
    assert sorted(seen) == [i * 10 for i in range(10)] and seen != sorted(seen)
    assert peak == 3


def test_idle_calls_while_nothing_ends_and_a_bug_is_raised_to_the_caller():
    idles: list[None] = []

    def work(item: int) -> int:
        time.sleep(0.3)
        if item == 1:
            raise RuntimeError("bug")
        return item

    with pytest.raises(RuntimeError, match="bug"):
        map_bounded(work, [0, 1], 2, on_idle=lambda: idles.append(None), idle_every=0.05)
    assert len(idles) >= 3


def test_results_that_end_during_a_slow_idle_call_are_handed_over_together_before_the_next():
    """on_idle is the boot's round trip to supervisord: one per run of results, never one each."""
    seen: list[int] = []
    seen_at_idle: list[int] = []

    def work(item: int) -> int:
        time.sleep(0.01 * item)  # one ends every 10 ms
        return item

    def slow_idle() -> None:
        seen_at_idle.append(len(seen))
        time.sleep(0.08)  # a round trip under load

    map_bounded(work, list(range(20)), 20, on_result=seen.append, on_idle=slow_idle, idle_every=5)
    assert seen_at_idle[-1] == 20  # the last results are sent at once, not left for later
    assert 2 <= len(seen_at_idle) <= 6, seen_at_idle


def test_ports_reserved_in_input_order_in_one_go(tmp_path):
    ledger = PortLedger(tmp_path / "ports.json")
    ledger.reserve([("old", None)], (8000, 8010), is_free=lambda p: True)
    given = ledger.reserve([("b", None), ("a", None), ("clash", 8000), ("x", 8005), ("old", None)],
                           (8000, 8010), is_free=lambda p: True)
    assert given == {"b": 8001, "a": 8002, "x": 8005, "old": 8000}  # clash: its own assign says why
    # provisioning later finds each port remembered, whatever order it runs in
    assert ledger.assign("a", None, (8000, 8010), is_free=lambda p: True) == 8002
