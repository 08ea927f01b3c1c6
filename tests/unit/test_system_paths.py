"""System paths as a local repo: refused unless the operator says so (pure part)."""

from __future__ import annotations

import pytest

from maestro_runtime.sources.fetch import system_path_problem
from maestro_runtime.spec import SpecError, parse_yaml_entry


@pytest.mark.parametrize("repo", ["/etc", "/etc/ssh", "/root", "/proc/1", "/sys", "/dev", "/run/secrets", "/boot",
                                  "/var/lib/maestro/projects/other", "file:///etc", "/", "/etc/../etc/x.git",
                                  "/usr/../root"])
def test_system_paths_are_named(repo):
    problem = system_path_problem(repo)
    assert problem and repo in problem


def test_links_are_resolved_and_protected_folders_added(tmp_path):
    (tmp_path / "to-etc").symlink_to("/etc")
    assert "under /etc" in system_path_problem(str(tmp_path / "to-etc"))
    state = tmp_path / "state"
    (state / "projects" / "web").mkdir(parents=True)
    assert system_path_problem(str(state / "projects" / "web"), [state])
    assert system_path_problem(str(tmp_path / "src")) is None


def test_operator_roots(tmp_path):
    assert system_path_problem(str(tmp_path / "src"), roots=[tmp_path]) is None
    assert "MAESTRO_LOCAL_SOURCE_ROOTS" in system_path_problem("/srv/x", roots=[tmp_path])


def test_urls_are_not_paths():
    for repo in ("https://github.com/o/r", "git@github.com:o/r.git", "https://x/etc.tar.gz"):
        assert system_path_problem(repo) is None


def test_yaml_field():
    assert parse_yaml_entry("f#1", {"repo": "/etc", "allow_system_path": True}).allow_system_path
    assert not parse_yaml_entry("f#1", {"repo": "/srv/a"}).allow_system_path
    with pytest.raises(SpecError, match="allow_system_path"):
        parse_yaml_entry("f#1", {"repo": "/etc", "allow_system_path": "yes"})
