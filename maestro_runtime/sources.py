"""Fetching a project's source into its folder.

A new version is staged beside the project folder and swapped in only when it
is complete, so a failed fetch leaves the previous version intact. Folders the
service writes at run time (``keep``, default ``data/``) are carried over.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit


class SourceError(Exception):
    pass


def redact(source: str) -> str:
    """The source without credentials, for logs and list-services."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", source)


def local_path(repo: str) -> Path | None:
    """The folder a local spec points to (path or file:// URL), else None."""
    if repo.startswith("file://"):
        return Path(unquote(urlsplit(repo).path))
    if repo.startswith(("/", "./", "../")):
        return Path(repo)
    return None


def _copy_local(src: Path, staging: Path) -> None:
    if not src.is_dir():
        raise SourceError(f"local source {src} is not a folder")
    shutil.copytree(src, staging, symlinks=True)


def _carry_over(previous: Path, staging: Path, keep: Sequence[str]) -> None:
    for rel in keep:
        old = previous / rel
        if old.exists() and not old.is_symlink():
            new = staging / rel
            if new.exists() or new.is_symlink():
                if new.is_dir() and not new.is_symlink():
                    shutil.rmtree(new)
                else:
                    new.unlink()
            new.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, new)


def fetch(
    repo: str, ref: str, dest: Path, *, keep: Sequence[str] = ("data",), settings=None, sha256: str | None = None
) -> None:
    """Materialise ``repo`` at ``ref`` into ``dest``; all or nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.staging")
    old = dest.with_name(f".{dest.name}.old")
    for leftover in (staging, old):  # from a crash mid-fetch
        if leftover.exists():
            shutil.rmtree(leftover)
    src = local_path(repo)
    if src is None:
        raise SourceError(f"unsupported source {redact(repo)!r} (expected a folder or file:// URL)")
    try:
        _copy_local(src, staging)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SourceError(f"copying {src} failed: {exc}") from exc
    if dest.exists():
        _carry_over(dest, staging, keep)
        os.replace(dest, old)
    os.replace(staging, dest)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(old)
