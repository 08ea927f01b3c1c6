"""CPU and memory of each service's whole process tree (psutil)."""

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


def sample_tree(pid: int, now: float, previous: Sample | None = None) -> Sample | None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu, rss = 0.0, 0
    for proc in procs:
        # A child may end between listing and reading.
        with contextlib.suppress(psutil.Error), proc.oneshot():
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
    percent = None
    if previous is not None and previous.pid == pid and now > previous.at:
        percent = max(0.0, (cpu - previous.cpu_seconds) / (now - previous.at) * 100.0)
    return Sample(pid, cpu, rss, now, percent)
