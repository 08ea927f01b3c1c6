"""Branch workspaces with real git (as the current user): one store, one checkout per branch."""

from __future__ import annotations

import os
import subprocess

import pytest
from fixtures.gitrepos import git, make_repo

from maestro_runtime.tasks import workspace as ws


def test_two_branches_share_one_store_and_count_their_own_commits(tmp_path):
    repo = make_repo(tmp_path / "src")
    store = ws.store_path(tmp_path / "state", repo.url)
    assert store == ws.store_path(tmp_path / "state", f"git+{repo.url}")  # one store per repository
    assert ws.fetch_branch(repo.url, "main", store) == repo.main_sha
    assert ws.fetch_branch(repo.url, "feature", store) == repo.feature_sha
    ws.create(store, "main", tmp_path / "a", repo.url)
    ws.create(store, "feature", tmp_path / "b", repo.url)
    assert store.stat().st_mode & 0o777 == 0o700 and store.parent.stat().st_mode & 0o777 == 0o700
    store_packs = {p.stat().st_ino for p in (store / "objects").rglob("*") if p.is_file()}
    for folder in ("a", "b"):
        assert not (tmp_path / folder / ".git/objects/info/alternates").exists()  # the store is never read by users
        linked = [p for p in (tmp_path / folder / ".git/objects").rglob("*") if p.is_file()]
        assert linked and all(p.stat().st_ino in store_packs for p in linked)  # on disk once
    assert not (tmp_path / "a" / "feature.txt").exists() and (tmp_path / "b" / "feature.txt").exists()

    a = str(tmp_path / "a")
    (tmp_path / "a" / "new.txt").write_text("x")
    git("add", "new.txt", cwd=tmp_path / "a")
    git("commit", "-q", "-m", "one", cwd=tmp_path / "a")
    (tmp_path / "a" / "dirty.txt").write_text("y")
    uid = os.getuid()
    status = ws.status(uid, os.getgid(), str(tmp_path), a, ws.branch_tip(store, "main"))
    assert status is not None
    assert (status.branch, status.changed, status.ahead, status.behind) == ("main", 1, 1, 0)
    assert status.last_commit.endswith(" one")
    assert ws.commits_since(uid, os.getgid(), str(tmp_path), a, repo.main_sha) == 1

    # Upstream moves on; the store learns it (a refetch), the checkout has not fetched it.
    work = repo.bare.parent / "work"
    git("commit", "-q", "--allow-empty", "-m", "upstream one", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "upstream two", cwd=work)
    git("push", "-q", str(repo.bare), "main", cwd=work)
    tip = ws.fetch_branch(repo.url, "main", store)
    status = ws.status(uid, os.getgid(), str(tmp_path), a, tip, store=store, base=repo.main_sha)
    assert status is not None and (status.ahead, status.behind) == (1, 2)


def test_a_tag_is_not_a_branch(tmp_path):
    repo = make_repo(tmp_path / "src")
    with pytest.raises(ws.NotABranch, match="'v1' is not a branch"):
        ws.fetch_branch(repo.url, "v1", ws.store_path(tmp_path / "state", repo.url))


def test_a_workspace_never_holds_the_objects_of_another_entrys_branch(tmp_path):
    """The store holds every branch anyone fetched: a checkout made after another entry's branch
    came in gets its own branch's objects only, not hard links to the whole store."""
    repo = make_repo(tmp_path / "src")
    store = ws.store_path(tmp_path / "state", repo.url)
    ws.fetch_branch(repo.url, "feature", store)  # another entry's branch
    ws.fetch_branch(repo.url, "main", store)
    ws.create(store, "main", tmp_path / "a", repo.url)
    seen = subprocess.run(["git", "-C", str(tmp_path / "a"), "cat-file", "-e", repo.feature_sha],
                          capture_output=True)
    assert seen.returncode != 0, "the feature branch's commit is readable from main's workspace"
    assert git("rev-parse", "HEAD", cwd=tmp_path / "a") == repo.main_sha
    assert (tmp_path / "a" / "VERSION").read_text() == "main\n"
    assert git("status", "--porcelain", cwd=tmp_path / "a") == ""
    assert git("rev-parse", "--abbrev-ref", "@{upstream}", cwd=tmp_path / "a") == "origin/main"
    assert git("config", "remote.origin.url", cwd=tmp_path / "a") == repo.url
    # What it shares with the store is still linked, not copied.
    in_store = {p.stat().st_ino for p in (store / "objects").rglob("*") if p.is_file()}
    assert any(p.stat().st_ino in in_store for p in (tmp_path / "a" / ".git/objects").rglob("*") if p.is_file())


def test_a_branch_packed_in_the_store_links_its_packs_and_packs_the_rest(tmp_path):
    """Packed stores (big fetches): a pack of main's history is linked into feature's checkout,
    feature's own pack is not linked into main's."""
    repo = make_repo(tmp_path / "src")
    store = ws.store_path(tmp_path / "state", repo.url)
    ws.fetch_branch(repo.url, "main", store)
    git("--git-dir", str(store), "repack", "-q", "-d", "-l", cwd=tmp_path)  # main's objects: one pack
    ws.fetch_branch(repo.url, "feature", store)
    ws.create(store, "feature", tmp_path / "f", repo.url)
    ws.create(store, "main", tmp_path / "m", repo.url)
    in_store = {p.stat().st_ino for p in (store / "objects").rglob("*") if p.is_file()}
    packs = [p for p in (tmp_path / "f" / ".git/objects/pack").glob("*.pack")]
    assert any(p.stat().st_ino in in_store for p in packs)  # main's history, shared
    assert git("log", "--format=%s", cwd=tmp_path / "f").splitlines() == ["feature", "main"]
    assert subprocess.run(["git", "-C", str(tmp_path / "m"), "cat-file", "-e", repo.feature_sha]).returncode != 0
    assert git("fsck", "--no-dangling", cwd=tmp_path / "m") == git("fsck", "--no-dangling", cwd=tmp_path / "f") == ""


def test_a_branch_workspace_is_held_to_the_fetch_and_extract_caps(tmp_path):
    # An agent pushes to its own branch: what it pushed is fetched and checked out by root.
    from fixtures.ghstandin import master_repo

    from maestro_runtime.sources.extract import Caps

    noisy = f"file://{master_repo(tmp_path / 'noisy', {'noise.bin': os.urandom(3_000_000)})}"
    store = ws.store_path(tmp_path / "state", noisy)
    with pytest.raises(ws.WorkspaceError, match="what it fetched is over MAESTRO_FETCH_MAX_BYTES=1000000"):
        ws.fetch_branch(noisy, "master", store, max_bytes=1_000_000)

    linky = f"file://{master_repo(tmp_path / 'linky', {'a': 'x'}, links={'Procfile': '/etc/shadow'})}"
    store = ws.store_path(tmp_path / "state", linky)
    ws.fetch_branch(linky, "master", store, max_bytes=10_000_000)
    with pytest.raises(ws.WorkspaceError, match="'Procfile' -> '/etc/shadow' points outside the project"):
        ws.create(store, "master", tmp_path / "w1", linky)
    assert not (tmp_path / "w1").exists()

    zeros = f"file://{master_repo(tmp_path / 'zeros', {'zeros': bytes(20_000_000)})}"
    store = ws.store_path(tmp_path / "state", zeros)
    ws.fetch_branch(zeros, "master", store, max_bytes=10_000_000)  # a few KiB of pack
    with pytest.raises(ws.WorkspaceError, match="over MAESTRO_EXTRACT_MAX_BYTES=10000000"):
        ws.create(store, "master", tmp_path / "w2", zeros, Caps(max_files=10, max_bytes=10_000_000))
    ws.create(store, "master", tmp_path / "w3", zeros)  # under the default caps it is fine
    assert (tmp_path / "w3" / "zeros").stat().st_size == 20_000_000
