"""The one size grammar (memory limits in YAML, ``MAESTRO_SANDBOX_MEMORY``, export): pure.

``512M``, ``1G``, ``1GiB``, ``2T``, ``1048576`` (bytes), ``max`` (no limit); binary units,
as cgroups and docker use, case-insensitive, an optional ``B``/``iB``.
"""

from __future__ import annotations

import re

SIZE_FORM = "a size like 512M, 1G, 1GiB or max"
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int | None:
    """``512M`` -> bytes; ``max`` -> None (no limit). Binary units, as cgroups and docker use."""
    raw = str(text).strip()
    if raw.lower() in ("max", "none", "unlimited"):
        return None
    match = _SIZE.match(raw)
    if not match:
        raise ValueError(f"{raw[:20]!r} is not {SIZE_FORM}")
    value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"{raw[:20]!r} must be positive")
    return value


def format_size(value: int | None) -> str:
    if value is None:
        return "max"
    for unit in ("T", "G", "M", "K"):
        if value % _UNITS[unit.lower()] == 0:
            return f"{value // _UNITS[unit.lower()]}{unit}"
    return str(value)
