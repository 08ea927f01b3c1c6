"""git sources are held to the archive's limits: the pack while it arrives, the tree before checkout.
Real git over file:// (no server, no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures.ghstandin import master_repo
from fixtures.gitrepos import git

from maestro_runtime.sources import git as gitsource
from maestro_runtime.sources.extract import Caps
from maestro_runtime.sources.gittree import TreeEntry, TreeRefused, check_tree, parse_link_batch, parse_ls_tree


def bare_repo(root: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    return f"file://{master_repo(root, files, links)}"


def test_a_pack_over_the_fetch_cap_is_cut_off_and_named(tmp_path):
    url = bare_repo(tmp_path, {"noise.bin": os.urandom(3_000_000), "index.html": b"hi"})
    for ref in ("", "master"):
        dest = tmp_path / f"dest{ref}"
        with pytest.raises(gitsource.GitError, match="over MAESTRO_FETCH_MAX_BYTES=1000000"):
            gitsource.clone(url, ref, dest, max_bytes=1_000_000)
    # the same repository under a cap it fits
    assert gitsource.clone(url, "", tmp_path / "fits", max_bytes=10_000_000) == "default branch"
    assert (tmp_path / "fits" / "index.html").read_bytes() == b"hi"


def test_a_commit_fetch_is_capped_too(tmp_path):
    url = bare_repo(tmp_path, {"noise.bin": os.urandom(3_000_000)})
    sha = git("rev-parse", "HEAD", cwd=tmp_path / "work")
    with pytest.raises(gitsource.GitError, match="MAESTRO_FETCH_MAX_BYTES"):
        gitsource.clone(url, sha, tmp_path / "dest", max_bytes=1_000_000)


def test_a_compressible_bomb_is_refused_before_checkout_writes_it(tmp_path):
    # 40 MB of zeros packs to a few KiB: only the tree says how much the checkout would write.
    url = bare_repo(tmp_path, {"zeros": b"\0" * 40_000_000, "index.html": b"hi"})
    dest = tmp_path / "dest"
    with pytest.raises(gitsource.GitError, match="40000002 bytes, over MAESTRO_EXTRACT_MAX_BYTES=10000000"):
        gitsource.clone(url, "master", dest, max_bytes=10_000_000, caps=Caps(max_files=100, max_bytes=10_000_000))
    assert not (dest / "zeros").exists() and not (dest / "index.html").exists()


def test_too_many_files_are_refused(tmp_path):
    url = bare_repo(tmp_path, {f"f{i}": b"x" for i in range(30)})
    with pytest.raises(gitsource.GitError, match="30 files, over MAESTRO_EXTRACT_MAX_FILES=20"):
        gitsource.clone(url, "", tmp_path / "dest", caps=Caps(max_files=20, max_bytes=10**9))


def test_symlinks_out_of_the_project_are_refused_as_in_archives(tmp_path):
    url = bare_repo(tmp_path / "out", {"index.html": b"hi"}, {"Procfile": "/etc/shadow"})
    with pytest.raises(gitsource.GitError, match="'Procfile' -> '/etc/shadow' points outside the project"):
        gitsource.clone(url, "", tmp_path / "d1")
    url = bare_repo(tmp_path / "up", {"a/index.html": b"hi"}, {"a/up": "../../x"})
    with pytest.raises(gitsource.GitError, match="points outside"):
        gitsource.clone(url, "", tmp_path / "d2")
    url = bare_repo(tmp_path / "in", {"a/index.html": b"hi"}, {"a/same": "../a/index.html"})
    gitsource.clone(url, "", tmp_path / "d3")
    assert (tmp_path / "d3" / "a" / "same").read_bytes() == b"hi"


def test_parse_ls_tree_and_link_batch():
    out = ("100644 blob aaa     12\tdir/a file\x00120000 blob bbb      9\tlink\x00"
           "160000 commit ccc       -\tsub\x00")
    entries = parse_ls_tree(out)
    assert entries == [TreeEntry("100644", "aaa", 12, "dir/a file"), TreeEntry("120000", "bbb", 9, "link"),
                       TreeEntry("160000", "ccc", 0, "sub")]
    assert parse_link_batch(b"bbb blob 8\n../x/y\nz\n\nddd missing\n") == {"bbb": "../x/y\nz"}
    check_tree(entries, {"bbb": "dir/a file"}, Caps(max_files=3, max_bytes=12))
    with pytest.raises(TreeRefused):
        check_tree(entries, {}, Caps())  # a link whose target could not be read counts as outside
