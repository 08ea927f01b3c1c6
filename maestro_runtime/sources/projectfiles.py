"""Reading a project's own files as root does: safely, capped, never blocking.

:class:`ProjectFiles` is one look at a project folder for one step of one service's
provisioning: the names at its top (one safe walk and one listing), and each file the
detectors ask for read once, through :mod:`safefs` like :func:`read_text`, then remembered.
It is taken again after anything of the project's ran (its build, its release phase), and
never kept across services or boots: a service may change its files at any time.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime import safefs

READ_LIMIT = 4 * 1024 * 1024


def read_text(directory: Path, path: Path) -> str | None:
    """A project file as root reads it: no link followed on the way, regular files only,
    capped, never blocking (a FIFO named package.json must not hang the boot); None otherwise.
    A hard link to a file its folder's owner does not own is not the project's either: where
    fs.protected_hardlinks is off, a service can link root's files into its folder (a ``.env``
    linked to a secret would put it in the service's environment)."""
    try:
        with safefs.opened_dir(path.parent, under=directory.parent) as parent:
            found = safefs.read_stat_at(parent, path.name, path, limit=READ_LIMIT)
            owner = os.fstat(parent).st_uid
    except (safefs.UnsafeFile, OSError, ValueError):
        return None
    if found is None or (found[1].st_nlink > 1 and found[1].st_uid != owner):
        return None
    return found[0].decode("utf-8", "replace")


def list_names(directory: Path) -> frozenset[str]:
    """The entries at the top of a project folder (of any kind), walked to as safefs does;
    none when the folder is missing, not a folder or reached through a link."""
    try:
        with safefs.opened_dir(directory, under=directory.parent) as fd:
            return frozenset(os.listdir(fd))
    except (safefs.UnsafeFile, OSError, ValueError):
        return frozenset()


@dataclass(frozen=True, eq=False)
class ProjectFiles:
    """A project folder's top-level names, and a memo of the files read in it (see the module)."""

    directory: Path
    names: frozenset[str]
    _texts: dict[str, str | None] = field(default_factory=dict, repr=False)
    _docs: dict[tuple[str, Callable], object] = field(default_factory=dict, repr=False)

    @classmethod
    def take(cls, directory: Path) -> ProjectFiles:
        directory = Path(directory)
        return cls(directory, list_names(directory))

    @classmethod
    def of(cls, project: Path | ProjectFiles) -> ProjectFiles:
        """The given look, or a fresh one of a folder (callers that hold only its path)."""
        return project if isinstance(project, ProjectFiles) else cls.take(project)

    def text(self, relative: str) -> str | None:
        """A file's text as :func:`read_text` gives it; a top-level name absent from the listing
        is None without a look. Read once: later asks get the same text."""
        if "/" not in relative and relative not in self.names:
            return None
        if relative not in self._texts:
            self._texts[relative] = read_text(self.directory, self.directory / relative)
        return self._texts[relative]

    def doc(self, name: str, parse: Callable[[str], object], errors: type[Exception] | tuple) -> object | None:
        """The file parsed by ``parse`` (None when missing or when it raises ``errors``), parsed once:
        every caller gets the same object, to read, never to change."""
        key = (name, parse)
        if key not in self._docs:
            text = self.text(name)
            try:
                self._docs[key] = None if text is None else parse(text)
            except (errors, RecursionError):  # RecursionError: nested past the parser's depth
                self._docs[key] = None
        return self._docs[key]

    def is_file(self, name: str) -> bool:
        """``Path.is_file`` of a top-level name, skipped when the listing has no such name."""
        return name in self.names and (self.directory / name).is_file()

    def matching(self, pattern: str) -> list[str]:
        """Top-level names matching a glob pattern, sorted, as ``Path.glob`` finds them (hidden ones too)."""
        return sorted(n for n in self.names if fnmatch.fnmatchcase(n, pattern))
