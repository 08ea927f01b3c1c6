"""Fetching a project's source into its folder.

Kinds of ``repo`` (:func:`classify` is pure):

* a local folder or ``file://`` URL: copied (a bare git repository, or a path
  ending in ``.git``, is cloned at ``ref`` instead);
* ``https://github.com/OWNER/REPO(.git)``: the archive of ``ref`` is downloaded
  (one HTTP request, no git binary, no history: the fastest way to get a
  branch, tag or commit). Use ``git+https://github.com/...`` to get a real git
  checkout instead (e.g. for an agent that commits on the branch);
* any other ``http(s)://`` URL ending in an archive suffix: downloaded and
  extracted safely (:mod:`extract`), ``sha256`` checked when the spec has one;
* any git URL (``git+``, ``ssh://``, ``git://``, ``git@host:path``,
  ``https://...git``): shallow clone at ``ref`` (:mod:`gitsource`).

A new version is staged beside the project folder and swapped in only when it
is complete, so a failed fetch leaves the previous version intact. Folders the
service writes at run time (``keep``, default ``data/``) are carried over.

Private sources: ``MAESTRO_GIT_TOKEN`` is used for GitHub and for any https
git server that asks for credentials; ``GITHUB_TOKEN`` only for github.com.
The token is sent in headers or through git's askpass, never in a URL, and
never appears in logs, errors or :func:`redact` output.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from maestro_runtime import safefs
from maestro_runtime.sources import git
from maestro_runtime.sources.classify import (
    FetchOptions,
    Source,
    SourceError,
    classify,
    describe_ref,
    github_archive,
    is_bare_git,
    local_path,
    system_path_problem,
)
from maestro_runtime.sources.extract import ExtractError, extract_archive
from maestro_runtime.sources.redact import redact

__all__ = [  # fetch's surface: acting here, deciding in .classify
    "FetchOptions", "Source", "SourceError", "classify", "fetch", "finish", "github_archive", "is_bare_git",
    "local_path", "redact", "roll_back", "stage", "swap_in", "system_path_problem",
]

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("maestro.sources")

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


# ---------------------------------------------------------------- download (shell)


class _Transient(Exception):
    pass


def download(
    url: str,
    out: Path,
    opts: FetchOptions,
    *,
    headers: Mapping[str, str] | None = None,
    sha256: str | None = None,
    shown: str | None = None,
) -> str:
    """Stream ``url`` into ``out`` with timeouts, retries and a size cap; return its sha256."""
    import httpx  # imported here: most boots fetch nothing, and it costs ~60 ms to import

    shown = shown or redact(url)
    if urlsplit(url).username is not None and git.in_clear(url):
        raise SourceError(f"refusing to send the credentials of {shown} over plain http://: use https://")
    timeout = httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout)
    last = ""
    for attempt in range(opts.retries + 1):
        if attempt:
            wait = opts.backoff * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retry %d/%d in %.1fs", shown, last, attempt, opts.retries,
                        wait)
            time.sleep(wait)
        try:
            return _download_once(url, out, opts, timeout, dict(headers or {}), sha256, shown)
        except _Transient as exc:
            last = str(exc)
        except httpx.RemoteProtocolError as exc:
            last = _scrub(f"truncated download (connection closed early: {exc})", opts)
        except httpx.TransportError as exc:
            last = _scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, opts)
    raise SourceError(f"download of {shown} failed after {opts.retries + 1} attempts: {last}")


def _scrub(text: str, opts: FetchOptions) -> str:
    return git.scrub(redact(text), opts.secrets)


def _download_once(
    url: str, out: Path, opts: FetchOptions, timeout: httpx.Timeout, headers: dict[str, str],
    sha256: str | None, shown: str,
) -> str:
    import httpx

    headers.setdefault("User-Agent", "maestro-runtime")
    digest = hashlib.sha256()
    got = 0
    with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True) as client, client.stream(
        "GET", url, headers=headers
    ) as response:
        if response.status_code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise SourceError(f"download of {shown} failed: HTTP {response.status_code}")
        length = int(response.headers.get("content-length") or 0) or None
        if length is not None and length > opts.max_bytes:
            raise SourceError(f"{shown} is {length} bytes, over MAESTRO_FETCH_MAX_BYTES={opts.max_bytes}")
        next_report = opts.progress_bytes
        with open(out, "wb") as fh:
            for chunk in response.iter_bytes(256 * 1024):
                got += len(chunk)
                if got > opts.max_bytes:
                    raise SourceError(f"{shown} is over MAESTRO_FETCH_MAX_BYTES={opts.max_bytes}")
                digest.update(chunk)
                fh.write(chunk)
                if got >= next_report:
                    total = f" of {length // 1024**2} MiB" if length else ""
                    log.info("downloading %s: %d MiB%s", shown, got // 1024**2, total)
                    next_report += opts.progress_bytes
        if length is not None and got != length:
            raise _Transient(f"truncated download ({got} of {length} bytes)")
    actual = digest.hexdigest()
    if sha256 and actual != sha256.lower():
        raise SourceError(f"sha256 mismatch for {shown}: expected {sha256.lower()}, got {actual}")
    if got >= opts.progress_bytes:
        log.info("downloaded %s: %d bytes, sha256 %s", shown, got, actual)
    return actual


# ---------------------------------------------------------------- staging and swap


def _copy_local(src: Path, staging: Path) -> None:
    if not src.is_dir():
        raise SourceError(f"local source {src} is not a folder")
    shutil.copytree(src, staging, symlinks=True)


def _carry_over(previous: Path, staging: Path, keep: Sequence[str]) -> None:
    """Move each kept folder from the previous version into the new one, by descriptor: both
    trees may hold links (the service wrote one, a repository shipped the other), and a link
    on the way must never move, or delete, anything outside them."""
    for rel in keep:
        *parents, name = Path(rel).parts
        try:
            with safefs.opened_dir(previous.joinpath(*parents), under=previous.parent) as src:
                st = safefs.owner_at(src, name)
                if st is None or stat.S_ISLNK(st.st_mode):
                    continue
                dst = _folders(staging, parents)
                try:
                    safefs.remove_at(dst, name)
                    os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
                finally:
                    os.close(dst)
        except FileNotFoundError:
            continue
        except safefs.UnsafeFile as exc:
            raise SourceError(f"keep {rel}: {exc}") from None


def _folders(top: Path, parts: Sequence[str]) -> int:
    """A descriptor of top/parts, made when missing, never through a link."""
    with safefs.opened_dir(top, under=top.parent) as root:
        fd = os.dup(root)
    for index, part in enumerate(parts):
        try:
            child = safefs.ensure_dir(fd, part, top.joinpath(*parts[: index + 1]))
        finally:
            os.close(fd)
        fd = child
    return fd


def _materialise(source: Source, repo: str, ref: str, staging: Path, download_to: Path, opts: FetchOptions,
                 sha256: str | None) -> None:
    shown = redact(repo)
    log.info("fetching %s (%s)", shown, source.why)
    if source.kind == "local":
        _copy_local(Path(source.location), staging)
        return
    if source.kind == "git":
        host = urlsplit(git.clone_url(repo)).hostname or ""
        token = opts.token or (opts.github_token if host.endswith("github.com") else None)
        if sha256:
            log.warning("%s: sha256 applies to archive downloads only; ignored for git", shown)
        try:
            how = git.clone(
                source.location, ref, staging, token=token, timeout=opts.git_timeout,
                log=log.info, display=shown, base_env=opts.git_base_env, max_bytes=opts.max_bytes, caps=opts.caps,
            )
        except git.GitError as exc:
            raise SourceError(_scrub(str(exc), opts)) from exc
        log.info("checked out %s at %s (%s)", shown, describe_ref(ref), how)
        return
    if source.kind == "github":
        url, headers = github_archive(source.location, ref, opts)
        shown = f"{shown} at {describe_ref(ref)}"  # a 404 is most often a wrong ref: name it
        name = "archive.tar.gz"
    else:
        url, headers, name = repo, {}, urlsplit(repo).path
    download(url, download_to, opts, headers=headers, sha256=sha256, shown=shown)
    try:
        extract_archive(download_to, staging, caps=opts.caps, name=name)
    except ExtractError as exc:
        raise SourceError(f"{shown}: {exc}") from exc


def stage(
    repo: str,
    ref: str,
    dest: Path,
    *,
    settings=None,
    sha256: str | None = None,
    options: FetchOptions | None = None,
) -> Path:
    """Materialise ``repo`` at ``ref`` into a staging folder beside ``dest`` and return it.
    Nothing at ``dest`` changes; on any failure the staging folder is gone."""
    opts = options or FetchOptions.from_settings(settings)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.staging")
    old = dest.with_name(f".{dest.name}.old")
    download_to = dest.with_name(f".{dest.name}.download")
    if old.exists() and not dest.exists():
        os.replace(old, dest)  # a crash between the two renames of a swap: the old version comes back
    for leftover in (staging, old):  # from a crash mid-fetch
        if leftover.exists():
            shutil.rmtree(leftover)
    download_to.unlink(missing_ok=True)
    source = classify(repo)
    try:
        _materialise(source, repo, ref, staging, download_to, opts, sha256)
        if not staging.is_dir() or not any(staging.iterdir()):
            # an empty project would start as an empty static site: refuse it instead
            raise SourceError(f"{redact(repo)} has no files")
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SourceError(_scrub(f"fetching {redact(repo)} failed: {exc}", opts)) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        download_to.unlink(missing_ok=True)
    return staging


def swap_in(staging: Path, dest: Path, keep: Sequence[str]) -> Path | None:
    """Put the staged version at ``dest``, carrying ``keep`` folders over. The previous
    version is kept beside it (returned) until :func:`finish` or :func:`roll_back`."""
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        _carry_over(dest, staging, keep)
        os.replace(dest, old)
    os.replace(staging, dest)
    return old if old.exists() else None


def finish(old: Path | None) -> None:
    if old is not None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(old)


def roll_back(dest: Path, old: Path | None, keep: Sequence[str]) -> None:
    """Undo :func:`swap_in` (a build failed): the previous version, and its data, come back."""
    if old is not None:
        _carry_over(dest, old, keep)
    if dest.exists():
        shutil.rmtree(dest)
    if old is not None:
        os.replace(old, dest)


def fetch(
    repo: str,
    ref: str,
    dest: Path,
    *,
    keep: Sequence[str] = ("data",),
    settings=None,
    sha256: str | None = None,
    options: FetchOptions | None = None,
) -> None:
    """Materialise ``repo`` at ``ref`` into ``dest``; all or nothing."""
    staging = stage(repo, ref, dest, settings=settings, sha256=sha256, options=options)
    finish(swap_in(staging, dest, keep))
