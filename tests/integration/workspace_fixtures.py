"""What the branch-workspace tests share: a folder a service's user can reach, a throwaway
system user, a checkout made as the runtime makes it, and a clean filter the user plants in it."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from fixtures.gitrepos import make_repo

from maestro_runtime.tasks import workspace as ws


@contextlib.contextmanager
def reachable_place(prefix: str) -> Iterator[Path]:
    """A folder the user can reach (pytest's tmp_path sits in a root-only 0700 folder)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def system_user(place: Path, prefix: str) -> Iterator[pwd.struct_passwd]:
    """A new system account with its home under ``place``, deleted afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                    str(place / "home"), "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def checkout(base: Path) -> Path:
    """A workspace of branch main, made as the runtime makes it."""
    repo = make_repo(base / "src")
    store = ws.store_path(base / "state", repo.url)
    ws.fetch_branch(repo.url, "main", store)
    folder = base / "projects" / "agent"
    folder.parent.mkdir()
    ws.create(store, "main", folder, repo.url)
    return folder


def plant_clean_filter(folder: Path, script_text: str, files: str, uid: int, gid: int) -> Path:
    """What a service writes in its own checkout: ``script_text`` as the clean filter of ``files``
    (a .gitattributes pattern), with VERSION's stat changed so that ``status`` must run it. Returns
    the script's path."""
    script = folder / ".git" / "filter.sh"
    script.write_text(script_text)
    script.chmod(0o755)
    with open(folder / ".git" / "config", "a") as config:
        config.write(f'[filter "x"]\n\tclean = {script} clean\n')
    (folder / ".git" / "info").mkdir(exist_ok=True)
    (folder / ".git" / "info" / "attributes").write_text(f"{files} filter=x\n")
    os.utime(folder / "VERSION", (1e9, 1e9))  # stat differs from the index: status must look inside
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(folder)], check=True)
    return script

