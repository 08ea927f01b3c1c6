"""Service names, program ids and UNIX user names (pure functions)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

MAX_NAME = 48
MAX_USER = 32
# Debian's useradd NAME_REGEX, minus the trailing '$' (machine accounts).
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
PROGRAM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")


def env_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (from ``--env``) -> (key, value); ValueError when it is not one."""
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text:
        raise ValueError(f"{text[:40]!r} must look like KEY=VALUE")
    return key, value


def sanitize_name(raw: str) -> str:
    """Lower-case, ASCII, ``[a-z0-9_-]`` only; '' when nothing usable is left."""
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9_-]+", "-", folded.lower())
    name = re.sub(r"-{2,}", "-", name).strip("-_")
    return name[:MAX_NAME].rstrip("-_")


def name_from_repo(repo: str) -> str:
    """The last path segment of a URL, git address or folder, without archive/git suffixes."""
    tail = repo.rstrip("/").replace(":", "/").split("?", 1)[0].split("#", 1)[0]
    segment = tail.rsplit("/", 1)[-1]
    for suffix in (*ARCHIVE_SUFFIXES, ".git"):
        if segment.lower().endswith(suffix):
            segment = segment[: -len(suffix)]
            break
    return sanitize_name(segment)


def env_key(name: str) -> str:
    """``my-app.web`` -> ``MY_APP_WEB`` for MAESTRO_<KEY>_<SERVICE> overrides."""
    return re.sub(r"[^A-Z0-9_]", "_", name.upper())


def unique_id(base: str, taken: Iterable[str]) -> str:
    """``base``, else ``base-1``, ``base-2`` ... whichever is not taken."""
    used = set(taken)
    if base not in used:
        return base
    n = 1
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"


def default_user(program_id: str) -> str:
    """``svc_<id>``; ids too long for useradd keep a hash so two never collide."""
    user = f"svc_{program_id}"
    if len(user) <= MAX_USER:
        return user
    digest = hashlib.sha1(program_id.encode()).hexdigest()[:8]
    return f"{user[: MAX_USER - 9]}_{digest}"


def valid_user(user: str) -> bool:
    return bool(USER_RE.match(user)) and user not in {"root", "nobody"}


RESERVED_PREFIX = "maestro-"  # internal programs (maestro-logs...) live in the same namespace


def reserved(program_id: str) -> bool:
    return program_id == "maestro" or program_id.startswith(RESERVED_PREFIX)
