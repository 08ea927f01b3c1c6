"""Issue 10, items 1 and 2: the service (or a file it wrote) is the attacker.

Each attacker is a pre-seeded project that plants one thing between two real
boots, with its own uid, the way the service itself could. Afterwards root's
files and the victim's files keep owner, mode and content, every attacker
still runs as its own user (a refused file fails its new version, the
previous one keeps running), and the victim runs untouched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from maestro_runtime.ops import accounts
from maestro_runtime.settings import Settings
from maestro_runtime.state.records import RecordStore

from .conftest import http_get

pytestmark = pytest.mark.integration
SECRET = "root:$y$j9T$not-for-services:19000:0:99999:7:::\n"


def snapshot(*folders: Path) -> dict[str, tuple]:
    """Owner, mode and content of everything below the folders (links are not followed)."""
    out = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in (".", *dirnames, *filenames):
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                content = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path) \
                    if stat.S_ISLNK(st.st_mode) else None
                out[path] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), content)
    return out


def root_only(base: Path) -> Path:
    """Root's files an attacker aims at: a 0700 folder with a shadow-like secret."""
    folder = base / "rootonly"
    folder.mkdir(mode=0o700)
    (folder / "secret").write_text(SECRET)
    (folder / "secret").chmod(0o600)
    (folder / "stampvictim").write_text("root's file\n")
    for index in range(50):  # names the concurrent attacker's folder also has
        (folder / f"f{index}").write_text("root\n")
    return folder


def as_service(path: Path, user: str) -> None:
    """What the service wrote is the service's: give the planted entry its uid."""
    entry = pwd.getpwnam(user)
    os.lchown(path, entry.pw_uid, entry.pw_gid)


def user_of(service: dict) -> str:
    return psutil.Process(service["pid"]).username()


ATTACKERS = ("aname", "cache", "cmd", "daemon", "dis", "dotm", "fifo", "fname", "hard", "port", "stamp", "user")


def test_planted_links_special_files_and_identity_files(maestro):
    target = root_only(maestro.root)
    for name in ATTACKERS:
        maestro.preseed(name)
    (maestro.projects / "stamp" / "requirements.txt").write_text("")  # a real (empty) pip build
    victim = maestro.preseed("b", "<h1>victim</h1>")
    (victim / "data.txt").write_text("b's own data")
    maestro.boot()
    first = maestro.wait_running([*ATTACKERS, "b"], timeout=90)
    home = maestro.root / "home"
    assert maestro.stop() == 0
    protected = snapshot(target, victim, home / "svc_b")

    def plant(service: str, name: str, make) -> Path:
        path = (home / f"svc_{service}" if name.startswith("~/") else maestro.projects / service) / name.lstrip("~/")
        make(path)
        as_service(path, f"svc_{service}")
        return path

    def replace_with_link(to: Path):
        def make(path: Path) -> None:
            os.rename(path, path.with_name(path.name + ".was"))
            path.symlink_to(to)
        return make

    plant("cache", "~/.cache", replace_with_link(target))
    plant("dotm", "~/.maestro", replace_with_link(target))
    os.link(target / "secret", maestro.projects / "hard" / "hardlink")
    plant("fifo", "package.json", os.mkfifo)
    plant("fname", ".maestro-name", os.mkfifo)
    plant("dis", ".maestro-disable", lambda p: p.symlink_to(target / "created-by-root"))
    # remove-service writes .maestro-disable: never through the service's link.
    maestro.run("remove-service", "dis", "--yes")
    plant("port", ".maestro-port", lambda p: (p.unlink(), p.symlink_to(target / "secret")))
    plant("cmd", ".maestro-cmd", lambda p: p.symlink_to(target / "secret"))
    plant("user", ".maestro-user", lambda p: p.write_text("svc_b"))
    plant("daemon", ".maestro-user", lambda p: p.write_text("daemon"))
    plant("aname", ".maestro-name", lambda p: p.write_text("b"))
    (maestro.projects / "stamp" / "requirements.txt").write_text("# changed: rebuild\n")
    venv = home / "svc_stamp" / ".maestro" / "venv"
    plant("stamp", "~/.maestro/venv/.maestro-build-stamp.tmp", lambda p: p.symlink_to(target / "stampvictim"))

    # Operator mistakes the runtime refuses: system accounts, another service's account, a reserved name.
    src = maestro.source("op")
    maestro.boot(SERVICES=f"{src}|||sys|daemon; {src}|||sys2|www-data; {src}|||thief|svc_b; "
                          f"{src}|||maestro-logs", MAESTRO_ALLOWED_USERS="www-data")
    # Every attack is checked, and all that got through are reported together.
    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    running = [a for a in ATTACKERS if a != "dis"] + ["b"]
    try:
        after = maestro.wait_running(running, timeout=60)
    except AssertionError as exc:
        problems.append(f"boot 2 did not start every service: {str(exc)[:200]}")
        after = maestro.services()
    try:  # the FIFO .maestro-name never hangs deploy-from-env (which holds the change lock)
        maestro.run("deploy-from-env", "--prepare-only", check=False)
    except subprocess.TimeoutExpired:
        problems.append("deploy-from-env hung")

    changed = snapshot(target, victim, home / "svc_b")
    check(changed == protected, "root's or b's files changed: " + ", ".join(
        sorted(k for k in {*changed, *protected} if changed.get(k) != protected.get(k)))[:300])
    check(not (target / "created-by-root").exists(), "remove-service created a file through .maestro-disable")
    for name in running:
        svc = after.get(name, {})
        ok = svc.get("status") == "RUNNING" and svc.get("user") == f"svc_{name}" \
            and user_of(svc) == svc.get("user")
        check(ok, f"{name} does not run as svc_{name}: {svc.get('status')} as {svc.get('user')}")
    b = after.get("b", {})
    check(b.get("directory") == str(victim) and b.get("port") == first["b"]["port"], f"b lost its id or port: {b}")
    check(b.get("status") == "RUNNING" and "<h1>victim</h1>" in http_get(b["port"]), "b does not serve")
    check(after.get("aname", {}).get("directory") == str(maestro.projects / "aname"), "aname took another id")

    log, listing = maestro.log(), maestro.run("list-services").stdout
    check(SECRET.strip() not in log + listing, "root's secret shown in the log or list-services")
    for service, why in (("cache", "svc_cache/.cache: is a symbolic link, not a folder"),
                         ("dotm", "svc_dotm/.maestro: is a symbolic link, not a folder"),
                         ("fifo", "package.json: is a FIFO, not a regular file"),
                         ("port", ".maestro-port: is a symbolic link"),
                         ("cmd", ".maestro-cmd: is a symbolic link")):
        check(why in (after.get(service, {}).get("error") or ""), f"{service}: no clear error naming the file")
    check("hardlink (a file with 2 links) left as it is" in log, "no warning about the hard link")
    for service in ("user", "daemon", "aname", "fname"):
        check(f"pre-seeded {maestro.projects / service}: .maestro-" in log, f"{service}: no warning")
    check(not (venv / ".maestro-build-stamp").is_symlink(), "the stamp is the planted link")

    failed = maestro.services()
    for name, why in (("sys", "was not created by maestro-runtime"), ("sys2", "is a system account"),
                      ("thief", "user svc_b already belongs to pre-seeded"), ("maestro-logs", "is reserved")):
        check(why in (failed.get(name, {}).get("error") or ""), f"{name} was not refused ({why})")

    # --delete-user deletes only accounts the runtime created.
    maestro.run("remove-service", "sys", "--delete-user", "--yes", check=False)
    check(_uid("daemon") == 1, "remove-service --delete-user deleted daemon")
    assert not problems, "attacks that got through:\n" + "\n".join(problems)


def _uid(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def test_owner_chosen_identity_files_are_honoured(maestro):
    """The operator's own (root-owned) .maestro-user still names the account, boot after boot."""
    maestro.preseed("chosen", user="svc_chosen_by_op")
    maestro.boot()
    assert maestro.wait_running(["chosen"])["chosen"]["user"] == "svc_chosen_by_op"
    assert (maestro.projects / "chosen" / ".maestro-user").stat().st_uid == 0
    assert maestro.stop() == 0
    maestro.boot()
    assert maestro.wait_running(["chosen"])["chosen"]["user"] == "svc_chosen_by_op"


SWAPPER = """
import os, sys, time
folder, target, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
swapped, aside = os.path.join(folder, "d"), os.path.join(folder, "d.aside")
end = time.monotonic() + seconds
while time.monotonic() < end:
    os.rename(swapped, aside)
    os.symlink(target, swapped)
    os.unlink(swapped)
    os.rename(aside, swapped)
"""


def test_concurrent_swapping_while_the_tree_is_reowned(maestro):
    """The service itself (a process with its uid) swaps a folder and a symlink to root's folder
    in a loop for 2 s while the runtime re-owns the tree: deploy-from-env, and a thread running
    own_tree in a tight loop over files made root's again before each pass."""
    target = root_only(maestro.root)
    folder = maestro.preseed("race")
    swapped = folder / "d"
    swapped.mkdir()
    for index in range(50):
        (swapped / f"f{index}").write_text("mine\n")
    maestro.boot()
    maestro.wait_running(["race"])
    protected = snapshot(target)
    record = RecordStore(Settings.from_env(maestro.env).records_dir).load("race")
    account = accounts.Account(record.user, record.uid, record.gid, Path(record.home))
    stop = threading.Event()

    def reown_loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # root's again (by descriptor: never through the link)
                fd = os.open(swapped, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY)
                try:
                    for name in os.listdir(fd):
                        os.chown(name, 0, 0, dir_fd=fd, follow_symlinks=False)
                finally:
                    os.close(fd)
            with contextlib.suppress(OSError, accounts.AccountError):
                accounts.own_tree(folder, account)

    attacker = subprocess.Popen(["setpriv", f"--reuid={record.uid}", f"--regid={record.gid}", "--clear-groups",
                                 sys.executable, "-c", SWAPPER, str(folder), str(target), "2"])
    reowner = threading.Thread(target=reown_loop)
    reowner.start()
    try:
        while attacker.poll() is None:
            maestro.run("deploy-from-env", check=False)
    finally:
        stop.set()
        reowner.join(30)
        attacker.wait(30)
    assert snapshot(target) == protected
    assert user_of(maestro.wait_running(["race"])["race"]) == record.user
