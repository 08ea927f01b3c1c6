"""Safe extraction: the pure member planner and the extractor on hostile archives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.archives import make_tar, make_zip, project_entries

from maestro_runtime.sources.extract import Caps, ExtractError, Member, extract_archive, plan_members


def paths(members):
    return [p.path for p in plan_members(members)]


def test_single_top_folder_is_stripped():
    members = [Member("p-1/", "dir"), Member("p-1/a.txt", "file", 1), Member("p-1/sub/b", "file", 1)]
    assert paths(members) == ["a.txt", "sub/b"]


def test_no_common_top_keeps_names():
    assert paths([Member("a.txt", "file", 1), Member("sub/b", "file", 1)]) == ["a.txt", "sub/b"]


def test_lone_file_is_not_a_top_folder():
    assert paths([Member("README", "file", 1)]) == ["README"]


@pytest.mark.parametrize(
    "member, message",
    [
        (Member("/etc/passwd", "file", 1), "absolute"),
        (Member("p/../../x", "file", 1), ".."),
        (Member("p/link", "symlink", 0, "/etc/passwd"), "outside"),
        (Member("p/link", "symlink", 0, "../../etc"), "outside"),
        (Member("p/hl", "hardlink", 0, "/etc/passwd"), "absolute"),
        (Member("p/hl", "hardlink", 0, "etc/passwd"), "leaves the project"),
        (Member("p/dev", "other"), "device"),
    ],
)
def test_hostile_members_are_rejected(member, message):
    with pytest.raises(ExtractError, match=message):
        plan_members([Member("p/", "dir"), Member("p/ok", "file", 1), member])


def test_inner_symlink_is_allowed():
    plan = plan_members([Member("p/a", "file", 1), Member("p/sub/l", "symlink", 0, "../a")])
    assert [p.path for p in plan] == ["a", "sub/l"]


def test_caps():
    with pytest.raises(ExtractError, match="entries"):
        plan_members([Member(f"f{i}", "file", 1) for i in range(11)], Caps(max_files=10))
    with pytest.raises(ExtractError, match="bytes"):
        plan_members([Member("big", "file", 10**9)], Caps(max_bytes=10**6))


@pytest.mark.parametrize("mode, suffix", [("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"),
                                          ("w", ".tar")])
def test_extract_tar_formats(tmp_path, mode, suffix):
    archive = make_tar(tmp_path / f"a{suffix}", project_entries(), mode)
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out/index.html").read_text() == "<h1>hello</h1>\n"
    assert (tmp_path / "out/lib/util.py").is_file()


def test_extract_zip_with_inner_symlink(tmp_path):
    entries = [*project_entries("p"), ("symlink", "p/alias.html", "index.html")]
    extract_archive(make_zip(tmp_path / "a.zip", entries), tmp_path / "out")
    assert (tmp_path / "out/alias.html").read_text() == "<h1>hello</h1>\n"
    assert (tmp_path / "out/alias.html").is_symlink()


def test_tar_hardlink_inside_is_copied(tmp_path):
    entries = [*project_entries("p"), ("hardlink", "p/copy.html", "p/index.html")]
    extract_archive(make_tar(tmp_path / "a.tgz", entries), tmp_path / "out")
    assert (tmp_path / "out/copy.html").read_text() == "<h1>hello</h1>\n"


@pytest.mark.parametrize(
    "entry",
    [
        ("file", "../evil.txt", b"x"),
        ("file", "/tmp/evil-abs.txt", b"x"),
        ("symlink", "p/esc", "/etc"),
        ("symlink", "p/esc", "../../.."),
        ("hardlink", "p/esc", "/etc/passwd"),
        ("hardlink", "p/esc", "../../etc/passwd"),
        ("chr", "p/null", None),
        ("fifo", "p/fifo", None),
    ],
)
def test_hostile_tar_writes_nothing_outside(tmp_path, entry):
    root = tmp_path / "root"
    root.mkdir()
    archive = make_tar(tmp_path / "evil.tar.gz", [*project_entries("p"), entry])
    with pytest.raises(ExtractError):
        extract_archive(archive, root / "out")
    assert sorted(p.name for p in root.iterdir()) == ["out"]
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil-abs.txt").exists()


def test_symlink_then_write_through_it_is_rejected(tmp_path):
    """The classic two-step escape: a link to outside, then a file "inside" the link."""
    entries = [("dir", "p", None), ("symlink", "p/d", "../../outside"), ("file", "p/d/x", b"x")]
    with pytest.raises(ExtractError):
        extract_archive(make_tar(tmp_path / "a.tgz", entries), tmp_path / "r/out")
    assert not (tmp_path / "outside").exists()


def test_zip_hostile(tmp_path):
    for i, entry in enumerate([("file", "../z.txt", b"x"), ("symlink", "p/l", "/etc"), ("chr", "p/c", None)]):
        with pytest.raises(ExtractError):
            extract_archive(make_zip(tmp_path / f"{i}.zip", [*project_entries("p"), entry]), tmp_path / f"o{i}")
    assert not (tmp_path / "z.txt").exists()


def test_decompression_bomb_is_stopped(tmp_path):
    bomb = make_tar(tmp_path / "bomb.tar.gz", [("file", "p/zeros", b"\0" * (8 * 1024 * 1024))])
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ExtractError, match="cap"):
        extract_archive(bomb, tmp_path / "out", caps=Caps(max_bytes=1024 * 1024))
    zbomb = make_zip(tmp_path / "bomb.zip", [("file", "p/zeros", b"\0" * (8 * 1024 * 1024))])
    with pytest.raises(ExtractError, match="cap"):
        extract_archive(zbomb, tmp_path / "out2", caps=Caps(max_bytes=1024 * 1024))


def test_file_count_bomb(tmp_path):
    entries = [("file", f"p/f{i}", b"") for i in range(50)]
    with pytest.raises(ExtractError, match="entries"):
        extract_archive(make_tar(tmp_path / "many.tgz", entries), tmp_path / "out", caps=Caps(max_files=20))


def test_truncated_archive(tmp_path):
    good = make_tar(tmp_path / "a.tar.gz", project_entries("p", {"big.bin": "x" * 200_000}))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ExtractError, match="cannot read"):
        extract_archive(cut, tmp_path / "out")


def test_a_hardlink_never_copies_a_file_through_a_chain_of_inside_links(tmp_path):
    """Each link looks inside the project: y -> ".", x -> "y/y/.../../..". Together x is the
    folder 12 levels up, and a hard link to x/<path> had root copy any file of the machine."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root's secret\n")
    up = "/".join(["y"] * 12 + [".."] * 12)
    steal = f"p/x{secret}"
    entries = [*project_entries("p"), ("symlink", "p/y", "."), ("symlink", "p/x", up), ("hardlink", "p/stolen", steal)]
    with pytest.raises(ExtractError, match="no file to link to"):
        extract_archive(make_tar(tmp_path / "a.tgz", entries), tmp_path / "r/out")
    assert not (tmp_path / "r/out/stolen").exists()


def test_hardlink_copies_count_against_the_size_cap(tmp_path):
    """One file and many hard links to it: each is a copy on disk, so each counts."""
    entries = [("dir", "p", None), ("file", "p/big", b"x" * 1000),
               *[("hardlink", f"p/copy{i}", "p/big") for i in range(10)]]
    with pytest.raises(ExtractError, match="size cap"):
        extract_archive(make_tar(tmp_path / "a.tgz", entries), tmp_path / "out", caps=Caps(max_bytes=5000))
