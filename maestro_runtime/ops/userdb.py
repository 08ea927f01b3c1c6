"""System accounts made in batches: the entries `useradd --system --user-group --no-create-home`
writes, for many users in one locked write of passwd, group, shadow and gshadow.

Why by hand: useradd makes one account per run (fork, exec, 8 fsyncs, ~5 ms CPU), and the batch
tool (newusers) hashes a password per user through PAM and has no --prefix. This module mirrors
shadow-utils 4.13-4.17 (src/useradd.c, lib/find_new_uid.c, lib/find_new_gid.c, lib/commonio.c):
the same ids, lines, locks, backups and file modes. Anything it does not mirror raises
:class:`Unusual`, and the caller makes those accounts with useradd as before.

The pure core (parsing, allocation, rendering); ops/userdb_files.py locks and writes the files.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

COMMENT = "maestro service"
SHELL = "/usr/sbin/nologin"
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")  # spec/naming.py's USER_RE, checked again here
FIELDS = {"passwd": 7, "group": 4, "shadow": 9, "gshadow": 4}
PREFIX_RANGES_MIN, PREFIX_RANGES_MAX = 20000, 29999  # accounts.py passes the same to useradd -K
UNUSABLE_IDS = frozenset({0xFFFF, 0xFFFFFFFF})  # shadow 4.17 never hands out (uid_t)-1 either


class Unusual(Exception):
    """Something this module does not mirror: let useradd do it (the message says what)."""


class Invalid(Exception):
    """A value that must never reach an account file (a ':' or a newline in a field)."""


@dataclass(frozen=True)
class Ranges:
    uid_min: int
    uid_max: int
    gid_min: int
    gid_max: int


PREFIX_RANGES = Ranges(PREFIX_RANGES_MIN, PREFIX_RANGES_MAX, PREFIX_RANGES_MIN, PREFIX_RANGES_MAX)


def _ulong(text: str) -> int:
    """getdef_ulong's strtoul(value, 0): decimal, 0x hexadecimal or 0 octal."""
    base = 16 if text.lower().startswith("0x") else 8 if len(text) > 1 and text.startswith("0") else 10
    return int(text, base)


_DEFS_RE = re.compile(r"^[ \t]*((?:SYS_)?[UG]ID_M(?:IN|AX))[ \t]+\"?([^\s\"]*)", re.MULTILINE)


def ranges_from_login_defs(text: str) -> Ranges:
    """SYS_UID_MIN/MAX and SYS_GID_MIN/MAX with shadow's defaults (101, UID_MIN - 1, UID_MIN 1000)."""
    defs = dict(_DEFS_RE.findall(text))  # the last one wins, as in getdef
    try:
        def get(name: str, default: int) -> int:
            return _ulong(defs[name]) if name in defs else default
        uid_max = get("SYS_UID_MAX", get("UID_MIN", 1000) - 1)
        gid_max = get("SYS_GID_MAX", get("GID_MIN", 1000) - 1)
        ranges = Ranges(max(get("SYS_UID_MIN", 101), 1), uid_max, max(get("SYS_GID_MIN", 101), 1), gid_max)
    except ValueError as exc:
        raise Unusual(f"login.defs: a value does not parse ({exc})") from None
    if ranges.uid_max < ranges.uid_min or ranges.gid_max < ranges.gid_min:
        raise Unusual(f"login.defs: empty system id range {ranges}")
    return ranges


@dataclass(frozen=True)
class Table:
    """One account file: its lines as they are, and what the allocation needs from them."""

    kind: str
    lines: tuple[str, ...]
    names: frozenset[str]
    ids: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # passwd: (uid, gid); group: (gid, gid)


def parse(kind: str, text: str) -> Table:
    """Lines of passwd, group, shadow or gshadow; Unusual for NIS lines and lines that do not parse."""
    lines = tuple(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else ())
    names: set[str] = set()
    ids: dict[str, tuple[int, int]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue  # commonio keeps blank lines as they are
        if line[0] in "+-":
            raise Unusual(f"{kind} line {number}: NIS compat entry")
        fields = line.split(":")
        if len(fields) != FIELDS[kind] or not fields[0] or "\r" in line or "\0" in line:
            raise Unusual(f"{kind} line {number} does not parse")
        if kind in ("passwd", "group"):
            first, second = fields[2], fields[3 if kind == "passwd" else 2]
            if not (first.isascii() and first.isdigit() and second.isascii() and second.isdigit()):
                raise Unusual(f"{kind} line {number}: id field does not parse")
            ids[fields[0]] = (int(first), int(second))
        names.add(fields[0])
    return Table(kind, lines, frozenset(names), ids)


def find_new_id(used: set[int], low: int, high: int, taken: Callable[[int], bool]) -> int | None:
    """find_new_uid()/find_new_gid() for system ids: below the lowest id in use in the range,
    else from the top down (skipping ids in the file and ids NSS knows); None when all are used."""
    in_range = [i for i in used if low <= i <= high]
    lowest = min(in_range) - 1 if in_range else high
    if lowest < low:
        lowest = high

    def free(i: int) -> bool:
        return i not in used and i not in UNUSABLE_IDS and not taken(i)

    for i in range(lowest, low - 1, -1):
        if free(i):
            return i
    if lowest != high:
        for i in range(high, low - 1, -1):
            if free(i):
                return i
    return None


@dataclass(frozen=True)
class NewAccount:
    name: str
    home: str


@dataclass(frozen=True)
class Plan:
    """What one locked write does: new file texts, and each user's outcome."""

    texts: Mapping[str, str]  # kind -> whole new file (empty when nothing is created)
    created: Mapping[str, tuple[int, int]]
    existing: Mapping[str, tuple[int, int]]  # already in passwd when the files were locked
    fallback: Mapping[str, str]  # name -> why useradd should make it (it says what is wrong)


def check_fields(account: NewAccount) -> None:
    """Refuse anything that could split or add a line: the files are written, never escaped."""
    if not NAME_RE.match(account.name):
        raise Invalid(f"user name {account.name!r} is not a valid system user name")
    if not account.home.startswith("/") or any(c in account.home for c in ":\n\r\0"):
        raise Invalid(f"home {account.home!r} of user {account.name} cannot be written to passwd")


def passwd_line(name: str, uid: int, gid: int, home: str) -> str:
    return f"{name}:x:{uid}:{gid}:{COMMENT}:{home}:{SHELL}"


def shadow_line(name: str, day: int) -> str:
    # useradd -r: password "!", no aging; a lastchg of day 0 is written as empty (-1)
    return f"{name}:!:{day if day > 0 else ''}::::::"


def group_line(name: str, gid: int) -> str:
    return f"{name}:x:{gid}:"


def gshadow_line(name: str) -> str:
    return f"{name}:!::"


def plan(accounts: Sequence[NewAccount], tables: Mapping[str, Table], ranges: Ranges, day: int, *,
         uid_taken: Callable[[int], bool], gid_taken: Callable[[int], bool]) -> Plan:
    """Allocate like useradd run once per account in this order, each seeing the ones before."""
    for account in accounts:
        check_fields(account)
    passwd, group = tables["passwd"], tables["group"]
    used_uids = {uid for uid, _ in passwd.ids.values()}
    used_gids = {gid for gid, _ in group.ids.values()}
    new: dict[str, list[str]] = {kind: [] for kind in FIELDS}
    created: dict[str, tuple[int, int]] = {}
    existing: dict[str, tuple[int, int]] = {}
    fallback: dict[str, str] = {}
    for account in accounts:
        name = account.name
        if name in created or name in existing or name in fallback:
            continue
        if name in passwd.ids:
            existing[name] = passwd.ids[name]
            continue
        clash = [kind for kind in ("group", "shadow", "gshadow") if name in tables[kind].names]
        if clash:
            fallback[name] = f"{name} already has an entry in {', '.join(clash)}"
            continue
        uid = find_new_id(used_uids, ranges.uid_min, ranges.uid_max, uid_taken)
        if uid is None:
            fallback[name] = f"no free uid in {ranges.uid_min}-{ranges.uid_max}"
            continue
        # The gid equals the uid when that gid is free (useradd's preferred gid), else a new one.
        gid: int | None = uid
        if uid > ranges.gid_max or uid in used_gids or uid in UNUSABLE_IDS or gid_taken(uid):
            gid = find_new_id(used_gids, ranges.gid_min, ranges.gid_max, gid_taken)
        if gid is None:
            fallback[name] = f"no free gid in {ranges.gid_min}-{ranges.gid_max}"
            continue
        used_uids.add(uid)
        used_gids.add(gid)
        created[name] = (uid, gid)
        new["passwd"].append(passwd_line(name, uid, gid, account.home))
        new["shadow"].append(shadow_line(name, day))
        new["group"].append(group_line(name, gid))
        new["gshadow"].append(gshadow_line(name))
    texts = {kind: render(tables[kind], new[kind]) for kind in FIELDS} if created else {}
    return Plan(texts, created, existing, fallback)


def render(table: Table, added: Sequence[str]) -> str:
    """The file as commonio writes it: every line kept as it was, new ones at the end."""
    return "".join(f"{line}\n" for line in (*table.lines, *added))


def today(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 86400)
