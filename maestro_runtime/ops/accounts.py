"""UNIX accounts and per-project folders (imperative shell over useradd/userdel)."""

from __future__ import annotations

import json
import logging
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.engine.launch import effective_capabilities
from maestro_runtime.ops import userdb, userdb_files
from maestro_runtime.ops.groupcommit import GroupCommit
from maestro_runtime.state.records import atomic_write

log = logging.getLogger("maestro")


class AccountError(Exception):
    pass


# Boot provisions services in parallel (ops/reconcile.py). useradd/userdel take /etc/passwd's lock
# and fail at once on contention ("cannot lock /etc/passwd; try again later"), and the lookup and
# the creation must be one step: one writer at a time in this process.
_PASSWD = threading.Lock()
# accounts.json is read, changed and written whole: one change at a time.
_REGISTRY = threading.RLock()
_LOCKED_TRIES = 5  # another process (an operator's useradd) holding the lock: wait a little


COMMENT = userdb.COMMENT  # the passwd comment of accounts the runtime creates
# Debian's statically allocated system accounts (daemon, bin, www-data...): never a service's.
STATIC_SYSTEM_MAX = 99


# Capabilities root needs to give each project its own user (bit numbers from linux/capability.h).
IDENTITY_CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7}


def missing_identity_caps(status_text: str | None = None) -> list[str]:
    """Capabilities from IDENTITY_CAPS that this process lacks (e.g. under --cap-drop ALL)."""
    effective = effective_capabilities(status_text)
    return [name for name, bit in IDENTITY_CAPS.items() if not effective >> bit & 1]


@dataclass(frozen=True)
class Account:
    user: str
    uid: int
    gid: int
    home: Path

    @property
    def tmp_dir(self) -> Path:
        return self.home / ".maestro" / "tmp"

    @property
    def cache_dir(self) -> Path:
        return self.home / ".cache"

    @property
    def venv_dir(self) -> Path:
        return self.home / ".maestro" / "venv"


def _run(argv: list[str]) -> None:
    for attempt in range(_LOCKED_TRIES):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0 or "cannot lock" not in proc.stderr or attempt == _LOCKED_TRIES - 1:
            break
        time.sleep(0.1 * (attempt + 1))
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise AccountError(f"{argv[0]} failed ({proc.returncode}): {detail[-1] if detail else 'no output'}")


def _entry(user: str, prefix: Path | None) -> tuple[int, int, str] | None:
    """(uid, gid, comment) of ``user``: from the prefix's passwd file when accounts live there, else NSS."""
    if prefix is not None:
        passwd = prefix / "etc" / "passwd"
        if passwd.exists():
            for line in passwd.read_text().splitlines():
                fields = line.split(":")
                if len(fields) >= 5 and fields[0] == user:
                    return int(fields[2]), int(fields[3]), fields[4]
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid, entry.pw_gecos


def _lookup(user: str, prefix: Path | None) -> tuple[int, int] | None:
    entry = _entry(user, prefix)
    return None if entry is None else entry[:2]


def ids(user: str, prefix: Path | None = None) -> tuple[int, int] | None:
    """(uid, gid) of ``user`` as the account files say now; None when there is no such user."""
    return _lookup(user, prefix)


def _prefix_etc(prefix: Path) -> Path:
    """PREFIX/etc with the four account files (empty ones made here; the image has none)."""
    etc = prefix / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for name, mode in (("passwd", 0o644), ("group", 0o644), ("shadow", 0o640), ("gshadow", 0o640)):
        path = etc / name
        if not path.exists():
            path.touch(mode=mode)
    return etc


def _prefix_args(prefix: Path | None) -> list[str]:
    """With a read-only /etc, accounts go to PREFIX/etc (read through libnss-extrausers).
    The prefix has no system users of its own, so ids come from a range nothing else uses."""
    if prefix is None:
        return []
    _prefix_etc(prefix)
    low, high = userdb.PREFIX_RANGES_MIN, userdb.PREFIX_RANGES_MAX
    return ["--prefix", str(prefix), "-K", f"SYS_UID_MIN={low}", "-K", f"SYS_UID_MAX={high}",
            "-K", f"SYS_GID_MIN={low}", "-K", f"SYS_GID_MAX={high}"]


def _useradd(user: str, home: Path, prefix: Path | None) -> tuple[int, int]:
    _run(["useradd", *_prefix_args(prefix), "--system", "--user-group", "--home-dir", str(home),
          "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", COMMENT, user])
    ids = _lookup(user, prefix)
    if ids is None:
        raise AccountError(f"useradd reported success but user {user} cannot be found")
    return ids


_Key = tuple[str, Path, Path | None]  # user, home, prefix
_Outcome = tuple[int, int] | AccountError


def _create_all(keys: Sequence[_Key]) -> dict[_Key, _Outcome]:
    """The group commit's writer: every account queued so far, one locked write per prefix."""
    outcomes: dict[_Key, _Outcome] = {}
    with _PASSWD:
        for prefix in dict.fromkeys(key[2] for key in keys):
            outcomes.update(_create_accounts([key for key in keys if key[2] == prefix], prefix))
    return outcomes


def _create_accounts(keys: list[_Key], prefix: Path | None) -> dict[_Key, _Outcome]:
    outcomes: dict[_Key, _Outcome] = {}
    pending: dict[str, _Key] = {}
    for key in keys:
        ids = _lookup(key[0], prefix)  # made meanwhile (by us or an operator)
        if ids is not None:
            outcomes[key] = ids
        else:
            pending[key[0]] = key
    if not pending:
        return outcomes
    try:
        etc = _prefix_etc(prefix) if prefix is not None else Path("/etc")
        result = userdb_files.create([userdb.NewAccount(user, str(key[1])) for user, key in pending.items()],
                                     etc, prefix=prefix is not None)
    except (userdb.Unusual, OSError) as exc:
        log.debug("accounts: %s; creating %s with useradd", exc, ", ".join(pending))
        fallback = dict.fromkeys(pending, "")
    else:
        outcomes.update({pending[user]: ids for user, ids in {**result.created, **result.existing}.items()})
        fallback = dict(result.fallback)
    for user, why in fallback.items():
        if why:
            log.debug("accounts: %s; creating it with useradd", why)
        try:
            outcomes[pending[user]] = _useradd(*pending[user])
        except AccountError as exc:
            outcomes[pending[user]] = exc
    return outcomes


# Concurrent ensure_account() calls (boot provisions up to 32 services at once) queue their user;
# one at a time creates every queued account in one write of the account files (ops/userdb.py).
_BATCHES: GroupCommit[_Key, tuple[int, int]] = GroupCommit(_create_all)


def ensure_account(user: str, home_root: Path, prefix: Path | None = None) -> Account:
    """Create the system user (and its group) unless it exists; make its home 0700.
    Concurrent calls are created together (see _BATCHES)."""
    # The home is always under home_root (a volume in the image), even for an account that
    # existed before with another home: services get HOME from us, not from passwd.
    home = home_root / user
    ids = _lookup(user, prefix)
    if ids is None:
        try:
            userdb.check_fields(userdb.NewAccount(user, str(home)))
        except userdb.Invalid as exc:
            raise AccountError(str(exc)) from None
        ids = _BATCHES.submit((user, home, prefix))
    account = Account(user=user, uid=ids[0], gid=ids[1], home=home)
    make_folders(account, home_root, chown=True)
    return account


def shared_account(user: str, home_root: Path) -> Account:
    """Degraded mode (no CAP_SETUID/CAP_CHOWN): no account is made and the service runs as root
    without capabilities, in its own home folder."""
    account = Account(user=user, uid=0, gid=0, home=home_root / user)
    make_folders(account, home_root, chown=False)
    return account


def make_folders(account: Account, home_root: Path, *, chown: bool) -> None:
    """Home, ~/.maestro, ~/.maestro/tmp and ~/.cache, walked by descriptor from the home root:
    the service may have planted a link at any of them, which is refused, never followed."""
    home_root.mkdir(parents=True, exist_ok=True)
    ids = {"uid": account.uid, "gid": account.gid} if chown else {}
    home = account.home
    try:
        with safefs.opened_dir(home_root, under=home_root) as root:
            fd = safefs.ensure_dir(root, home.name, home, mode=0o700, **ids)
        try:
            os.close(safefs.ensure_dir(fd, ".cache", account.cache_dir, **ids))
            dot = safefs.ensure_dir(fd, ".maestro", home / ".maestro", **ids)
            try:
                os.close(safefs.ensure_dir(dot, "tmp", account.tmp_dir, mode=0o700, **ids))
            finally:
                os.close(dot)
        finally:
            os.close(fd)
    except safefs.UnsafeFile as exc:
        raise AccountError(f"{exc} (root never follows links in a service's home; remove it)") from None


def own_tree(root: Path, account: Account, mode: int = 0o750, leave: tuple[str, ...] = ()) -> list[str]:
    """Give the project folder to its user through descriptors: links are never followed,
    special files and multiply-linked files are left as they are (returned, for a warning)."""
    try:
        with safefs.opened_dir(root, under=safefs.trusted_parent(root)) as fd:
            return safefs.own_tree(fd, account.uid, account.gid, root, mode=mode, leave=leave)
    except safefs.UnsafeFile as exc:
        raise AccountError(str(exc)) from None


def delete_account(user: str, prefix: Path | None = None) -> None:
    with _PASSWD:
        if _lookup(user, prefix) is None:
            return
        _run(["userdel", *(["--prefix", str(prefix)] if prefix else []), user])


def seal(path: Path) -> None:
    """Give a deleted account's kept folder to root, 0700 (by descriptor: never through a link):
    what is inside stays as it is, out of reach of whichever account gets the uid next."""
    try:
        with safefs.opened_dir(path, under=safefs.trusted_parent(path)) as fd:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o700)
    except FileNotFoundError:
        return
    except safefs.UnsafeFile as exc:
        raise AccountError(str(exc)) from None


def purge_tree(path: Path, under: Path | None = None) -> None:
    """Remove a service's folder; ``under`` (default: its parent) is a folder only root changes."""
    try:
        safefs.remove_tree(path, under=under or safefs.trusted_parent(path))
    except safefs.UnsafeFile as exc:
        raise AccountError(str(exc)) from None


# ---------------------------------------------------------------- who may run services


@dataclass(frozen=True)
class Holder:
    """An account in the registry: the services it runs and how it came to be theirs."""

    services: tuple[str, ...]
    explicit: bool  # the operator named this user (not the svc_<id> default)
    created: bool  # made by the runtime: only such accounts are ever deleted


class AccountRegistry:
    """Root-only list of the accounts services run as (``<state>/accounts.json``).

    Only accounts the runtime created, or that the operator allow-lists, run services;
    an account belongs to the service it was first given to, and is shared only when
    the operator names the same user for every service that uses it.
    """

    def __init__(self, path: Path, *, allowed: frozenset[str] = frozenset(), prefix: Path | None = None):
        self.path, self.allowed, self.prefix = path, allowed, prefix
        # Group commit, as for accounts: a change goes to _pending (under _REGISTRY); one caller at
        # a time writes the latest state, and each returns once a write holding its change is done.
        # (One write per admission was O(N^2) bytes and N fsyncs in a row at boot.)
        self._pending: dict[str, Holder] | None = None
        self._changes = self._written = 0
        self._writer = threading.Lock()

    def load(self) -> dict[str, Holder]:
        try:
            data = json.loads(self.path.read_text())
            return {user: Holder(tuple(h["services"]), bool(h["explicit"]), bool(h["created"]))
                    for user, h in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # Rebuilt from passwd: accounts we created carry our comment and are adopted again.
            log.warning("%s is unreadable (%s); rebuilding it", self.path, exc)
            return {}

    def _save(self, holders: dict[str, Holder]) -> None:
        atomic_write(self.path, json.dumps({u: asdict(h) for u, h in sorted(holders.items())}, indent=1),
                     mode=0o600)

    def _holders(self) -> dict[str, Holder]:
        """The latest state (under _REGISTRY): changes not written yet, else the file."""
        return dict(self._pending) if self._pending is not None else self.load()

    def _change(self, holders: dict[str, Holder] | None) -> int:
        """Record a new state (None: no change; under _REGISTRY); the number to wait for."""
        if holders is not None:
            self._pending, self._changes = holders, self._changes + 1
        return self._changes if self._pending is not None else 0

    def _persist(self, change: int) -> None:
        """Return once the file holds change number ``change`` or a later state."""
        with self._writer:
            with _REGISTRY:
                if self._written >= change or self._pending is None:
                    return
                holders, last = self._pending, self._changes
            self._save(holders)
            with _REGISTRY:
                self._written = last
                if self._changes == last:
                    self._pending = None

    def admit(self, user: str, service: str, *, explicit: bool) -> None:
        """Allow ``service`` to run as ``user`` (and remember it, on disk), or raise AccountError."""
        with _REGISTRY:
            change = self._change(self._admit(user, service, explicit=explicit))
        self._persist(change)

    def _admit(self, user: str, service: str, *, explicit: bool) -> dict[str, Holder] | None:
        holders = self._holders()
        holder = holders.get(user)
        if holder is None:
            holder = self._first_holder(user, service, explicit)
        elif holder.services == (service,):  # its only service: the operator may name it now
            holder = Holder(holder.services, explicit, holder.created)
        elif service not in holder.services:
            if not (explicit and holder.explicit):
                raise AccountError(
                    f"user {user} already belongs to {', '.join(holder.services)}; two services share "
                    "a user only when the operator names it for both")
            holder = Holder((*holder.services, service), True, holder.created)
        if holders.get(user) == holder:
            return None
        holders[user] = holder
        return holders

    def _first_holder(self, user: str, service: str, explicit: bool) -> Holder:
        entry = _entry(user, self.prefix)
        if entry is None or entry[2] == COMMENT:  # new, or made by an earlier version of the runtime
            return Holder((service,), explicit, True)
        if user not in self.allowed:
            raise AccountError(
                f"user {user} exists and was not created by maestro-runtime (a system or another "
                "program's account); name it in MAESTRO_ALLOWED_USERS to run services as it")
        if entry[0] <= STATIC_SYSTEM_MAX:
            raise AccountError(f"user {user} is a system account (uid {entry[0]}); services never run as one")
        return Holder((service,), explicit, False)

    def created(self, user: str) -> bool:
        with _REGISTRY:
            holder = self._holders().get(user)
        return holder is not None and holder.created

    def forget(self, user: str) -> None:
        with _REGISTRY:
            holders = self._holders()
            change = self._change(holders if holders.pop(user, None) is not None else None)
        self._persist(change)


def allowed_users(raw: str) -> frozenset[str]:
    """MAESTRO_ALLOWED_USERS: names separated by commas or spaces."""
    return frozenset(raw.replace(",", " ").split())
