"""A bounded pool for the boot's provisioning: results in input order, each also handed over as it ends.

Hand-written rather than ``concurrent.futures.ThreadPoolExecutor``: its workers are joined when the
interpreter exits, so a SIGTERM during boot would wait for the longest build still running; these
are daemon threads, and once the caller unwinds no new item starts (the builds already running are
ended by the entrypoint with every other process below it, see engine/reaper.py).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_bounded(
    work: Callable[[Item], Result], items: Sequence[Item], jobs: int, *,
    on_result: Callable[[Result], None] | None = None, on_idle: Callable[[], None] | None = None,
    idle_every: float = 0.1,
) -> list[Result]:
    """``work(item)`` for every item on at most ``jobs`` threads. In the calling thread:
    ``on_result`` as each ends; ``on_idle`` whenever no result is waiting: after each run of
    results that ended together, and every ``idle_every`` seconds while none ends (so a slow
    ``on_idle``, a round trip to supervisord, sends many results at once instead of queueing one
    round trip per result). An exception out of ``work`` (a bug: provisioning turns failures
    into outcomes) is raised here."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    for pair in enumerate(items):
        todo.put(pair)

    def worker() -> None:
        while not stop.is_set():
            try:
                index, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((index, work(item), None))
            except BaseException as exc:  # handed to the caller, who decides
                done.put((index, None, exc))

    for number in range(min(max(jobs, 1), len(items))):
        threading.Thread(target=worker, name=f"provision-{number}", daemon=True).start()
    results: list = [None] * len(items)
    remaining = len(items)
    try:
        while remaining:
            try:
                index, result, error = done.get(timeout=idle_every)
            except queue.Empty:
                if on_idle is not None:
                    on_idle()
                continue
            if error is not None:
                raise error
            results[index] = result
            remaining -= 1
            if on_result is not None:
                on_result(result)
            if on_idle is not None and done.empty():
                on_idle()
    finally:
        stop.set()  # unwinding (SIGTERM, a bug): nothing new starts
    return results
