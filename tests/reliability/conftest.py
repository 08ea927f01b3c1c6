"""Reliability suite: real supervisord, real processes, bounded in time.

Counts (inputs tried, faults injected, services checked) are collected in
``COUNTS`` and written to $MAESTRO_RELIABILITY_COUNTS (JSON) at the end, so
benchmarks/README.md can quote them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import maestro  # noqa: F401  (the fixture, reused as is)

COUNTS: Counter[str] = Counter()


def count(key: str, n: int = 1) -> None:
    COUNTS[key] += n


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("MAESTRO_RELIABILITY_COUNTS")
    if target and COUNTS:
        Path(target).write_text(json.dumps(dict(sorted(COUNTS.items())), indent=1) + "\n")


def pytest_terminal_summary(terminalreporter):
    if COUNTS:
        terminalreporter.write_line("reliability counts: " + ", ".join(f"{k}={v}" for k, v in sorted(COUNTS.items())))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real users and supervisord")
