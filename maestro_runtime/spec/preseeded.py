"""Pre-seeded folders and their ``.maestro-*`` metadata files (read by descriptor, never blocking)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.spec.fields import MAX_FIELD, parse_cmd, parse_name, parse_port, parse_user
from maestro_runtime.spec.model import ParseResult, ServiceSpec, SpecError
from maestro_runtime.spec.naming import env_key, sanitize_name

IDENTITY_META = (".maestro-name", ".maestro-user")


def _read_meta(fd: int, folder: Path, name: str, warnings: list[str]) -> str | None:
    """A metadata file, read through the folder's descriptor: a link (symbolic or hard), FIFO or
    oversized file is an error for this folder. Identity files count only when the operator wrote them."""
    origin = f"pre-seeded {folder}"
    identity = name in IDENTITY_META
    ignored = f"{origin}: {name} ignored: not a root-owned regular file (a service may have written it; " \
              "only the operator sets a service's name and user)"
    if identity and not _operator_owned(safefs.owner_at(fd, name)):
        warnings.append(ignored)  # never even opened
        return None
    try:
        found = safefs.read_stat_at(fd, name, folder / name, limit=MAX_FIELD)
    except safefs.UnsafeFile as exc:
        raise SpecError(origin, name, exc.reason) from None
    if found is None:
        return None
    if found[1].st_nlink > 1:  # a hard link: perhaps to a file of root's it could not read itself
        raise SpecError(origin, name, f"has {found[1].st_nlink} links (a hard link), not a file of its own")
    if identity and not _operator_owned(found[1]):  # swapped since it was looked at
        warnings.append(ignored)
        return None
    return found[0].decode("utf-8", "replace").strip()


def _operator_owned(st: os.stat_result | None) -> bool:
    """Missing, or a singly-linked regular file owned by root (the runtime's own user)."""
    return st is None or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid())


def _has_content(fd: int) -> bool:
    return any(not name.startswith(".maestro-") for name in os.listdir(fd))


def parse_preseeded_folder(folder: Path, env: Mapping[str, str], mode: str,
                           warnings: list[str] | None = None) -> ServiceSpec | None:
    """One pre-seeded folder -> a spec, None when skipped (disabled, empty in auto mode)."""
    if mode == "never":
        return None
    try:
        with safefs.opened_dir(folder, under=folder.parent) as fd:
            return _parse_folder(fd, folder, env, mode, [] if warnings is None else warnings)
    except safefs.UnsafeFile as exc:
        raise SpecError(f"pre-seeded {folder}", "folder", exc.reason) from None


def _parse_folder(fd: int, folder: Path, env: Mapping[str, str], mode: str, warnings: list[str],
                  ) -> ServiceSpec | None:
    origin = f"pre-seeded {folder}"
    if safefs.exists(fd, ".maestro-disable"):  # any entry counts; a link is never followed
        return None
    raw_name = _read_meta(fd, folder, ".maestro-name", warnings) or folder.name
    name = parse_name(origin, raw_name) or folder.name
    key = env_key(sanitize_name(name))

    def pick(var: str, meta: str) -> str | None:
        value = env.get(f"MAESTRO_{var}_{key}")
        return value if value is not None and value.strip() else _read_meta(fd, folder, meta, warnings)

    cmd = pick("CMD", ".maestro-cmd")
    if mode == "auto" and not cmd and not _has_content(fd):
        return None
    return ServiceSpec(
        origin=origin,
        kind="preseeded",
        directory=folder,
        name=name,
        port=parse_port(origin, pick("PORT", ".maestro-port")),
        user=parse_user(origin, pick("USER", ".maestro-user")),
        cmd=parse_cmd(origin, cmd),
    )


def parse_preseeded(roots: Iterable[Path], env: Mapping[str, str], mode: str) -> ParseResult:
    result = ParseResult()
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder.is_symlink() or folder.name.startswith("."):
                continue
            try:
                spec = parse_preseeded_folder(folder, env, mode, result.warnings)
            except SpecError as err:
                err.hint = sanitize_name(folder.name)
                result.errors.append(err)
                continue
            except OSError as err:
                result.errors.append(SpecError(f"pre-seeded {folder}", "folder", err.strerror or str(err)))
                continue
            if spec is not None:
                result.specs.append(spec)
    return result
