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


def ensure_account(user: str, home_root: Path) -> Account:
    """Create the system user (and its group) unless it exists; make its home 0700."""
    # The home is always under home_root (a volume in the image), even for an account that
    # existed before with another home: services get HOME from us, not from passwd.
    home = home_root / user
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        _run(["useradd", "--system", "--user-group", "--home-dir", str(home), "--no-create-home",
              "--shell", "/usr/sbin/nologin", "--comment", "maestro service", user])
        entry = pwd.getpwnam(user)
    account = Account(user=user, uid=entry.pw_uid, gid=entry.pw_gid, home=home)
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


def delete_account(user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return
    _run(["userdel", user])


def purge_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
