"""fetch() end to end on loopback: archives over HTTP, GitHub emulation, git repos, hostile sources.

Every failure must be one clear SourceError, write nothing outside the project,
and leave the previous version (and its data/) intact.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.archives import make_tar, make_zip, project_entries, tar_bytes
from fixtures.gitrepos import make_repo
from fixtures.httpserver import FixtureServer

from maestro_runtime.settings import Settings
from maestro_runtime.sources.extract import Caps
from maestro_runtime.sources.fetch import FetchOptions, SourceError, fetch

FAST = FetchOptions(retries=1, backoff=0.01, connect_timeout=2, read_timeout=5)


@pytest.fixture
def server():
    with FixtureServer() as srv:
        yield srv


def good_tar() -> bytes:
    return tar_bytes(project_entries("proj-2.0", {"index.html": "v2\n", "app.py": "print(2)\n"}))


def deployed(tmp_path: Path) -> Path:
    """A project folder already holding version 1 and runtime data."""
    dest = tmp_path / "projects" / "web"
    (dest / "data").mkdir(parents=True)
    (dest / "index.html").write_text("v1\n")
    (dest / "data" / "db.sqlite").write_text("precious\n")
    return dest


def assert_previous_intact(dest: Path) -> None:
    assert (dest / "index.html").read_text() == "v1\n"
    assert (dest / "data" / "db.sqlite").read_text() == "precious\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["web"]  # no staging or download left


def test_archive_over_http_replaces_code_and_keeps_data(tmp_path, server):
    dest = deployed(tmp_path)
    url = server.add("/proj-2.0.tar.gz", good_tar())
    fetch(url, "main", dest, options=FAST)
    assert (dest / "index.html").read_text() == "v2\n"
    assert (dest / "app.py").is_file()
    assert (dest / "data" / "db.sqlite").read_text() == "precious\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["web"]


def test_zip_over_http_with_sha256(tmp_path, server):
    archive = make_zip(tmp_path / "p.zip", project_entries("p"))
    body = archive.read_bytes()
    url = server.add("/p.zip", body)
    dest = tmp_path / "out" / "web"
    fetch(url, "main", dest, options=FAST, sha256=hashlib.sha256(body).hexdigest())
    assert (dest / "index.html").is_file()


def test_transient_errors_are_retried(tmp_path, server):
    url = server.add("/flaky.tar.gz", good_tar(), fail_first=1)
    fetch(url, "main", tmp_path / "web", options=FAST)
    assert server.hits["/flaky.tar.gz"] == 2


def test_progress_lines_for_large_downloads(tmp_path, server, caplog):
    big = make_tar(tmp_path / "big.tar", project_entries("p", {"blob.bin": "x" * 300_000}), "w")
    url = server.add("/big.tar", big.read_bytes())
    opts = FetchOptions(retries=0, progress_bytes=100_000)
    with caplog.at_level(logging.INFO, logger="maestro.sources"):
        fetch(url, "main", tmp_path / "web", options=opts)
    assert sum("downloading" in r.getMessage() for r in caplog.records) >= 2


def evil(tmp: Path, *extra) -> bytes:
    return make_tar(tmp / "e.tgz", [*project_entries("p"), *extra]).read_bytes()


HOSTILE = {
    "404": (lambda t: (b"gone", {"status": 404}), None, "HTTP 404"),
    "500": (lambda t: (b"boom", {"status": 500}), None, "HTTP 500"),
    "truncated": (lambda t: (good_tar() * 3, {"truncate": True}), None, "truncated"),
    "sha256": (lambda t: (good_tar(), {}), "0" * 64, "sha256 mismatch"),
    "traversal": (lambda t: (evil(t, ("file", "../evil", b"x")), {}), None, r"\.\."),
    "absolute": (lambda t: (evil(t, ("file", "/tmp/maestro-abs-evil", b"x")), {}), None, "absolute"),
    "symlink": (lambda t: (evil(t, ("symlink", "p/l", "../../../etc")), {}), None, "outside"),
    "hardlink": (lambda t: (evil(t, ("hardlink", "p/l", "/etc/passwd")), {}), None, "absolute"),
    "bomb": (lambda t: (make_tar(t / "b.tgz", [("file", "p/z", b"\0" * 4_000_000)]).read_bytes(), {}), None,
             "cap"),
    "garbage": (lambda t: (b"this is not an archive", {}), None, "cannot read archive"),
    "empty": (lambda t: (tar_bytes([]), {}), None, "no files"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_broken_archive_keeps_previous_version(tmp_path, server, case):
    build, sha, message = HOSTILE[case]
    body, route = build(tmp_path)
    url = server.add("/x.tar.gz", body, **route)
    dest = deployed(tmp_path / "srv")
    opts = FetchOptions(retries=1, backoff=0.01, caps=Caps(max_bytes=1_000_000))
    with pytest.raises(SourceError, match=message) as info:
        fetch(url, "main", dest, options=opts, sha256=sha)
    assert "Traceback" not in str(info.value)
    assert_previous_intact(dest)
    assert not (tmp_path / "srv" / "evil").exists()
    assert not Path("/tmp/maestro-abs-evil").exists()


def test_download_size_cap(tmp_path, server):
    url = server.add("/x.tar.gz", good_tar())
    dest = deployed(tmp_path)
    with pytest.raises(SourceError, match="MAESTRO_FETCH_MAX_BYTES"):
        fetch(url, "main", dest, options=FetchOptions(max_bytes=10, retries=0))
    assert_previous_intact(dest)


def test_unreachable_host_is_one_clear_error(tmp_path):
    dest = deployed(tmp_path)
    with pytest.raises(SourceError, match="failed after 2 attempts"):
        fetch("http://127.0.0.1:9/x.tar.gz", "main", dest, options=FAST)
    assert_previous_intact(dest)


def test_github_archive_with_token_never_leaks(tmp_path, server, caplog):
    token = "ghp_SECRET_TOKEN_123"
    server.add("/repos/acme/app/tarball/feature", b"", status=302,
               headers={"Location": server.url("/codeload/acme/app/tar.gz/feature")})
    server.add("/codeload/acme/app/tar.gz/feature", good_tar())
    settings = Settings.from_env({"GITHUB_TOKEN": token, "MAESTRO_GITHUB_API_URL": server.base})
    with caplog.at_level(logging.DEBUG):
        fetch("https://github.com/acme/app.git", "feature", tmp_path / "web", settings=settings)
    assert (tmp_path / "web" / "index.html").read_text() == "v2\n"
    first = dict(server.requests[0][1])
    assert first.get("Authorization") == f"Bearer {token}"
    assert token not in caplog.text
    # 404 on a private repo: the error must not carry the token either
    with pytest.raises(SourceError) as info:
        fetch("https://github.com/acme/missing", "main", tmp_path / "web2", settings=settings)
    assert token not in str(info.value) and "404" in str(info.value)


def test_github_public_uses_codeload(tmp_path, server):
    server.add("/acme/app/tar.gz/v1.0", good_tar())
    settings = Settings.from_env({"MAESTRO_GITHUB_CODELOAD_URL": server.base})
    fetch("https://github.com/acme/app", "v1.0", tmp_path / "web", settings=settings)
    assert (tmp_path / "web" / "app.py").is_file()
    assert "Authorization" not in server.requests[0][1]


# ---------------------------------------------------------------- git


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("git"))


def git_out(*argv, cwd):
    import subprocess

    return subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_git_branch_is_really_checked_out(tmp_path, repo):
    dest = tmp_path / "web"
    fetch(repo.url, "feature", dest, options=FAST)
    assert (dest / "VERSION").read_text() == "feature\n"
    assert git_out("rev-parse", "--abbrev-ref", "HEAD", cwd=dest) == "feature"
    fetch(f"git+{repo.url}", "main", dest, options=FAST)
    assert (dest / "VERSION").read_text() == "main\n" and not (dest / "feature.txt").exists()
    assert git_out("rev-parse", "--abbrev-ref", "HEAD", cwd=dest) == "main"


def test_git_tag_and_commit(tmp_path, repo):
    fetch(repo.url, "v1", tmp_path / "tag", options=FAST)
    assert (tmp_path / "tag" / "VERSION").read_text() == "main\n"
    fetch(repo.url, repo.feature_sha, tmp_path / "sha", options=FAST)
    assert git_out("rev-parse", "HEAD", cwd=tmp_path / "sha") == repo.feature_sha
    fetch(repo.url, repo.feature_sha[:10], tmp_path / "short", options=FAST)
    assert (tmp_path / "short" / "feature.txt").is_file()


def test_git_missing_ref_keeps_previous(tmp_path, repo):
    dest = deployed(tmp_path)
    with pytest.raises(SourceError, match="'nope' not found"):
        fetch(repo.url, "nope", dest, options=FAST)
    assert_previous_intact(dest)
    with pytest.raises(SourceError, match="not found"):
        fetch(repo.url, "deadbeefdeadbeef", dest, options=FAST)
    assert_previous_intact(dest)


def test_git_daemon_on_loopback(tmp_path, repo):
    import socket
    import subprocess
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", "--export-all",
         f"--base-path={repo.bare.parent}", str(repo.bare.parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        fetch(f"git://127.0.0.1:{port}/{repo.bare.name}", "feature", tmp_path / "web", options=FAST)
        assert (tmp_path / "web" / "feature.txt").is_file()
    finally:
        daemon.terminate()
        daemon.wait(5)


def test_git_https_token_goes_through_askpass_not_argv(tmp_path, server, caplog):
    """A server that demands credentials gets the token; logs and errors never show it."""
    import base64

    token = "SECRET_git_token_987"
    server.add("/team/app.git/info/refs?service=git-upload-pack", b"auth", status=401,
               headers={"WWW-Authenticate": 'Basic realm="git"'})
    settings = Settings.from_env({"MAESTRO_GIT_TOKEN": token, "MAESTRO_FETCH_RETRIES": "0"})
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as info:
        fetch(server.url("/team/app.git"), "main", tmp_path / "web", settings=settings)
    sent = [h.get("Authorization", "") for _, h in server.requests]
    expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert expected in sent
    assert token not in str(info.value) and token not in caplog.text
    assert not (tmp_path / "web").exists()


def test_local_folder_and_file_url(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.html").write_text("local\n")
    fetch(str(src), "main", tmp_path / "a", options=FAST)
    fetch(f"file://{src}", "main", tmp_path / "b", options=FAST)
    assert (tmp_path / "a/index.html").read_text() == (tmp_path / "b/index.html").read_text() == "local\n"
    with pytest.raises(SourceError, match="not a folder"):
        fetch(str(tmp_path / "missing"), "main", tmp_path / "c", options=FAST)


# ---------------------------------------------------------------- blank ref = the default branch


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    from tests.fixtures.ghstandin import GitHubStandIn, master_repo

    bare = master_repo(tmp_path_factory.mktemp("gh"), {"index.html": "<h1>from master</h1>\n"})
    server = GitHubStandIn({"acme/legacy": bare})
    yield server
    server.close()


def test_blank_ref_github_archive_is_the_default_branch(tmp_path, standin):
    settings = Settings.from_env({"MAESTRO_GITHUB_CODELOAD_URL": standin.base,
                                  "MAESTRO_GITHUB_API_URL": standin.base})
    fetch("https://github.com/acme/legacy", "", tmp_path / "web", settings=settings)
    assert (tmp_path / "web" / "index.html").read_text() == "<h1>from master</h1>\n"
    assert "/acme/legacy/tar.gz/HEAD" in standin.paths


def test_blank_ref_git_clone_is_the_remote_head(tmp_path, standin):
    fetch(f"{standin.base}/acme/legacy.git", "", tmp_path / "web", options=FAST)
    assert (tmp_path / "web" / "index.html").read_text() == "<h1>from master</h1>\n"
    assert git_out("rev-parse", "--abbrev-ref", "HEAD", cwd=tmp_path / "web") == "master"


def test_fetch_errors_name_url_and_ref(tmp_path, standin):
    settings = Settings.from_env({"MAESTRO_GITHUB_CODELOAD_URL": standin.base, "MAESTRO_FETCH_RETRIES": "0"})
    with pytest.raises(SourceError) as info:
        fetch("https://github.com/acme/legacy", "main", tmp_path / "a", settings=settings)
    assert "https://github.com/acme/legacy" in str(info.value) and "'main'" in str(info.value)
    assert "404" in str(info.value)
    with pytest.raises(SourceError, match=r"'main' not found in .*acme/legacy"):
        fetch(f"{standin.base}/acme/legacy.git", "main", tmp_path / "b", options=FAST)
