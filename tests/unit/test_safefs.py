"""safefs under hostile trees: whatever a service planted, nothing outside its tree changes
and no operation blocks (property test), plus the single cases it must refuse."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maestro_runtime import safefs
from maestro_runtime.sources import detect
from maestro_runtime.spec import SpecError, parse_preseeded_folder

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="re-owning files needs root")
UID = GID = 54321
KINDS = ("file", "dir", "link_file", "link_dir", "link_dangling", "hardlink", "fifo", "socket", "big", "deep")
NAMES = ("package.json", ".maestro-name", ".maestro-user", ".maestro-port", ".maestro-cmd", ".maestro-disable",
         ".cache", ".maestro", "node_modules", "Procfile", "requirements.txt", "data", "x", "pyvenv.cfg")


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail instead of hanging: a FIFO opened the wrong way would block forever."""
    def expire(*_):
        raise TimeoutError("a file operation blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def make_outside(base: Path) -> Path:
    """Root's files the tree points at: a secret, a folder, a file the tree hard-links."""
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    for path, mode in ((outside / "secret", 0o600), (outside / "dir" / "inner", 0o640), (outside / "linked", 0o600)):
        path.write_text(f"root only: {path.name}\n")
        path.chmod(mode)
    return outside


def snapshot(folder: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in (".", *dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            content = Path(path).read_bytes() if stat.S_ISREG(st_.st_mode) else None
            out[path] = (st_.st_uid, st_.st_gid, st_.st_mode, content)  # not nlink: the tree may drop its link
    return out


def plant(folder: Path, name: str, kind: str, outside: Path, sockets: list[socket.socket]) -> None:
    path = folder / name
    if kind == "file":
        path.write_text("{}")
    elif kind == "dir":
        path.mkdir()
        (path / "package.json").write_text("{}")
    elif kind == "link_file":
        path.symlink_to(outside / "secret")
    elif kind == "link_dir":
        path.symlink_to(outside / "dir")
    elif kind == "link_dangling":
        path.symlink_to(outside / "missing")
    elif kind == "hardlink":
        os.link(outside / "linked", path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sockets.append(sock)
    elif kind == "big":
        with open(path, "wb") as handle:
            handle.truncate(80 * 1024 * 1024)  # sparse: larger than every cap
    elif kind == "deep":
        deep = path
        for _ in range(300):  # deeper than safefs.MAX_DEPTH
            deep = deep / "d"
        deep.mkdir(parents=True)
        (deep / "leaf").write_text("x")


def every_operation(base: Path, tree: Path) -> None:
    """Each root-side operation of safefs over the tree; refusals are fine, changes outside are not."""
    names = sorted(os.listdir(tree))
    with contextlib.suppress(safefs.UnsafeFile), safefs.opened_dir(tree, under=base) as fd:
        safefs.own_tree(fd, UID, GID, tree, mode=0o750, leave=(".maestro-user",))
    for name in names:
        for action in _operations(base, tree, name):
            with contextlib.suppress(safefs.UnsafeFile, FileNotFoundError, NotADirectoryError, IsADirectoryError):
                action()
    with contextlib.suppress(SpecError):
        parse_preseeded_folder(tree, {}, "auto")
    with contextlib.suppress(detect.NoStartCommand):  # a hostile tree may well have no way to start
        detect.detect_command(tree)
    for name in names:
        safefs.remove_tree(tree / name, under=base)


def _operations(base: Path, tree: Path, name: str) -> list:
    def ensure(fd: int) -> None:
        os.close(safefs.ensure_dir(fd, name, tree / name, uid=UID, gid=GID, mode=0o700))

    return [
        lambda: safefs.read_file(tree / name, under=base, limit=64 * 1024),
        lambda: safefs.read_file(tree / name / "package.json", under=base, limit=64 * 1024),
        lambda: _at(base, tree, lambda fd: safefs.exists(fd, name)),
        lambda: _at(base, tree, ensure),
        lambda: _at(base, tree, lambda fd: safefs.create_at(fd, name, b"1\n", uid=UID, gid=GID)),
        lambda: _at(base, tree, lambda fd: safefs.write_at(fd, name, b"stamp", uid=UID, gid=GID)),
    ]


def _at(base: Path, tree: Path, action):
    with safefs.opened_dir(tree, under=base) as fd:
        return action(fd)


entries = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(KINDS), min_size=1, max_size=8)


@needs_root
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=entries, nested=entries)
def test_hostile_tree_changes_nothing_outside_and_never_blocks(top, nested):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        outside = make_outside(base)
        tree = base / "proj"
        (tree / "sub").mkdir(parents=True)
        sockets: list[socket.socket] = []
        try:
            for name, kind in top.items():
                plant(tree, name, kind, outside, sockets)
            for name, kind in nested.items():
                plant(tree / "sub", name, kind, outside, sockets)
            before = snapshot(outside)
            with deadline(20):
                every_operation(base, tree)
            assert snapshot(outside) == before
        finally:
            for sock in sockets:
                sock.close()


# ---------------------------------------------------------------- single cases


def test_reads_refuse_links_fifos_and_oversized_files(tmp_path):
    tree = tmp_path / "p"
    tree.mkdir()
    (tree / "link").symlink_to("/etc/hostname")
    os.mkfifo(tree / "fifo")
    (tree / "big").write_bytes(b"x" * 101)
    with safefs.opened_dir(tree, under=tmp_path) as fd, deadline(5):
        for name, why in (("link", "symbolic link"), ("fifo", "FIFO"), ("big", "larger than 100")):
            with pytest.raises(safefs.UnsafeFile, match=why):
                safefs.read_at(fd, name, tree / name, limit=100)
        assert safefs.read_at(fd, "missing", tree / "missing", limit=100) is None


def test_a_link_on_the_way_is_refused(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".cache").symlink_to("/etc")
    with pytest.raises(safefs.UnsafeFile, match=r"\.cache: is a symbolic link, not a folder"):
        safefs.open_dir(tmp_path / "home" / ".cache" / "x", under=tmp_path)


def test_writes_never_go_through_a_planted_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("root's")
    tree = tmp_path / "p"
    tree.mkdir()
    (tree / "stamp").symlink_to(target)
    with safefs.opened_dir(tree, under=tmp_path) as fd:
        assert safefs.create_at(fd, "stamp", b"new") is False
        safefs.write_at(fd, "stamp", b"new")
    assert target.read_text() == "root's" and (tree / "stamp").read_text() == "new"
    assert not (tree / "stamp").is_symlink()


@needs_root
def test_own_tree_leaves_links_hardlinks_and_fifos(tmp_path):
    outside = make_outside(tmp_path)
    tree = tmp_path / "p"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_text("mine")
    (tree / "l").symlink_to(outside / "secret")
    os.link(outside / "linked", tree / "hard")
    os.mkfifo(tree / "fifo")
    with safefs.opened_dir(tree, under=tmp_path) as fd:
        skipped = safefs.own_tree(fd, UID, GID, tree)
    assert sorted(Path(s.split(" (")[0]).name for s in skipped) == ["fifo", "hard"]
    assert (tree / "d" / "f").stat().st_uid == UID and (tree / "d").stat().st_uid == UID
    assert os.lstat(tree / "l").st_uid == 0 and (outside / "secret").stat().st_uid == 0
    assert (outside / "linked").stat().st_uid == 0


def test_kept_data_never_moves_through_a_link(tmp_path):
    """keep: a/b, with a/ replaced by a link to root's folder: nothing there moves or goes."""
    from maestro_runtime.sources import fetch as sources

    outside = make_outside(tmp_path)
    projects = tmp_path / "projects"
    dest, staging = projects / "app", projects / ".app.staging"
    dest.mkdir(parents=True)
    (dest / "a").symlink_to(outside)
    (outside / "b").write_text("root's b")
    staging.mkdir()
    (staging / "index.html").write_text("new")
    before = snapshot(outside)
    with pytest.raises(sources.SourceError, match=r"keep a/b: .*/app/a: is a symbolic link"):
        sources.swap_in(staging, dest, ["a/b"])
    assert snapshot(outside) == before


def test_kept_data_is_carried_over(tmp_path):
    from maestro_runtime.sources import fetch as sources

    projects = tmp_path / "projects"
    dest, staging = projects / "app", projects / ".app.staging"
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "notes").write_text("kept")
    (dest / "link").symlink_to("/etc")
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "shipped").write_text("replaced by the kept folder")
    old = sources.swap_in(staging, dest, ["data", "link", "missing/x"])
    assert (dest / "data" / "notes").read_text() == "kept" and not (dest / "data" / "shipped").exists()
    assert not (dest / "link").exists() and old is not None


def test_a_hard_linked_metadata_file_fails_its_folder(tmp_path):
    """A .maestro-cmd that is a hard link to a file elsewhere (root's, where fs.protected_hardlinks
    is off, so the service could make it; made here by the test) was read and run as the
    service's command: the other file's content in the service's process and in list-services."""
    secret = tmp_path / "secret"
    secret.write_text("echo root-only-content\n")
    secret.chmod(0o600)
    for name in (".maestro-cmd", ".maestro-port"):
        folder = tmp_path / "projects" / ("app" + name.rsplit("-", 1)[1])
        folder.mkdir(parents=True)
        (folder / "index.html").write_text("x")
        os.link(secret, folder / name)
        with pytest.raises(SpecError) as caught:
            parse_preseeded_folder(folder, {}, "auto")
        assert caught.value.field == name and "hard link" in str(caught.value)
        assert "root-only-content" not in str(caught.value)


def test_remove_tree_of_any_depth(tmp_path):
    """A service's folder 1500 levels deep: Python 3.11's fd-based rmtree recursed past its limit."""
    top = tmp_path / "project"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)
    safefs.remove_tree(top, under=tmp_path)
    assert not top.exists()
