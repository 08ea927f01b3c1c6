"""Durations like ``1s``, ``500ms``, ``5m``, ``1h`` or a bare number of seconds (pure, stdlib)."""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(raw: object) -> float:
    """Seconds as a float; ValueError with a one-line reason otherwise."""
    if isinstance(raw, bool):
        raise ValueError(f"must be a duration like 10s, 500ms or 5m, got {raw!r}")
    if isinstance(raw, (int, float)):
        if raw < 0:
            raise ValueError(f"must not be negative, got {raw!r}")
        return float(raw)
    match = _DURATION_RE.match(str(raw))
    if not match:
        raise ValueError(f"must be a duration like 10s, 500ms or 5m, got {str(raw)[:20]!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]
