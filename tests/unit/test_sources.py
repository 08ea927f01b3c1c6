"""Pure parts of sources: classification, redaction, options."""

from __future__ import annotations

import pytest

from maestro_runtime.settings import Settings, SettingsError
from maestro_runtime.sources import git as gitsource
from maestro_runtime.sources.fetch import FetchOptions, SourceError, classify, github_archive, redact


@pytest.mark.parametrize(
    "repo, kind, location",
    [
        ("https://github.com/acme/app", "github", "acme/app"),
        ("https://github.com/acme/app.git", "github", "acme/app"),
        ("https://github.com/acme/my.app/", "github", "acme/my.app"),
        ("git+https://github.com/acme/app.git", "git", "git+https://github.com/acme/app.git"),
        ("https://example.com/dl/app-1.0.tar.gz", "archive", "https://example.com/dl/app-1.0.tar.gz"),
        ("http://example.com/app.zip?x=1", "archive", "http://example.com/app.zip?x=1"),
        ("https://example.com/app.tar.xz", "archive", "https://example.com/app.tar.xz"),
        ("https://git.example.com/team/app.git", "git", "https://git.example.com/team/app.git"),
        ("ssh://git@example.com/team/app.git", "git", "ssh://git@example.com/team/app.git"),
        ("git@example.com:team/app.git", "git", "git@example.com:team/app.git"),
        ("git://127.0.0.1/app", "git", "git://127.0.0.1/app"),
        ("/srv/app", "local", "/srv/app"),
        ("file:///srv/app", "local", "/srv/app"),
        ("file:///srv/app.git", "git", "/srv/app.git"),
    ],
)
def test_classify(repo, kind, location):
    source = classify(repo, bare_git=lambda _p: False)
    assert (source.kind, source.location) == (kind, location)
    assert source.why


def test_classify_bare_repo_folder_is_git():
    assert classify("/srv/app", bare_git=lambda _p: True).kind == "git"


@pytest.mark.parametrize("repo", ["https://example.com/page", "ftp://x/y.tar.gz", "app"])
def test_unsupported(repo):
    with pytest.raises(SourceError, match="unsupported"):
        classify(repo, bare_git=lambda _p: False)


def test_unsupported_error_hides_credentials():
    with pytest.raises(SourceError) as info:
        classify("https://user:s3cret@example.com/page")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "raw, secret",
    [
        ("https://user:tok123@github.com/a/b.git", "tok123"),
        ("https://tok123@example.com/a.tar.gz", "tok123"),
        ("https://example.com/a.tar.gz?token=tok123&x=1", "tok123"),
        ("https://s3.example.com/a.zip?X-Amz-Signature=tok123", "tok123"),
        # A password with an unencoded "@": URL parsers (urllib, httpx, git) take the last "@"
        # as the end of the userinfo, so the whole of "tok@123" is sent, and must be hidden.
        ("https://user:tok@123@example.com/a.tar.gz", "123"),
        ("fetching https://user:tok@123@example.com/a.git failed: see https://example.com/help", "123"),
    ],
)
def test_redact(raw, secret):
    assert secret not in redact(raw)


def test_redact_keeps_what_is_not_a_secret():
    assert redact("https://user:tok@123@example.com/a.tar.gz") == "https://***@example.com/a.tar.gz"
    text = "from https://a:b@h.example/x to https://h2.example/y?q=1 and mail me@example.com"
    assert redact(text) == "from https://***@h.example/x to https://h2.example/y?q=1 and mail me@example.com"


def test_fetch_options_from_settings():
    env = {"MAESTRO_FETCH_MAX_BYTES": "1000", "GITHUB_TOKEN": "gh", "MAESTRO_EXTRACT_MAX_FILES": "7"}
    opts = FetchOptions.from_settings(Settings.from_env(env))
    assert opts.max_bytes == 1000 and opts.caps.max_files == 7
    assert opts.token is None and opts.github_token == "gh"
    both = FetchOptions.from_settings(Settings.from_env({"MAESTRO_GIT_TOKEN": "m", "GITHUB_TOKEN": "g"}))
    assert both.token == "m" and both.github_token == "m"
    with pytest.raises(SettingsError, match="MAESTRO_FETCH_MAX_BYTES"):
        FetchOptions.from_settings(Settings.from_env({"MAESTRO_FETCH_MAX_BYTES": "lots"}))
    assert FetchOptions.from_settings(None) == FetchOptions()


def test_github_archive_urls():
    url, headers = github_archive("a/b", "feature/x", FetchOptions())
    assert url == "https://codeload.github.com/a/b/tar.gz/feature%2Fx" and headers == {}
    url, headers = github_archive("a/b", "v1", FetchOptions(github_token="tok"))
    assert url == "https://api.github.com/repos/a/b/tarball/v1"
    assert headers["Authorization"] == "Bearer tok" and "tok" not in url


def test_git_split_credentials_moves_secret_out_of_url():
    url, creds = gitsource.split_credentials("https://bob:pa%40ss@git.example.com:8443/x.git")
    assert url == "https://git.example.com:8443/x.git"
    assert creds == gitsource.Credentials("bob", "pa@ss")
    assert gitsource.split_credentials("ssh://git@h/x.git") == ("ssh://git@h/x.git", None)


def test_git_env_never_prompts():
    env = gitsource.git_env({"PATH": "/bin"}, gitsource.Credentials("u", "t"), None)
    assert (env["GIT_TERMINAL_PROMPT"] == "0" and "t" not in env.values()) or env["GIT_ASKPASS"] == "/bin/false"
    assert gitsource.looks_like_commit("abcdef1") and not gitsource.looks_like_commit("main")
