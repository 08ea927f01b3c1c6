"""Group commit: many threads ask for work that is cheaper done together (one locked write of the
account files for many accounts); one caller at a time becomes the writer and does the work of
every request queued so far, the others wait for their own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


@dataclass(eq=False)
class _Ticket(Generic[K]):
    key: K
    woken: threading.Event = field(default_factory=threading.Event)
    done: bool = False  # else, once woken: this caller writes the next batch
    outcome: object = None


class GroupCommit(Generic[K, R]):
    """``write(keys)`` gets each queued key once (in the order they came) and returns an outcome
    per key: a result, or the exception that caller gets. Only the callers of a finished batch
    and the next writer are woken (32 threads woken per batch cost more than the batch)."""

    def __init__(self, write: Callable[[Sequence[K]], Mapping[K, R | Exception]]):
        self._write = write
        self._lock = threading.Lock()
        self._queue: list[_Ticket[K]] = []
        self._writing = False
        self.writes = 0  # batches written (for tests and benchmarks)

    def submit(self, key: K) -> R:
        ticket = _Ticket(key)
        with self._lock:
            self._queue.append(ticket)
            wait, self._writing = self._writing, True
        if wait:
            ticket.woken.wait()
        if not ticket.done:
            self._write_queued()
        if isinstance(ticket.outcome, Exception):
            raise ticket.outcome
        return ticket.outcome  # type: ignore[return-value]

    def _write_queued(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        keys = list(dict.fromkeys(t.key for t in batch))
        outcomes: Mapping[K, R | Exception] = {}
        try:
            self.writes += 1
            outcomes = self._write(keys)
        except Exception as exc:  # the writer's bug: the others get an error too, never a hang
            outcomes = dict.fromkeys(keys, RuntimeError(f"writing a batch failed: {exc!r}"))
            raise
        finally:
            for waiting in batch:
                waiting.outcome = outcomes.get(waiting.key, RuntimeError(f"no outcome for {waiting.key!r}"))
                waiting.done = True
                waiting.woken.set()
            with self._lock:
                if self._queue:
                    self._queue[0].woken.set()  # queued meanwhile: it writes the next batch
                else:
                    self._writing = False
