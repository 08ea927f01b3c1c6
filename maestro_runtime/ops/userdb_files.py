"""Locks and writes passwd, group, shadow and gshadow the way shadow-utils' commonio does, for
the batches ops/userdb.py plans (its docstring says why this is not useradd).

Locks: glibc's lckpwdf() (fcntl on .pwd.lock) and shadow's NAME.lock files, so an operator's
useradd never interleaves with a batch. Writes: NAME- backup, NAME+ (owner and mode of NAME),
fsync, rename. Anything unusual raises userdb.Unusual: the caller then runs useradd.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import stat
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from maestro_runtime.ops.userdb import (
    FIELDS,
    PREFIX_RANGES,
    NewAccount,
    Plan,
    Unusual,
    parse,
    plan,
    ranges_from_login_defs,
    today,
)

# Hooks and caches useradd runs or flushes after a change: with any of them, useradd does the work.
# (SELinux: useradd sets the files' contexts.)
USERADD_EXTRAS = ("/usr/sbin/nscd", "/usr/sbin/sss_cache", "/sbin/pam_tally2", "/sys/fs/selinux/enforce",
                  "/etc/shadow-maint/useradd-pre.d", "/etc/shadow-maint/useradd-post.d")
LASTLOG_RECORD, FAILLOG_RECORD = 292, 32  # sizeof(struct lastlog), sizeof(struct faillog) on 64-bit Linux
LOCK_ORDER = ("passwd", "group", "gshadow", "shadow")  # useradd's open_files(), then open_shadow()
WRITE_ORDER = ("passwd", "shadow", "group", "gshadow")  # useradd's close_files()
LOCK_WAIT = 3.0  # seconds another process may hold the locks before useradd takes over (it waits 15)


def nss_uid_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def nss_gid_taken(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


def _take_pwd_lock(etc: Path, deadline: float) -> int:
    """glibc's lckpwdf(): a whole-file fcntl write lock on .pwd.lock, taken by every shadow tool first."""
    fd = os.open(etc / ".pwd.lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # F_SETLK, F_WRLCK, 0..EOF: lckpwdf's lock
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                os.close(fd)
                raise Unusual(f"{etc}/.pwd.lock is held by another process") from None
        time.sleep(0.01)


def _holder_alive(lock: str) -> bool:
    """Is the process named in a shadow lock file alive? (a lock without a valid pid counts as held)"""
    try:
        with open(lock, "rb") as handle:
            pid = int(handle.read(31).rstrip(b"\0").decode("ascii"))
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _lock_file(path: Path) -> bool:
    """shadow's do_lock_file(): link a file holding our pid to PATH.lock; a dead holder's lock is
    removed and taken again, as shadow does."""
    pid = os.getpid()
    mine, lock = f"{path}.{pid}", f"{path}.lock"
    fd = os.open(mine, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{pid}\0".encode())
        os.fdatasync(fd)
    finally:
        os.close(fd)
    try:
        for attempt in (1, 2):
            try:
                os.link(mine, lock)
            except FileExistsError:
                if attempt == 2 or _holder_alive(lock):
                    return False
                os.unlink(lock)
                continue
            return os.stat(mine).st_nlink == 2
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(mine)


@contextlib.contextmanager
def locked(etc: Path, *, global_lock: bool) -> Iterator[None]:
    """The locks useradd takes, in its order: lckpwdf (not with --prefix), then one lock per file
    (after lckpwdf shadow tries each once; with --prefix it retries for a while)."""
    deadline = time.monotonic() + LOCK_WAIT
    fd: int | None = None
    taken: list[Path] = []
    try:
        try:
            fd = _take_pwd_lock(etc, deadline) if global_lock else None
            for kind in LOCK_ORDER:
                path = etc / kind
                while not _lock_file(path):
                    if global_lock or time.monotonic() > deadline:
                        raise Unusual(f"{path}.lock is held by another process")
                    time.sleep(0.01)
                taken.append(path)
        except OSError as exc:
            raise Unusual(f"cannot lock {exc.filename or etc}: {exc.strerror}") from None
        yield
    finally:
        for path in reversed(taken):
            with contextlib.suppress(OSError):
                os.unlink(f"{path}.lock")
        if fd is not None:
            os.close(fd)  # releases the fcntl lock


def _read(path: Path) -> tuple[bytes, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # missing, or a symlink (useradd would write through it)
        raise Unusual(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unusual(f"{path} is not a regular file")
        return handle.read(), info


def _write_file(path: Path, data: bytes, like: os.stat_result) -> None:
    """commonio's fopen_set_perms(): owner and mode (& 0664) of the file it stands for; then fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0)
    try:
        os.fchown(fd, like.st_uid, like.st_gid)
        os.fchmod(fd, stat.S_IMODE(like.st_mode) & 0o664)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(etc: Path, texts: Mapping[str, str], originals: Mapping[str, bytes],
            stats: Mapping[str, os.stat_result]) -> None:
    """NAME- backup (shadow's), NAME+ then rename over NAME, for the four files; renames last, so
    a failure before them changes nothing, and one during them is undone."""
    here = os.stat(etc).st_dev
    for kind in WRITE_ORDER:
        if stats[kind].st_dev != here:
            raise Unusual(f"{etc / kind} is mounted over")
    staged: list[Path] = []
    try:
        for kind in WRITE_ORDER:
            like, backup = stats[kind], etc / f"{kind}-"
            _write_file(backup, originals[kind], like)
            os.utime(backup, (int(like.st_atime), int(like.st_mtime)))
            staged.append(etc / f"{kind}+")
            _write_file(staged[-1], texts[kind].encode("utf-8", "surrogateescape"), like)
        for done, kind in enumerate(WRITE_ORDER):
            try:
                os.rename(etc / f"{kind}+", etc / kind)
            except OSError as exc:
                for back in WRITE_ORDER[:done]:  # put back the files already replaced
                    _write_file(etc / f"{back}+", originals[back], stats[back])
                    os.rename(etc / f"{back}+", etc / back)
                raise Unusual(f"cannot replace {etc / kind}: {exc.strerror}") from None
    except OSError as exc:
        raise Unusual(f"cannot write {exc.filename or etc}: {exc.strerror}") from None
    finally:
        for path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    dirfd = os.open(etc, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _login_records(uids: Sequence[int], *, write: bool) -> None:
    """useradd's faillog_reset()/lastlog_reset(): zero a new uid's record when the file has one."""
    for path, size in (("/var/log/faillog", FAILLOG_RECORD), ("/var/log/lastlog", LASTLOG_RECORD)):
        try:
            length = os.stat(path).st_size
        except OSError:
            continue
        covered = [uid for uid in uids if length > uid * size]
        if covered and struct.calcsize("l") != 8:
            raise Unusual(f"{path} has records of another layout than 64-bit Linux's")
        if covered and write:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            try:
                for uid in covered:
                    os.pwrite(fd, bytes(size), uid * size)
                os.fsync(fd)
            finally:
                os.close(fd)


def create(accounts: Sequence[NewAccount], etc: Path, *, prefix: bool, now: float | None = None,
           uid_taken: Callable[[int], bool] = nss_uid_taken,
           gid_taken: Callable[[int], bool] = nss_gid_taken) -> Plan:
    """Create every account of ``accounts`` missing from ETC's files in one locked write.
    ``prefix``: ETC is useradd --prefix's (no lckpwdf, ids 20000-29999). Raises Unusual."""
    for extra in USERADD_EXTRAS:
        if os.path.lexists(extra):
            raise Unusual(f"{extra} exists (useradd runs or flushes it)")
    with locked(etc, global_lock=not prefix):
        originals, stats = {}, {}
        for kind in FIELDS:
            originals[kind], stats[kind] = _read(etc / kind)
        tables = {kind: parse(kind, data.decode("utf-8", "surrogateescape")) for kind, data in originals.items()}
        if prefix:
            ranges = PREFIX_RANGES
        else:
            try:
                defs = (etc / "login.defs").read_text(errors="surrogateescape")
            except FileNotFoundError:
                defs = ""  # shadow's built-in defaults
            ranges = ranges_from_login_defs(defs)
        result = plan(accounts, tables, ranges, today(now), uid_taken=uid_taken, gid_taken=gid_taken)
        if result.created:
            uids = [uid for uid, _ in result.created.values()]
            _login_records(uids, write=False)
            _commit(etc, result.texts, originals, stats)
            _login_records(uids, write=True)
    return result
