"""Root's file operations inside folders a service can write (stdlib only).

A service owns its project folder and home and may change anything there at
any moment, so root never resolves a path through them: it opens the trusted
parent (a folder only root can change: the pre-seeded root, the projects dir,
the home root), then walks one name at a time with ``O_NOFOLLOW`` relative to
the descriptor it holds, and acts on descriptors (``fchown``/``fchmod``), never
on names it checked before. Links are never followed; files of other kinds
(FIFO, socket, device) are never opened for reading or written; a file with
several links that the service does not already own is never re-owned (it may
be a link to a root file elsewhere). Reads are size-capped and never block.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# O_PATH: no read permission needed and no side effect of opening (devices, FIFOs).
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
MAX_DEPTH = 256  # one descriptor per level is held while walking


class UnsafeFile(Exception):
    """A file root refused to touch; the message names it and says why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "a regular file"


# ---------------------------------------------------------------- opening folders


def open_dir(path: Path, *, under: Path) -> int:
    """A descriptor of ``path``, walked from ``under`` (trusted: only root can change it)
    one name at a time without following links. Raises FileNotFoundError or UnsafeFile."""
    path, under = Path(path), Path(under)
    rel = path.relative_to(under).parts
    fd = os.open(under, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for index, name in enumerate(rel):
        fd = _step(fd, name, under.joinpath(*rel[: index + 1]))  # closes the parent, even on error
    return fd


def _step(parent: int, name: str, shown: Path) -> int:
    """Open folder ``name`` in ``parent`` (closed here either way) without following a link."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            raise UnsafeFile(shown, f"is {_kind(st.st_mode)}, not a folder") from None
        raise
    finally:
        os.close(parent)


@contextlib.contextmanager
def opened_dir(path: Path, *, under: Path) -> Iterator[int]:
    fd = open_dir(path, under=under)
    try:
        yield fd
    finally:
        os.close(fd)


def trusted_parent(path: Path) -> Path:
    """The parent of a service's top folder (project folder, home): root's, so trusted."""
    return Path(path).parent


def ensure_dir(parent: int, name: str, shown: Path, *, uid: int | None = None, gid: int | None = None,
               mode: int | None = None) -> int:
    """Folder ``name`` in ``parent``, created when missing, then owned and moded through its
    descriptor: a link or file planted in its place is refused, never followed."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
    fd = _step(os.dup(parent), name, shown)
    try:
        st = os.fstat(fd)
        if uid is not None and gid is not None and (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        if mode is not None and stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---------------------------------------------------------------- reading


def exists(parent: int, name: str) -> bool:
    """Whether any entry (a link too) has this name; nothing is followed."""
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def read_at(parent: int, name: str, shown: Path, *, limit: int) -> bytes | None:
    """The content of regular file ``name`` (None when missing). A link, FIFO, socket or
    device, or a file over ``limit`` bytes, raises UnsafeFile; nothing ever blocks."""
    found = read_stat_at(parent, name, shown, limit=limit)
    return None if found is None else found[0]


def read_stat_at(parent: int, name: str, shown: Path, *, limit: int) -> tuple[bytes, os.stat_result] | None:
    """``read_at`` with the status of the very file read (its owner, its links)."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EWOULDBLOCK):
            # ELOOP: a link; ENXIO: a socket; EWOULDBLOCK: a FIFO or device with a lease.
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            raise UnsafeFile(shown, f"is {_kind(st.st_mode)}, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(shown, f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise UnsafeFile(shown, f"is larger than {limit} bytes")
        data = _read_all(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsafeFile(shown, f"is larger than {limit} bytes")
    return data, st


def _read_all(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_file(path: Path, *, under: Path, limit: int) -> bytes | None:
    """``read_at`` for a path below a trusted folder (None when the file or a folder is missing)."""
    path = Path(path)
    try:
        with opened_dir(path.parent, under=under) as parent:
            return read_at(parent, path.name, path, limit=limit)
    except FileNotFoundError:
        return None


def owner_at(parent: int, name: str) -> os.stat_result | None:
    """lstat of ``name``: who owns it, what it is, how many links it has."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- writing


def write_at(parent: int, name: str, data: bytes, *, mode: int = 0o644, uid: int | None = None,
             gid: int | None = None) -> None:
    """Replace ``name`` atomically: a fresh temp file (O_EXCL|O_NOFOLLOW, so a planted link is
    never written through), owned and moded by descriptor, then renamed over ``name``."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
    try:
        try:
            os.write(fd, data)
            if uid is not None and gid is not None:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        raise


def create_at(parent: int, name: str, data: bytes = b"", *, mode: int = 0o644, uid: int | None = None,
              gid: int | None = None) -> bool:
    """Create ``name`` unless any entry (a link too) has that name; False when it existed."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=parent)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        if uid is not None and gid is not None:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


# ---------------------------------------------------------------- whole trees


def own_tree(root: int, uid: int, gid: int, shown: Path, *, mode: int | None = None,
             leave: Sequence[str] = ()) -> list[str]:
    """Give the tree under descriptor ``root`` to uid:gid. Links are never followed nor
    re-owned; FIFOs, sockets and devices, and files with several links, are left as they
    are unless the service owns them already; top-level names in ``leave`` are left too.
    Returns the paths left alone for a reason worth a warning."""
    skipped: list[str] = []
    st = os.fstat(root)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(root, uid, gid)
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(root, mode)
    stack: list[tuple[int, Path, Iterator[os.DirEntry[str]]]] = []

    def push(fd: int, where: Path) -> None:
        if len(stack) >= MAX_DEPTH:
            os.close(fd)
            raise UnsafeFile(where, f"nested deeper than {MAX_DEPTH} folders")
        stack.append((fd, where, iter(list(os.scandir(fd)))))

    push(os.dup(root), shown)
    try:
        while stack:
            fd, where, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(stack.pop()[0])
                continue
            if (len(stack) == 1 and entry.name in leave) or _settled(entry, uid, gid):
                continue
            child = _own_entry(fd, entry.name, where / entry.name, uid, gid, skipped)
            if child is not None:
                push(child, where / entry.name)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return skipped


def _settled(entry: os.DirEntry[str], uid: int, gid: int) -> bool:
    """Nothing to do, judged from the listing's own lstat (no extra system call): a link, or a
    file the service owns. A stale answer only ever means something is left as it was."""
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return True
    if stat.S_ISLNK(st.st_mode):
        return True
    return not stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (uid, gid)


def _own_entry(parent: int, name: str, shown: Path, uid: int, gid: int, skipped: list[str]) -> int | None:
    """Re-own one entry through a descriptor; a folder's descriptor is returned to walk into."""
    try:
        fd = os.open(name, PATH_FLAGS, dir_fd=parent)
    except FileNotFoundError:  # gone meanwhile: the service changes its own tree
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):  # never followed; its owner does not matter
            return None
        if (st.st_uid, st.st_gid) == (uid, gid) and not stat.S_ISDIR(st.st_mode):
            return None
        if stat.S_ISDIR(st.st_mode):
            return _own_dir(parent, name, st, uid, gid)
        if not stat.S_ISREG(st.st_mode):
            skipped.append(f"{shown} ({_kind(st.st_mode)})")
        elif st.st_nlink > 1:
            if not (st.st_uid == 0 and not st.st_mode & 0o222):  # root's read-only objects: on purpose
                skipped.append(f"{shown} (a file with {st.st_nlink} links)")
        else:
            # The magic link names exactly the inode opened above, whatever the name is now.
            os.chown(f"/proc/self/fd/{fd}", uid, gid)
        return None
    finally:
        os.close(fd)


def _own_dir(parent: int, name: str, seen: os.stat_result, uid: int, gid: int) -> int | None:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            return None  # swapped for a link or a file meanwhile: left alone
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        return None
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
    return fd


def remove_at(parent: int, name: str) -> None:
    """Remove ``name`` (a whole tree) from ``parent``; a link is removed, never followed."""
    st = owner_at(parent, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)
        return
    assert shutil.rmtree.avoids_symlink_attacks  # fd-based on Linux: never leaves the tree
    try:
        shutil.rmtree(name, dir_fd=parent)
    except RecursionError:
        # Python 3.11's fd-based rmtree recurses per level: a service's tree 1000 folders deep
        # stops it. GNU rm walks any depth, never follows a link, and stays on this file system;
        # it runs from the folder we opened (/proc/self/fd is the child's own, before its exec).
        subprocess.run(["rm", "-rf", "--one-file-system", "--", name], cwd=f"/proc/self/fd/{parent}",
                       pass_fds=(parent,), check=True, capture_output=True, timeout=600)


def remove_tree(path: Path, *, under: Path) -> None:
    path = Path(path)
    try:
        with opened_dir(path.parent, under=under) as parent:
            remove_at(parent, path.name)
    except FileNotFoundError:
        return
