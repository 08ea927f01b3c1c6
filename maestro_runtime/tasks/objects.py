"""A branch's objects, from the shared store into a new checkout, and nothing else.

The store holds every branch anyone fetched (and what a force-push left behind); ``git clone
--local`` would hard-link its whole object folder, whatever ``--single-branch`` says, so a
checkout could read another entry's branch. Here a store file (a pack, a loose object) is
hard-linked only when every object in it is reachable from the branch; the branch's other
objects go into a pack of the checkout's own. Linked files stay root's and read-only, shared
on disk; a projects folder on another file system gets one pack of its own.

Runs as root, in root's store and root's new checkout only (the entry has not got it yet).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

Git = Callable[..., subprocess.CompletedProcess[str]]  # workspace._root_git


class ObjectsError(Exception):
    pass


def _ids(text: str) -> set[str]:
    """The object ids at the start of each line (rev-list --objects: "id [path]"; SHA-1 or SHA-256)."""
    return {line.split(" ", 1)[0] for line in text.splitlines() if line.strip()}


def reachable(git: Git, store: Path, branch: str) -> set[str]:
    proc = git(["--git-dir", str(store), "rev-list", "--objects", f"refs/heads/{branch}"])
    if proc.returncode != 0:
        raise ObjectsError(f"cannot list the objects of {branch!r}: {proc.stderr.strip()[-200:]}")
    return _ids(proc.stdout)


def pack_ids(index: Path) -> set[str] | None:
    """The objects of one pack (``show-index`` lines: "offset id (crc)"); None when unreadable.
    Not through ``Git``: the index goes to git's stdin as bytes."""
    with open(index, "rb") as fh:
        proc = subprocess.run(["git", "show-index"], stdin=fh, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return {parts[1] for parts in (line.split() for line in proc.stdout.splitlines()) if len(parts) >= 2}


def _link(source: Path, dest: Path) -> bool:
    """Hard-link ``source`` at ``dest``; False when the two are on different file systems."""
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            return False
        raise
    return True


def fill(git: Git, store: Path, branch: str, git_dir: Path) -> tuple[int, int]:
    """Put every object of ``branch`` into the new repository ``git_dir`` (its objects folder empty):
    (files hard-linked, objects packed)."""
    wanted = reachable(git, store, branch)
    left = set(wanted)
    objects, out = store / "objects", git_dir / "objects"
    linked = 0
    shared = True  # until a link crosses file systems
    for index in sorted((objects / "pack").glob("pack-*.idx")):
        pack = index.with_suffix(".pack")
        ids = pack_ids(index)
        if not shared or not ids or not pack.is_file() or not ids <= wanted:
            continue
        (out / "pack").mkdir(parents=True, exist_ok=True)
        parts = [p for p in (pack, index.with_suffix(".rev")) if p.is_file()] + [index]  # the index last
        for part in parts:
            shared = shared and _link(part, out / "pack" / part.name)
        if shared:
            linked += len(parts)
            left -= ids
    for folder in sorted(objects.glob("[0-9a-f][0-9a-f]")):
        for loose in folder.iterdir():
            oid = folder.name + loose.name
            if not shared or oid not in left:
                continue
            (out / folder.name).mkdir(exist_ok=True)
            if _link(loose, out / folder.name / loose.name):
                linked += 1
                left.discard(oid)
            else:
                shared = False
    if left:
        (out / "pack").mkdir(parents=True, exist_ok=True)
        proc = git(["--git-dir", str(store), "pack-objects", "--quiet", str(out / "pack" / "pack")],
                   input="".join(f"{oid}\n" for oid in sorted(left)))
        if proc.returncode != 0:
            raise ObjectsError(f"cannot pack the objects of {branch!r}: {proc.stderr.strip()[-200:]}")
    return linked, len(left)
