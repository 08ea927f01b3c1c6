"""What a git checkout would write, judged before it writes it (pure).

An archive is checked member by member before extraction (extract.py); a git
checkout gets the same caps and the same rule for links, from ``git ls-tree``
of the commit, before ``git checkout`` writes a file. A highly compressible
blob makes a small pack and a huge file: the pack is capped while it arrives
(git.py), the tree here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from maestro_runtime.sources.extract import Caps

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"  # a gitlink: checked out as an empty folder (submodules are never fetched)


class TreeRefused(Exception):
    """The checkout is over a cap or holds a link out of the project."""


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    object_id: str
    size: int  # bytes of a blob; 0 for a gitlink
    path: str

    @property
    def is_link(self) -> bool:
        return self.mode == SYMLINK_MODE


def parse_ls_tree(output: str) -> list[TreeEntry]:
    """``git ls-tree -r -l -z`` output: ``<mode> SP <type> SP <id> SP+ <size> TAB <path> NUL`` each."""
    entries = []
    for record in output.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _kind, object_id, size = meta.split(maxsplit=3)
        entries.append(TreeEntry(mode, object_id, int(size) if size.strip().isdigit() else 0, path))
    return entries


def check_tree(entries: list[TreeEntry], link_targets: dict[str, str], caps: Caps) -> None:
    """Refuse a checkout over ``caps`` (MAESTRO_EXTRACT_MAX_FILES/_BYTES, as for archives) or with
    a symlink whose target leaves the project (``link_targets``: object id -> target)."""
    if len(entries) > caps.max_files:
        raise TreeRefused(f"the checkout has {len(entries)} files, over MAESTRO_EXTRACT_MAX_FILES={caps.max_files}")
    total = sum(entry.size for entry in entries if not entry.is_link)
    if total > caps.max_bytes:
        raise TreeRefused(f"the checkout is {total} bytes, over MAESTRO_EXTRACT_MAX_BYTES={caps.max_bytes}")
    for entry in entries:
        if entry.is_link:
            target = link_targets.get(entry.object_id, "/")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                raise TreeRefused(f"symlink {entry.path!r} -> {target!r} points outside the project")


def parse_link_batch(output: bytes) -> dict[str, str]:
    """``git cat-file --batch`` output for link blobs: ``<id> blob <size> LF <content> LF`` each."""
    targets: dict[str, str] = {}
    at = 0
    while at < len(output):
        end = output.index(b"\n", at)
        header = output[at:end].split()
        if len(header) < 3:  # "<id> missing"
            at = end + 1
            continue
        size = int(header[2])
        targets[header[0].decode()] = output[end + 1:end + 1 + size].decode("utf-8", "surrogateescape")
        at = end + 1 + size + 1
    return targets
