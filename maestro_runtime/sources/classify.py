"""Where a project's source is and how to get it (pure): the fetch options and :func:`classify`.

See :mod:`.fetch` for the kinds of ``repo``; this module only decides, :mod:`.fetch` acts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from maestro_runtime.settings import FetchSettings
from maestro_runtime.sources import git
from maestro_runtime.sources.extract import archive_suffix
from maestro_runtime.sources.redact import redact

_GITHUB_RE = re.compile(r"^https?://(?:www\.)?github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


class SourceError(Exception):
    pass


# ---------------------------------------------------------------- options


FetchOptions = FetchSettings  # the fetch knobs, read once by settings.py


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
    if git.is_git_url(repo):
        return Source("git", repo, "git URL: shallow clone of the ref")
    raise SourceError(
        f"unsupported source {redact(repo)!r}: expected a folder, file://, a GitHub URL, "
        "an http(s) archive (.tar.gz, .tgz, .tar, .tar.bz2, .tar.xz, .zip) or a git URL"
    )


def describe_ref(ref: str) -> str:
    """How a ref reads in messages: a blank one is the repository's default branch."""
    return f"ref {ref!r}" if ref else "the default branch"


def github_archive(owner_repo: str, ref: str, opts: FetchOptions) -> tuple[str, dict[str, str]]:
    """URL and headers of a GitHub tarball: the API (with the token) for private repositories."""
    ref_q = quote(ref or "HEAD", safe="")  # a blank ref: HEAD, which GitHub answers with the default branch
    if opts.github_token and git.in_clear(opts.github_api):
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
