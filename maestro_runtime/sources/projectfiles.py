"""Reading a project's own files as root does: safely, capped, never blocking."""

from __future__ import annotations

from pathlib import Path

from maestro_runtime import safefs

READ_LIMIT = 4 * 1024 * 1024


def read_text(directory: Path, path: Path) -> str | None:
    """A project file as root reads it: no link followed on the way, regular files only,
    capped, never blocking (a FIFO named package.json must not hang the boot); None otherwise."""
    try:
        data = safefs.read_file(path, under=directory.parent, limit=READ_LIMIT)
    except (safefs.UnsafeFile, OSError, ValueError):
        return None
    return None if data is None else data.decode("utf-8", "replace")
