"""Branch workspaces with real git (as the current user): one store, one checkout per branch."""

from __future__ import annotations

import os

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
