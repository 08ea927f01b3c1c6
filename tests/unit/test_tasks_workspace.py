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
    for folder in ("a", "b"):
        assert (tmp_path / folder / ".git/objects/info/alternates").read_text().strip() == str(store / "objects")
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


def test_a_tag_is_not_a_branch(tmp_path):
    repo = make_repo(tmp_path / "src")
    with pytest.raises(ws.NotABranch, match="'v1' is not a branch"):
        ws.fetch_branch(repo.url, "v1", ws.store_path(tmp_path / "state", repo.url))
