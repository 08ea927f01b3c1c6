"""Safe extraction of project archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip).

The functional core (:func:`plan_members`) turns the archive's member list into
a validated plan: every name is made relative to the single top folder (which
GitHub and most release archives have), and anything that could write outside
the project or exhaust the disk is rejected before a byte is written:
absolute paths, ``..``, links whose target leaves the project, device files,
FIFOs, and archives over the file-count or total-size caps (bombs).
The shell (:func:`extract_archive`) then writes only planned members, with
tarfile's ``data`` filter as a second line of defence, and re-checks the bytes
actually written, because a member header can lie about its size.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.spec.naming import ARCHIVE_SUFFIXES

_DATA_FILTER = getattr(tarfile, "data_filter", None)
_FILTER_ERROR = getattr(tarfile, "FilterError", None)


def _archive_error(exc: BaseException) -> ExtractError:
    """A full disk is a write problem, not a bad archive: say which."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExtractError(f"cannot write the project: {exc.strerror} (disk full)")
    return ExtractError(f"cannot read archive: {exc}")



class ExtractError(Exception):
    pass


@dataclass(frozen=True)
class Caps:
    max_files: int = 100_000
    max_bytes: int = 2 * 1024**3  # uncompressed total


@dataclass(frozen=True)
class Member:
    """One archive entry as seen by the core: no file objects, just facts."""

    name: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink" | "other"
    size: int = 0
    target: str = ""  # link target (symlink: relative to the link; hardlink: archive name)


@dataclass(frozen=True)
class Planned:
    member: Member
    path: str  # relative, normalised, top folder stripped
    target: str = ""  # hardlink: relative path of the target after stripping


def archive_suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _clean(name: str) -> str:
    """Normalised relative name, or raise for absolute paths and ``..``."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise ExtractError(f"archive member {name!r} has an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ExtractError(f"archive member {name!r} escapes the project (..)")
    return "/".join(parts)


def _common_top(names: Iterable[str]) -> str | None:
    """The single top folder every member sits in, if there is one."""
    tops = set()
    nested = False
    for name in names:
        head, sep, _ = name.partition("/")
        tops.add(head)
        nested = nested or bool(sep)
        if len(tops) > 1:
            return None
    return tops.pop() if len(tops) == 1 and nested else None


def _inside(path: str) -> bool:
    norm = posixpath.normpath(path)
    return not (norm == ".." or norm.startswith("../") or norm.startswith("/"))


def plan_members(members: list[Member], caps: Caps = Caps()) -> list[Planned]:
    """Validate every member and strip the single top folder; raise :class:`ExtractError` if hostile."""
    if len(members) > caps.max_files:
        raise ExtractError(f"archive has {len(members)} entries, over the cap of {caps.max_files}")
    total = sum(m.size for m in members if m.kind == "file")
    if total > caps.max_bytes:
        raise ExtractError(f"archive expands to {total} bytes, over the cap of {caps.max_bytes}")
    cleaned = [(m, _clean(m.name)) for m in members]
    # The top folder is the only entry of its kind; a lone top-level file isn't one.
    top = _common_top(name for _, name in cleaned if name)
    if top is not None and any(name == top and m.kind != "dir" for m, name in cleaned):
        top = None

    def strip(name: str) -> str:
        if top is None:
            return name
        return "" if name == top else name[len(top) + 1:]

    plan = []
    for member, name in cleaned:
        rel = strip(name)
        if member.kind == "other":
            raise ExtractError(f"archive member {member.name!r} is a device, FIFO or other special file")
        if not rel:
            continue
        if member.kind == "symlink":
            target = member.target.replace("\\", "/")
            if target.startswith("/") or not _inside(posixpath.join(posixpath.dirname(rel), target)):
                raise ExtractError(f"symlink {member.name!r} -> {member.target!r} points outside the project")
            plan.append(Planned(member, rel))
        elif member.kind == "hardlink":
            target = _clean(member.target) if member.target else ""
            if top is not None and not target.startswith(f"{top}/"):
                target = ""  # links to a file outside the stripped folder
            target = strip(target) if target else ""
            if not target or not _inside(target):
                raise ExtractError(f"hardlink {member.name!r} -> {member.target!r} leaves the project")
            plan.append(Planned(member, rel, target))
        else:
            plan.append(Planned(member, rel))
    return plan


# ---------------------------------------------------------------- imperative shell


def _tar_member(info: tarfile.TarInfo) -> Member:
    if info.isdir():
        kind = "dir"
    elif info.isreg():
        kind = "file"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    else:
        kind = "other"
    return Member(info.name, kind, info.size if kind == "file" else 0, info.linkname)


def _zip_member(info: zipfile.ZipInfo) -> Member:
    mode = info.external_attr >> 16
    if info.is_dir():
        return Member(info.filename, "dir")
    if stat.S_ISLNK(mode):
        return Member(info.filename, "symlink", 0, "")  # target is read from the data below
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # many zips carry permission bits only
        return Member(info.filename, "other")
    return Member(info.filename, "file", info.file_size)


def _guard_inside(root: Path, path: Path) -> None:
    """Belt and braces: the real parent folder must resolve inside the root."""
    if not path.parent.resolve().is_relative_to(root.resolve()):
        raise ExtractError(f"{path.relative_to(root)} would be written outside the project")


def _copy_capped(src, dst: Path, budget: list[int], mode: int) -> None:
    with open(dst, "wb") as out:
        while chunk := src.read(1024 * 1024):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ExtractError("archive expands beyond the size cap (decompression bomb?)")
            out.write(chunk)
    os.chmod(dst, mode)


def _copy_link_target(dest: Path, step: Planned, out: Path, budget: list[int]) -> None:
    """A hard link becomes a copy of its target, read through no link at all: a chain of the
    archive's own links (``y -> .``, ``x -> y/y/../..``) each look inside the project and still
    lead out of it (``x/etc/shadow``). The copy counts against the size cap like any file."""
    parent, name = posixpath.split(step.target)
    try:
        with safefs.opened_dir(dest / parent, under=dest) as folder:
            fd = os.open(name, safefs.READ_FLAGS, dir_fd=folder)
    except (safefs.UnsafeFile, OSError):
        fd = -1
    if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
        if fd >= 0:
            os.close(fd)
        raise ExtractError(f"hardlink {step.path!r} -> {step.target!r}: no file to link to")
    with os.fdopen(fd, "rb") as src:
        _copy_capped(src, out, budget, (os.fstat(fd).st_mode & 0o755) | 0o600)


def _place(dest: Path, step: Planned) -> Path | None:
    """Where a planned member goes, checked to be inside ``dest``. Folders are made here (None
    is returned); for anything else the parent exists and the path is still free."""
    out = dest / step.path
    _guard_inside(dest, out)
    if step.member.kind == "dir":
        out.mkdir(parents=True, exist_ok=True)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink() or out.exists():
        raise ExtractError(f"archive member {step.path!r} appears twice")
    return out


def _extract_tar(archive: Path, dest: Path, caps: Caps) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            infos = tar.getmembers()
            plan = plan_members([_tar_member(i) for i in infos], caps)
            members = {i.name: i for i in infos}
            budget = [caps.max_bytes]
            for step in plan:
                info = members[step.member.name]
                out = _place(dest, step)
                if out is None:
                    continue
                if step.member.kind == "symlink":
                    os.symlink(info.linkname, out)
                elif step.member.kind == "hardlink":  # a copy: a link would tie two project files together
                    _copy_link_target(dest, step, out, budget)
                else:
                    # The 'data' filter re-validates the member (mode bits, names) before we copy it.
                    # It arrived in Python 3.11.4 (Debian 12 has 3.11.2): our own checks above stand alone.
                    if _DATA_FILTER is not None:
                        _DATA_FILTER(info, str(dest))
                    src = tar.extractfile(info)
                    if src is None:
                        raise ExtractError(f"cannot read archive member {step.path!r}")
                    with src:
                        _copy_capped(src, out, budget, (info.mode & 0o755) | 0o600)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if _FILTER_ERROR is not None and isinstance(exc, _FILTER_ERROR):
            raise ExtractError(f"unsafe archive member: {exc}") from exc
        raise _archive_error(exc) from exc


def _extract_zip(archive: Path, dest: Path, caps: Caps) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            members = []
            for info in infos:
                member = _zip_member(info)
                if member.kind == "symlink":
                    if info.file_size > 4096:
                        raise ExtractError(f"symlink {info.filename!r} has an implausible target")
                    member = Member(member.name, "symlink", 0, zf.read(info).decode("utf-8", "replace"))
                members.append(member)
            plan = plan_members(members, caps)
            by_name = {i.filename: i for i in infos}
            budget = [caps.max_bytes]
            for step in plan:
                out = _place(dest, step)
                if out is None:
                    continue
                if step.member.kind == "symlink":
                    os.symlink(step.member.target, out)
                    continue
                info = by_name[step.member.name]
                mode = (info.external_attr >> 16) & 0o755 or 0o644
                with zf.open(info) as src:
                    _copy_capped(src, out, budget, mode | 0o600)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
        raise _archive_error(exc) from exc


def extract_archive(archive: Path, dest: Path, *, caps: Caps = Caps(), name: str | None = None) -> None:
    """Extract ``archive`` into the empty folder ``dest`` (created), top folder stripped.

    ``name`` (the URL's file name) picks the format; without it, the content does.
    On error, ``dest`` may hold a partial tree: the caller extracts into a staging folder and discards it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    suffix = archive_suffix(name or archive.name)
    if suffix == ".zip" or (suffix is None and zipfile.is_zipfile(archive)):
        _extract_zip(archive, dest, caps)
    else:
        _extract_tar(archive, dest, caps)
