"""Secrets: one redaction wherever a URL is shown, no credential over plain http://, 0600 files."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.httpserver import FixtureServer

from maestro_runtime import log_format as logsetup
from maestro_runtime.ops import inventory, reconcile
from maestro_runtime.settings import Settings
from maestro_runtime.sources import builds
from maestro_runtime.sources import git as gitsource
from maestro_runtime.sources.fetch import FetchOptions, SourceError, fetch, github_archive, redact
from maestro_runtime.state.records import ServiceRecord

SECRET = "S3CR3Tvalue"
SECRET_URLS = [
    f"https://user:{SECRET}@git.example.com/a/b.git",
    f"https://{SECRET}@example.com/a.tar.gz",
    f"https://store.example.com/a.tar.gz?X-Amz-Signature={SECRET}&X-Amz-Date=1",
    f"https://storage.example.com/a.zip?X-Goog-Signature={SECRET}",
    f"https://storage.example.com/a.zip?x-goog-credential={SECRET}",
    f"https://x.example.com/a.zip?a=1&Password={SECRET}",
    f"https://x.example.com/a.zip?api_key={SECRET}",
    f"https://x.example.com/a.zip?KEY={SECRET}",
    f"https://x.example.com/a.zip?client_secret={SECRET}&b=2",
    f"https://x.example.com/a.zip?auth={SECRET}",
    f"https://x.example.com/a.zip?access_token={SECRET}",
    f"https://x.example.com/a.zip?sig={SECRET}&sv=2020",
    f"https://x.example.com/a.zip#token={SECRET}",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_redact_every_secret_looking_part(url):
    shown = redact(url)
    assert SECRET not in shown and "***" in shown
    assert shown.split("://")[0] in ("https",)  # the URL stays readable
    # inside a longer text and inside JSON, the text around the URL is left alone
    text = f"fetching {url} failed: HTTP 404"
    assert redact(text).endswith(" failed: HTTP 404") and SECRET not in redact(text)
    doc = json.dumps({"source": url, "ref": "main"})
    assert json.loads(redact(doc))["ref"] == "main" and SECRET not in redact(doc)


def test_redact_keeps_harmless_urls():
    for url in ("https://github.com/o/r", "https://x.example.com/a.tar.gz?v=2&page=3", "git@github.com:o/r.git"):
        assert redact(url) == url


def _record(**kw) -> ServiceRecord:
    base = dict(id="web", name="web", kind="deploy", origin="deploy web", directory="/p", user="svc_web",
                port=8000)
    return ServiceRecord(**{**base, **kw})


def test_list_services_never_shows_a_credential():
    # A record written by an older version held the raw URL: list-services still redacts it.
    record = _record(source=SECRET_URLS[2], state="failed", error=f"download of {SECRET_URLS[5]} failed: HTTP 403")
    row = inventory.view(record, None, 0.0, False).as_json()
    assert SECRET not in json.dumps(row)
    assert SECRET not in inventory.format_table([inventory.view(record, None, 0.0, False)])


def test_logs_never_show_a_credential(capsys):
    logger = logging.getLogger("maestro")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    try:
        logsetup.setup_logging("info")
        logger.warning("download of %s failed", SECRET_URLS[3])
        logging.getLogger("maestro.sources").info("fetching %s", SECRET_URLS[0])
    finally:  # later tests read these loggers through caplog (propagation to the root logger)
        logger.handlers[:], logger.propagate, logger.level = saved
    err = capsys.readouterr().err
    assert SECRET not in err and err.count("***") == 2


def test_boot_report_is_redacted_and_private(tmp_path):
    report = reconcile.Report(failed={"web": f"deploy web: download of {SECRET_URLS[5]} failed"})
    path = tmp_path / "boot.json"
    reconcile.write_report(path, report)
    assert SECRET not in path.read_text() and json.loads(path.read_text())["failed"]["web"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_build_logs_are_private(tmp_path):
    opts = builds.BuildOptions(log_dir=tmp_path / "builds")
    (tmp_path / "builds").mkdir(mode=0o755)
    (tmp_path / "builds" / "web.build.log").write_text("old\n")
    (tmp_path / "builds" / "web.build.log").chmod(0o644)
    path = builds._log_path(opts, "web", SimpleNamespace(home=tmp_path / "home"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# ---------------------------------------------------------------- no credential in clear


@pytest.mark.parametrize(("url", "clear"), [
    ("http://git.example.com/a.git", True),
    ("http://10.0.0.5:8080/a.git", True),
    ("https://git.example.com/a.git", False),
    ("http://127.0.0.1:9000/a.git", False),
    ("http://localhost/a.git", False),
    ("http://[::1]:80/a.git", False),
    ("ssh://git@example.com/a.git", False),
])
def test_in_clear(url, clear):
    assert gitsource.in_clear(url) is clear


def test_credentials_in_an_http_git_url_are_refused_before_any_connection(tmp_path):
    with pytest.raises(SourceError) as info:
        fetch(f"http://user:{SECRET}@git.example.invalid/a.git", "main", tmp_path / "web",
              options=FetchOptions(retries=0))
    message = str(info.value)
    assert "plain http://" in message and "https://" in message and SECRET not in message
    assert "\n" not in message


def test_credentials_in_an_http_archive_url_are_refused(tmp_path):
    with pytest.raises(SourceError, match="plain http://") as info:
        fetch(f"http://user:{SECRET}@files.example.invalid/a.tar.gz", "main", tmp_path / "web",
              options=FetchOptions(retries=0))
    assert SECRET not in str(info.value)


def test_github_token_is_never_sent_to_a_plain_http_api():
    with pytest.raises(SourceError, match="plain http://"):
        github_archive("o/r", "main", FetchOptions(github_token=SECRET, github_api="http://ghe.example.invalid/api"))
    _url, headers = github_archive("o/r", "main", FetchOptions(github_token=SECRET, github_api="https://ghe.x/api"))
    assert headers["Authorization"].endswith(SECRET)


@pytest.mark.skipif(not os.environ.get("MAESTRO_TEST_ISOLATED"), reason="needs the throwaway /etc")
def test_git_token_is_withheld_from_a_plain_http_server(tmp_path):
    """A real git clone from a server on another (here: a name for loopback) over http:// that asks
    for credentials: the token is never sent, and the error says why."""
    hosts = Path("/etc/hosts")
    saved = hosts.read_text()
    hosts.write_text(saved + "\n127.0.0.1 git.maestro-clear.test\n")
    try:
        with FixtureServer() as server:
            server.add("/team/app.git/info/refs?service=git-upload-pack", b"auth", status=401,
                       headers={"WWW-Authenticate": 'Basic realm="git"'})
            port = server.httpd.server_address[1]
            settings = Settings.from_env({"MAESTRO_GIT_TOKEN": SECRET, "MAESTRO_FETCH_RETRIES": "0"})
            with pytest.raises(SourceError) as info:
                fetch(f"http://git.maestro-clear.test:{port}/team/app.git", "main", tmp_path / "web",
                      settings=settings)
            assert server.requests, "git never reached the server"
            assert not any(h.get("Authorization") for _, h in server.requests)
            assert "never sent over plain http://" in str(info.value)
    finally:
        hosts.write_text(saved)
