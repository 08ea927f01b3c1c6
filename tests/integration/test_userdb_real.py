"""Batch account creation against the real thing: the same entries as the real useradd, resolved
by NSS (getent, id), safe next to a concurrent useradd, and the useradd fallback when /etc/passwd
is a bind mount. Runs in the session's private /etc copy (tests/conftest.py); every test puts the
account files back afterwards."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures.host import restored_accounts

from maestro_runtime.ops import accounts, userdb, userdb_files

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
FILES = ("passwd", "group", "shadow", "gshadow")
ETC = Path("/etc")


@pytest.fixture(autouse=True)
def fresh_accounts():
    with restored_accounts():
        yield


def entries(etc: Path, names) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for kind in FILES:
        for line in (etc / kind).read_text().splitlines():
            if line.split(":")[0] in names:
                found.setdefault(kind, {})[line.split(":")[0]] = line
    return found


def useradd(name: str, home: str, *extra: str) -> None:
    subprocess.run(["useradd", *extra, "--system", "--user-group", "--no-create-home", "--home-dir", home,
                    "--shell", "/usr/sbin/nologin", "--comment", "maestro service", name],
                   check=True, capture_output=True)


def test_batch_writes_what_useradd_writes():
    names = ["svc_ua", "svc_ub", "svc_uc"]
    before = {kind: (ETC / kind).read_bytes() for kind in FILES}
    modes = {kind: ((ETC / kind).stat().st_mode, (ETC / kind).stat().st_uid, (ETC / kind).stat().st_gid)
             for kind in FILES}
    result = userdb_files.create([userdb.NewAccount(n, f"/srv/h/{n}") for n in names], ETC, prefix=False)
    assert set(result.created) == set(names)
    batch = entries(ETC, names)
    for kind in FILES:
        stat = (ETC / kind).stat()
        assert (stat.st_mode, stat.st_uid, stat.st_gid) == modes[kind]  # e.g. shadow root:shadow 0640
        assert (ETC / f"{kind}-").read_bytes() == before[kind]  # shadow's backup: the file before
        assert not (ETC / f"{kind}.lock").exists() and not (ETC / f"{kind}+").exists()
    for name in names:  # NSS sees them, through a process of its own
        line = subprocess.run(["getent", "passwd", name], capture_output=True, text=True, check=True).stdout
        assert line.strip() == batch["passwd"][name]
        assert subprocess.run(["getent", "group", name], capture_output=True, text=True,
                              check=True).stdout.strip() == batch["group"][name]
        uid, gid = result.created[name]
        assert subprocess.run(["id", name], capture_output=True, text=True, check=True).stdout.strip() == \
            f"uid={uid}({name}) gid={gid}({name}) groups={gid}({name})"

    for kind in FILES:  # the same three accounts made by the real useradd, from the same start
        (ETC / kind).write_bytes(before[kind])
    for name in names:
        useradd(name, f"/srv/h/{name}")
    assert entries(ETC, names) == batch  # every field: ids, comment, home, shell, "!", lastchg, "x"


def test_prefix_batch_writes_what_useradd_prefix_writes(tmp_path):
    names = ["svc_pa", "svc_pb"]
    etc_batch = accounts._prefix_etc(tmp_path / "batch")
    # libnss-extrausers-style files may already hold accounts: allocation continues below them
    (etc_batch / "passwd").write_text("svc_old:x:29999:29999:maestro service:/h:/usr/sbin/nologin\n")
    (etc_batch / "group").write_text("svc_old:x:29999:\nother:x:29998:\n")
    (etc_batch / "shadow").write_text("svc_old:!:20000::::::\n")
    (etc_batch / "gshadow").write_text("svc_old:!::\nother:!::\n")
    etc_real = accounts._prefix_etc(tmp_path / "real")
    for kind in FILES:
        (etc_real / kind).write_bytes((etc_batch / kind).read_bytes())
    etc_before = {kind: (ETC / kind).read_bytes() for kind in FILES}

    result = userdb_files.create([userdb.NewAccount(n, f"/h/{n}") for n in names], etc_batch, prefix=True)
    assert result.created == {"svc_pa": (29998, 29997), "svc_pb": (29997, 29996)}
    for name in names:
        useradd(name, f"/h/{name}", *accounts._prefix_args(tmp_path / "real"))
    assert entries(etc_batch, names) == entries(etc_real, names)
    assert {kind: (ETC / kind).read_bytes() for kind in FILES} == etc_before  # /etc untouched
    assert (etc_batch / "shadow").stat().st_mode & 0o777 == 0o640


def test_prefix_accounts_through_ensure_account(tmp_path):
    made = accounts.ensure_account("svc_pfx", tmp_path / "home", tmp_path / "nss")
    assert 20000 <= made.uid <= 29999 and made.gid == made.uid
    assert f"svc_pfx:x:{made.uid}:{made.gid}:maestro service:" in (tmp_path / "nss/etc/passwd").read_text()
    assert accounts.ensure_account("svc_pfx", tmp_path / "home", tmp_path / "nss") == made


def test_32_threads_make_32_accounts_in_few_writes(tmp_path, monkeypatch):
    commits = []
    real_commit = userdb_files._commit

    def counted(*args, **kwargs):  # a spy: the real write runs, we only count them
        commits.append(1)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(userdb_files, "_commit", counted)
    start = threading.Barrier(32)
    made: dict[int, accounts.Account] = {}

    def provision(i: int) -> None:
        start.wait()
        made[i] = accounts.ensure_account(f"svc_thr{i:02d}", tmp_path)

    threads = [threading.Thread(target=provision, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 32
    assert len({a.uid for a in made.values()}) == 32 and len({a.gid for a in made.values()}) == 32
    assert 1 <= len(commits) <= 8, f"{len(commits)} writes for 32 accounts"
    getent = subprocess.run(["getent", "passwd", *(a.user for a in made.values())], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert len(getent) == 32
    for account in made.values():
        assert account.home.stat().st_uid == account.uid


def test_concurrent_useradd_loses_no_entry(tmp_path):
    loop = subprocess.Popen(
        ["sh", "-c", "for i in $(seq 1 20); do useradd --system --user-group --no-create-home "
                     "--shell /usr/sbin/nologin op_$i || exit 1; done"], stderr=subprocess.PIPE, text=True)
    made = []

    def provision(i: int) -> None:
        made.append(accounts.ensure_account(f"svc_cc{i:02d}", tmp_path))

    wave = 0
    while wave < 4 or (loop.poll() is None and wave < 12):  # batches for as long as the loop runs
        threads = [threading.Thread(target=provision, args=(wave * 8 + i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wave += 1
    assert loop.wait(timeout=120) == 0, loop.stderr.read()
    names = {f"svc_cc{i:02d}" for i in range(wave * 8)} | {f"op_{i}" for i in range(1, 21)}
    found = entries(ETC, names)
    for kind in FILES:
        assert set(found[kind]) == names, kind
        userdb.parse(kind, (ETC / kind).read_text())  # still parses
    uids = [int(line.split(":")[2]) for line in userdb.parse("passwd", (ETC / "passwd").read_text()).lines
            if line]
    assert len(uids) == len(set(uids))


def test_an_operators_useradd_waits_for_the_batch_lock():
    with userdb_files.locked(ETC, global_lock=True):
        proc = subprocess.Popen(["useradd", "--system", "--no-create-home", "op_waiting"],
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert proc.poll() is None  # blocked in lckpwdf() on our .pwd.lock
        assert Path("/etc/passwd.lock").read_bytes() == f"{os.getpid()}\0".encode()  # shadow's format
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    assert "op_waiting:" in (ETC / "passwd").read_text()


def test_the_batch_waits_for_another_processes_lock_and_clears_a_dead_ones(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open('/etc/.pwd.lock', os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(0.7)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    dead = subprocess.Popen(["true"])
    dead.wait()
    Path("/etc/group.lock").write_bytes(f"{dead.pid}\0".encode())  # left by a useradd that was killed
    started = time.monotonic()
    account = accounts.ensure_account("svc_waited", tmp_path)
    assert time.monotonic() - started >= 0.3  # it waited for the holder, then created the account
    assert holder.wait(timeout=10) == 0
    assert f"svc_waited:x:{account.uid}:" in (ETC / "passwd").read_text()
    assert not Path("/etc/group.lock").exists()


@pytest.mark.parametrize("mounted,same_fs,why", [
    ("passwd", True, "cannot replace /etc/passwd"),  # rename: EBUSY
    ("shadow", True, "cannot replace /etc/shadow"),  # passwd, already replaced, is put back
    ("passwd", False, "/etc/passwd is mounted over"),  # seen before anything is written
])
def test_bind_mounted_file_falls_back_to_useradd(tmp_path, caplog, mounted, same_fs, why):
    """A file mounted over /etc/passwd (or shadow) cannot be renamed over: nothing is changed
    and useradd is run, as before this batch (and fails the same way)."""
    copy = (ETC if same_fs else tmp_path) / f".bound-{mounted}"
    copy.write_bytes((ETC / mounted).read_bytes())
    subprocess.run(["mount", "--bind", str(copy), str(ETC / mounted)], check=True)
    try:
        before = {kind: (ETC / kind).read_bytes() for kind in FILES}
        with pytest.raises(userdb.Unusual, match=why):
            userdb_files.create([userdb.NewAccount("svc_bound", "/h")], ETC, prefix=False)
        assert {kind: (ETC / kind).read_bytes() for kind in FILES} == before  # put back, if replaced
        assert not [p for p in ETC.iterdir() if p.name.endswith(("+", ".lock")) and p.name.split(".")[0]
                    in FILES]
        with caplog.at_level(logging.DEBUG, logger="maestro"), \
                pytest.raises(accounts.AccountError, match=r"^useradd failed"):
            accounts.ensure_account("svc_bound", tmp_path / "home")
        # useradd cannot rename over a mount either: today's one-line error, after the debug line
        assert why in caplog.text and "creating svc_bound with useradd" in caplog.text
    finally:
        subprocess.run(["umount", str(ETC / mounted)], check=True)
        copy.unlink()


def test_nis_line_falls_back_to_useradd(tmp_path, caplog):
    with (ETC / "group").open("a") as handle:
        handle.write("+:::\n")
    with caplog.at_level(logging.DEBUG, logger="maestro"):
        account = accounts.ensure_account("svc_nis", tmp_path)
    assert "NIS compat entry" in caplog.text
    assert f"svc_nis:x:{account.uid}:{account.gid}:maestro service:" in (ETC / "passwd").read_text()


def test_lock_files_are_seen_by_useradd():
    """shadow's own tools see our NAME.lock files as held (a live pid in shadow's format)."""
    with userdb_files.locked(ETC, global_lock=False):
        proc = subprocess.run(["useradd", "--system", "--no-create-home", "op_refused"], capture_output=True,
                              text=True)
    assert proc.returncode != 0 and "cannot lock /etc/passwd" in proc.stderr
    assert "op_refused:" not in (ETC / "passwd").read_text()


def test_read_only_etc_falls_back_to_useradd_and_its_error(tmp_path, caplog):
    subprocess.run(["mount", "-o", "remount,bind,ro", "/etc"], check=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="maestro"), \
                pytest.raises(accounts.AccountError, match=r"^useradd failed"):
            accounts.ensure_account("svc_readonly", tmp_path)
    finally:
        subprocess.run(["mount", "-o", "remount,bind,rw", "/etc"], check=True)
    assert "Read-only file system" in caplog.text and "creating svc_readonly with useradd" in caplog.text
