"""Build slots (ops/buildslots.py): at most ``jobs`` at once, who ran beside whom, a build alone."""

from __future__ import annotations

import threading
import time

import pytest

from maestro_runtime.ops.buildslots import BuildSlots
from maestro_runtime.sources.buildplan import BuildError


def in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_a_build_alone_in_its_slot_did_not_overlap():
    slots = BuildSlots(2, threading.Event())
    with slots.slot() as run:
        pass
    assert not run.overlapped


def test_builds_side_by_side_both_overlapped_even_when_one_ended_first():
    slots = BuildSlots(2, threading.Event())
    with slots.slot() as first, slots.slot() as second:
        pass
    assert first.overlapped and second.overlapped
    with slots.slot() as later:  # after both ended: alone
        pass
    assert not later.overlapped


def test_no_more_than_jobs_at_once():
    slots = BuildSlots(1, threading.Event())
    order: list[str] = []

    def second():
        with slots.slot():
            order.append("second")

    with slots.slot():
        waiter = in_thread(second)
        time.sleep(0.1)
        assert not order  # still waiting for the one slot
        order.append("first ends")
    waiter.join(2)
    assert order == ["first ends", "second"]


def test_alone_waits_for_every_build_and_goes_before_later_ones():
    slots = BuildSlots(2, threading.Event())
    order: list[str] = []

    def alone():
        with slots.alone() as run:
            order.append("alone")
            time.sleep(0.1)
            order.append("alone ends")
        assert not run.overlapped

    def later():
        with slots.slot():
            order.append("later")

    with slots.slot():
        threads = [in_thread(alone)]
        time.sleep(0.05)
        threads.append(in_thread(later))  # a slot is free, but a build waits to run alone
        time.sleep(0.1)
        assert order == []
        order.append("running ends")
    for thread in threads:
        thread.join(2)
    assert order == ["running ends", "alone", "alone ends", "later"]


def test_no_build_begins_once_the_boot_stops():
    stopping = threading.Event()
    slots = BuildSlots(1, stopping)
    errors: list[str] = []

    def waiting():
        try:
            with slots.slot():
                errors.append("began")
        except BuildError as exc:
            errors.append(str(exc))

    with slots.slot():
        waiter = in_thread(waiting)
        time.sleep(0.05)
        stopping.set()
        slots.wake()
        waiter.join(2)
    assert errors == ["not started: the boot is stopping"]
    with pytest.raises(BuildError), slots.alone():
        pass


def test_a_python_build_runs_beside_a_node_build_but_two_node_builds_do_not():
    """--memory 1g on 2 cores: builds 2, Node builds 1. A pip build of seconds no longer waits
    behind a Node build of minutes; a second Node build still waits for the first."""
    slots = BuildSlots(2, threading.Event(), node_jobs=1)
    order: list[str] = []

    def build(name: str, node: bool) -> threading.Thread:
        def go():
            with slots.slot(node=node):
                order.append(name)
        return in_thread(go)

    with slots.slot(node=True):
        second_node = build("node-2", True)
        python = build("python", False)
        python.join(2)
        time.sleep(0.05)
        assert order == ["python"]  # beside the running Node build; node-2 still waits
        order.append("node-1 ends")
    second_node.join(2)
    assert order == ["python", "node-1 ends", "node-2"]
    assert BuildSlots(2, threading.Event(), node_jobs=5).node_jobs == 2  # never more than the builds
