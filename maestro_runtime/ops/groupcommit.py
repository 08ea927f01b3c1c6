"""Group commit: many threads ask for work that is cheaper done together (one locked write of the
account files for many accounts); one caller at a time becomes the writer and does the work of
every request queued so far, the others wait for their own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


@dataclass(eq=False)
class _Ticket(Generic[K]):
    key: K
    done: bool = False
    outcome: object = None


class GroupCommit(Generic[K, R]):
    """``write(keys)`` gets each queued key once (in the order they came) and returns an outcome
    per key: a result, or the exception that caller gets."""

    def __init__(self, write: Callable[[Sequence[K]], Mapping[K, R | Exception]]):
        self._write = write
        self._cond = threading.Condition()
        self._queue: list[_Ticket[K]] = []
        self._writing = False
        self.writes = 0  # batches written (for tests and benchmarks)

    def submit(self, key: K) -> R:
        ticket = _Ticket(key)
        with self._cond:
            self._queue.append(ticket)
            while self._writing and not ticket.done:
                self._cond.wait()
            writer = not ticket.done
            if writer:
                self._writing, batch, self._queue = True, self._queue, []
        if writer:
            keys = list(dict.fromkeys(t.key for t in batch))
            outcomes: Mapping[K, R | Exception] = {}
            try:
                self.writes += 1
                outcomes = self._write(keys)
            except Exception as exc:  # the writer's bug: the others get an error too, never a hang
                outcomes = dict.fromkeys(keys, RuntimeError(f"writing a batch failed: {exc!r}"))
                raise
            finally:
                with self._cond:
                    for waiting in batch:
                        waiting.outcome = outcomes.get(waiting.key, RuntimeError(f"no outcome for {waiting.key!r}"))
                        waiting.done = True
                    self._writing = False
                    self._cond.notify_all()
        if isinstance(ticket.outcome, Exception):
            raise ticket.outcome
        return ticket.outcome  # type: ignore[return-value]
