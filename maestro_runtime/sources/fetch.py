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
import re
import shutil
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from maestro_runtime import safefs
from maestro_runtime.sources import git as gitsource
from maestro_runtime.sources.extract import Caps, ExtractError, archive_suffix, extract_archive
from maestro_runtime.sources.redact import redact

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("maestro.sources")

_GITHUB_RE = re.compile(r"^https?://(?:www\.)?github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class SourceError(Exception):
    pass


# ---------------------------------------------------------------- options


def _number(env: Mapping[str, str], key: str, default, parse=int):
    raw = env.get(key, "").strip()
    try:
        return parse(raw) if raw else default
    except ValueError as exc:
        kind = "an integer" if parse is int else "a number"
        raise SourceError(f"{key} must be {kind}, got {raw[:30]!r}") from exc


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    return _number(env, key, default, int)


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    return _number(env, key, default, float)


@dataclass(frozen=True)
class FetchOptions:
    """Fetch knobs, read from ``settings.environ`` until the lead folds them into settings.py."""

    token: str | None = None  # MAESTRO_GIT_TOKEN: GitHub and any https git server
    github_token: str | None = None  # MAESTRO_GIT_TOKEN or GITHUB_TOKEN: github.com only
    max_bytes: int = 1024**3  # MAESTRO_FETCH_MAX_BYTES: download size cap
    connect_timeout: float = 10.0  # MAESTRO_FETCH_CONNECT_TIMEOUT
    read_timeout: float = 60.0  # MAESTRO_FETCH_READ_TIMEOUT
    retries: int = 3  # MAESTRO_FETCH_RETRIES: extra attempts on transient errors
    backoff: float = 1.0  # MAESTRO_FETCH_BACKOFF: first wait, doubled each retry
    git_timeout: float = 600.0  # MAESTRO_GIT_TIMEOUT
    caps: Caps = field(default_factory=Caps)  # MAESTRO_EXTRACT_MAX_FILES / MAESTRO_EXTRACT_MAX_BYTES
    github_api: str = "https://api.github.com"  # MAESTRO_GITHUB_API_URL (GitHub Enterprise, tests)
    github_codeload: str = "https://codeload.github.com"  # MAESTRO_GITHUB_CODELOAD_URL
    progress_bytes: int = 8 * 1024**2  # a progress line every this many bytes

    @classmethod
    def from_settings(cls, settings) -> FetchOptions:
        env: Mapping[str, str] = getattr(settings, "environ", None) or {}
        token = env.get("MAESTRO_GIT_TOKEN", "").strip() or None
        default = cls()
        return cls(
            token=token,
            github_token=token or env.get("GITHUB_TOKEN", "").strip() or None,
            max_bytes=_int(env, "MAESTRO_FETCH_MAX_BYTES", default.max_bytes),
            connect_timeout=_float(env, "MAESTRO_FETCH_CONNECT_TIMEOUT", default.connect_timeout),
            read_timeout=_float(env, "MAESTRO_FETCH_READ_TIMEOUT", default.read_timeout),
            retries=max(0, _int(env, "MAESTRO_FETCH_RETRIES", default.retries)),
            backoff=_float(env, "MAESTRO_FETCH_BACKOFF", default.backoff),
            git_timeout=_float(env, "MAESTRO_GIT_TIMEOUT", default.git_timeout),
            caps=Caps(
                max_files=_int(env, "MAESTRO_EXTRACT_MAX_FILES", default.caps.max_files),
                max_bytes=_int(env, "MAESTRO_EXTRACT_MAX_BYTES", default.caps.max_bytes),
            ),
            github_api=env.get("MAESTRO_GITHUB_API_URL", default.github_api).rstrip("/"),
            github_codeload=env.get("MAESTRO_GITHUB_CODELOAD_URL", default.github_codeload).rstrip("/"),
        )

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.github_token) if s]


# ---------------------------------------------------------------- classification (pure)


@dataclass(frozen=True)
class Source:
    kind: str  # "local" | "github" | "archive" | "git"
    location: str  # folder path, URL, or "OWNER/REPO" for github
    why: str


def local_path(repo: str) -> Path | None:
    """The folder a local spec points to (path or file:// URL), else None."""
    if repo.startswith("file://"):
        return Path(unquote(urlsplit(repo).path))
    if repo.startswith(("/", "./", "../")):
        return Path(repo)
    return None


# Never a project's source unless the operator says so: copying them would hand root-only files
# (keys, shadow, other services' state) to the service's user.
SYSTEM_PATHS = ("/etc", "/root", "/proc", "/sys", "/dev", "/run", "/boot", "/var/lib/maestro")


def system_path_problem(repo: str, protected: Sequence[Path | str] = (),
                        roots: Sequence[Path | str] = ()) -> str | None:
    """Why a local ``repo`` must not be copied without the operator's say-so, or None.

    ``protected``: folders besides :data:`SYSTEM_PATHS` (the runtime's state, homes...);
    ``roots``: when given, the only folders local sources may come from. Links are resolved
    first, so a link to /etc is /etc."""
    path = local_path(repo)
    if path is None:
        return None
    real = os.path.realpath(path)

    def under(folder: Path | str) -> bool:
        top = os.path.realpath(folder)
        return real == top or real.startswith(top.rstrip("/") + "/")

    if real == "/":
        return f"{repo} is the root folder"
    for folder in (*SYSTEM_PATHS, *protected):
        if under(folder):
            return f"{repo} is a system path (under {folder})"
    if roots and not any(under(root) for root in roots):
        return f"{repo} is not under MAESTRO_LOCAL_SOURCE_ROOTS ({' '.join(str(r) for r in roots)})"
    return None


def is_bare_git(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def classify(repo: str, *, bare_git: Callable[[Path], bool] = is_bare_git) -> Source:
    """What kind of source ``repo`` is and how it will be fetched (``why`` goes to the log)."""
    path = local_path(repo)
    if path is not None:
        if path.name.endswith(".git") or bare_git(path):
            return Source("git", str(path), "local git repository: cloned at the ref")
        return Source("local", str(path), "local folder: copied as it is")
    match = _GITHUB_RE.match(repo)
    if match:
        owner, name = match.groups()
        return Source("github", f"{owner}/{name}", "GitHub: archive of the ref (one request, no history)")
    parts = urlsplit(repo)
    if parts.scheme in ("http", "https") and archive_suffix(parts.path):
        return Source("archive", repo, "archive URL: downloaded and extracted")
    if gitsource.is_git_url(repo):
        return Source("git", repo, "git URL: shallow clone of the ref")
    raise SourceError(
        f"unsupported source {redact(repo)!r}: expected a folder, file://, a GitHub URL, "
        "an http(s) archive (.tar.gz, .tgz, .tar, .tar.bz2, .tar.xz, .zip) or a git URL"
    )


def describe_ref(ref: str) -> str:
    """How a ref reads in messages: a blank one is the repository's default branch."""
    return f"ref {ref!r}" if ref else "the default branch"


def github_archive(owner_repo: str, ref: str, opts: FetchOptions) -> tuple[str, dict[str, str]]:
    """URL and headers of a GitHub tarball: the API (with the token) for private repositories.
    A blank ref asks for HEAD, which GitHub answers with the default branch."""
    ref_q = quote(ref or "HEAD", safe="")
    if opts.github_token and gitsource.in_clear(opts.github_api):
        raise SourceError(f"refusing to send the GitHub token to {redact(opts.github_api)} over plain http:// "
                          "(MAESTRO_GITHUB_API_URL): use https://")
    if opts.github_token:
        # The API answers with a redirect to a short-lived codeload URL; httpx drops
        # the Authorization header on the cross-origin redirect.
        return (
            f"{opts.github_api}/repos/{owner_repo}/tarball/{ref_q}",
            {"Authorization": f"Bearer {opts.github_token}", "Accept": "application/vnd.github+json"},
        )
    return f"{opts.github_codeload}/{owner_repo}/tar.gz/{ref_q}", {}


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
    if urlsplit(url).username is not None and gitsource.in_clear(url):
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
    return gitsource.scrub(redact(text), opts.secrets)


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
        host = urlsplit(gitsource.clone_url(repo)).hostname or ""
        token = opts.token or (opts.github_token if host.endswith("github.com") else None)
        if sha256:
            log.warning("%s: sha256 applies to archive downloads only; ignored for git", shown)
        try:
            how = gitsource.clone(
                source.location, ref, staging, token=token, timeout=opts.git_timeout,
                log=log.info, display=shown,
            )
        except gitsource.GitError as exc:
            raise SourceError(_scrub(str(exc), opts)) from exc
        log.info("checked out %s at %s (%s)", shown, describe_ref(ref), how)
        return
    if source.kind == "github":
        url, headers = github_archive(source.location, ref, opts)
        name = "archive.tar.gz"
        shown = f"{shown} at {describe_ref(ref)}"  # a 404 is most often a wrong ref: name it
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
