"""Dependency builds (Python venv, Node modules) as the project's own user."""

from __future__ import annotations

from pathlib import Path


class BuildError(Exception):
    pass


def build(directory: Path, account, *, settings, policy, service_id: str) -> None:
    """Install the project's dependencies; nothing to do for a project without a manifest."""
    return None
