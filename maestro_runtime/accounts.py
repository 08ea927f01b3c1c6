"""UNIX accounts and per-project folders (imperative shell over useradd/userdel)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class AccountError(Exception):
    pass


# Capabilities root needs to give each project its own user (bit numbers from linux/capability.h).
IDENTITY_CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7}


def missing_identity_caps(status_text: str | None = None) -> list[str]:
    """Capabilities from IDENTITY_CAPS that this process lacks (e.g. under --cap-drop ALL)."""
    if status_text is None:
        status_text = Path("/proc/self/status").read_text()
    effective = 0
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
    return [name for name, bit in IDENTITY_CAPS.items() if not effective >> bit & 1]


def shared_account(user: str, home_root: Path) -> Account:
    """Degraded mode (no CAP_SETUID/CAP_CHOWN): no account is made and the service runs as root
    without capabilities, in its own home folder."""
    account = Account(user=user, uid=0, gid=0, home=home_root / user)
    for folder in (account.home, account.home / ".maestro", account.tmp_dir, account.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return account


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
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise AccountError(f"{argv[0]} failed ({proc.returncode}): {detail[-1] if detail else 'no output'}")


def _lookup(user: str, prefix: Path | None) -> tuple[int, int] | None:
    """(uid, gid) of ``user``: from the prefix's passwd file when accounts live there, else NSS."""
    if prefix is not None:
        passwd = prefix / "etc" / "passwd"
        if passwd.exists():
            for line in passwd.read_text().splitlines():
                fields = line.split(":")
                if len(fields) >= 4 and fields[0] == user:
                    return int(fields[2]), int(fields[3])
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _prefix_args(prefix: Path | None) -> list[str]:
    """With a read-only /etc, accounts go to PREFIX/etc (read through libnss-extrausers).
    The prefix has no system users of its own, so ids come from a range nothing else uses."""
    if prefix is None:
        return []
    etc = prefix / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for name, mode in (("passwd", 0o644), ("group", 0o644), ("shadow", 0o640), ("gshadow", 0o640)):
        path = etc / name
        if not path.exists():
            path.touch(mode=mode)
    return ["--prefix", str(prefix), "-K", "SYS_UID_MIN=20000", "-K", "SYS_UID_MAX=29999",
            "-K", "SYS_GID_MIN=20000", "-K", "SYS_GID_MAX=29999"]


def ensure_account(user: str, home_root: Path, prefix: Path | None = None) -> Account:
    """Create the system user (and its group) unless it exists; make its home 0700."""
    # The home is always under home_root (a volume in the image), even for an account that
    # existed before with another home: services get HOME from us, not from passwd.
    home = home_root / user
    ids = _lookup(user, prefix)
    if ids is None:
        _run(["useradd", *_prefix_args(prefix), "--system", "--user-group", "--home-dir", str(home),
              "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "maestro service", user])
        ids = _lookup(user, prefix)
        if ids is None:
            raise AccountError(f"useradd reported success but user {user} cannot be found")
    account = Account(user=user, uid=ids[0], gid=ids[1], home=home)
    for folder in (account.home, account.home / ".maestro", account.tmp_dir, account.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, account.uid, account.gid)
    account.home.chmod(0o700)
    account.tmp_dir.chmod(0o700)
    return account


def own_tree(root: Path, account: Account, mode: int = 0o750) -> None:
    """Give the project folder to its user; links are re-owned, never followed."""
    uid, gid = account.uid, account.gid
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(path, uid, gid)
    os.chown(root, uid, gid)
    root.chmod(mode)


def chown_path(path: Path, account: Account) -> None:
    os.lchown(path, account.uid, account.gid)


def delete_account(user: str, prefix: Path | None = None) -> None:
    if _lookup(user, prefix) is None:
        return
    _run(["userdel", *(["--prefix", str(prefix)] if prefix else []), user])


def purge_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
