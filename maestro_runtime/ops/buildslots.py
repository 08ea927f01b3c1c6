"""How many builds run at once (``MAESTRO_BUILD_JOBS``), how many of them Node builds (the
memory-hungry ones: at most one per GiB of the container's limit by default, settings/parts.py),
and a build alone when it must be. A Python build (100-200 MB) thus never waits behind a Node
build that takes minutes, where the memory allows only one of those.

A build the kernel killed (``SIGKILL``: the OOM killer, most likely) while other builds ran
beside it gets one more try alone (:meth:`BuildSlots.alone`): the memory it lacked was the
others'. Builds run with the highest ``oom_score_adj`` (sources/builds.py), so in a container
that runs out of memory the kernel ends a build, never a running service or the runtime.

Hand-written on a ``threading.Condition`` rather than a semaphore: a build must know whether
another one ran beside it, and a build alone waits for every other to end.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from maestro_runtime.sources.buildplan import BuildError


@dataclass
class Run:
    """One build holding a slot; ``overlapped`` once another build ran at the same time."""

    node: bool = False
    overlapped: bool = False


class BuildSlots:
    def __init__(self, jobs: int, stopping: threading.Event, node_jobs: int | None = None):
        self.jobs = max(jobs, 1)
        self.node_jobs = min(max(node_jobs or self.jobs, 1), self.jobs)
        self.stopping = stopping
        self._changed = threading.Condition()
        self._running: list[Run] = []
        self._exclusive = False  # a build runs alone: nothing else starts
        self._waiting_alone = 0  # builds waiting to run alone: nothing new starts before them

    @contextlib.contextmanager
    def slot(self, node: bool = False) -> Iterator[Run]:
        """One of ``jobs`` slots, shared with other builds; a Node build also one of ``node_jobs``."""
        def free() -> bool:
            nodes = sum(r.node for r in self._running)
            return (len(self._running) < self.jobs and not (node and nodes >= self.node_jobs)
                    and not self._exclusive and not self._waiting_alone)

        with self._held(free, node=node) as run:
            yield run

    @contextlib.contextmanager
    def alone(self) -> Iterator[Run]:
        """Every slot: waits until no other build runs, and none starts until this one ends."""
        with self._changed:
            self._waiting_alone += 1
        try:
            with self._held(lambda: not self._running, exclusive=True) as run:
                yield run
        finally:
            with self._changed:
                self._waiting_alone -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def _held(self, free, exclusive: bool = False, node: bool = False) -> Iterator[Run]:
        run = Run(node=node)
        with self._changed:
            self._changed.wait_for(lambda: free() or self.stopping.is_set())
            if self.stopping.is_set():  # a slot freed by a build the stop just ended
                raise BuildError("not started: the boot is stopping")
            for other in self._running:
                other.overlapped = run.overlapped = True
            self._running.append(run)
            self._exclusive = exclusive
        try:
            yield run
        finally:
            with self._changed:
                self._running.remove(run)
                if exclusive:
                    self._exclusive = False
                self._changed.notify_all()

    def wake(self) -> None:
        """After ``stopping`` is set: builds waiting for a slot give up at once."""
        with self._changed:
            self._changed.notify_all()
