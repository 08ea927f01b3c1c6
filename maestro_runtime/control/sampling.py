"""CPU and memory of each service's whole process tree (psutil).

One pass over the process table per sample builds the parent -> children map;
``Process.children()`` per service would scan the whole table once per service
(measured: 0.5 s per sample at 100 services, 10% of a core at one sample in 5 s).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    pid: int
    cpu_seconds: float  # user + system of the processes alive now
    rss: int  # bytes, summed over the tree
    at: float  # monotonic time of the sample
    cpu_percent: float | None = None  # since the previous sample of the same pid; None for the first


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    return children


def tree_pids(root: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def sample_tree(pid: int, now: float, previous: Sample | None = None,
                children: dict[int, list[int]] | None = None) -> Sample | None:
    if not psutil.pid_exists(pid):
        return None
    cpu, rss = 0.0, 0
    for member in tree_pids(pid, children if children is not None else children_map()):
        # A child may end between listing and reading.
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(member)
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
    percent = None
    if previous is not None and previous.pid == pid and now > previous.at:
        percent = max(0.0, (cpu - previous.cpu_seconds) / (now - previous.at) * 100.0)
    return Sample(pid, cpu, rss, now, percent)
