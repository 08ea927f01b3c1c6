"""Shallow git checkouts through the ``git`` CLI, with the token kept off every command line.

Credentials never go into the URL git sees (it would show in ``ps``, in git's
own error messages and in ``.git/config``). Instead git gets a tiny
``GIT_ASKPASS`` helper that reads the token from its environment, so the token
is only sent to a server that asks for it (HTTP 401), and is never written to
disk or argv. Every output we pass on is scrubbed of the token anyway.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from maestro_runtime.settings import inherited_environ
from maestro_runtime.sources.extract import Caps
from maestro_runtime.sources.gittree import TreeRefused, check_tree, parse_link_batch, parse_ls_tree

_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")
_SCP_RE = re.compile(r"^[\w.-]+@[\w.-]+:(?!//)")
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "${MAESTRO_ASKPASS_USER:-x-access-token}" ;;
  *) printf '%s\\n' "$MAESTRO_ASKPASS_TOKEN" ;;
esac
"""


class GitError(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def is_git_url(repo: str) -> bool:
    """git+*, ssh://, git://, scp-like ``git@host:path`` and http(s) URLs ending in ``.git``."""
    if repo.startswith(("git+", "ssh://", "git://")) or _SCP_RE.match(repo):
        return True
    parts = urlsplit(repo)
    return parts.scheme in ("http", "https") and parts.path.rstrip("/").endswith(".git")


def clone_url(repo: str) -> str:
    return repo[4:] if repo.startswith("git+") else repo


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """Move ``user:secret@`` out of an http(s) URL so it never reaches argv."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, Credentials(unquote(parts.username or "x-access-token"), unquote(parts.password))


def in_clear(url: str) -> bool:
    """True for plain http:// to another machine, where a credential would cross the network
    readable by anyone on the path. Loopback never leaves the machine (and stands in for
    servers in tests)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def looks_like_commit(ref: str) -> bool:
    return bool(_SHA_RE.match(ref))


def git_env(base: dict[str, str], credentials: Credentials | None, askpass: Path | None) -> dict[str, str]:
    """The environment git runs in: never prompts, never reads the user's config."""
    env = {
        **base,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",  # a root user's ~/.gitconfig must not change what we fetch
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "LC_ALL": "C",
    }
    if askpass is not None and credentials is not None:
        env.update(
            GIT_ASKPASS=str(askpass),
            MAESTRO_ASKPASS_USER=credentials.username,
            MAESTRO_ASKPASS_TOKEN=credentials.password,
        )
    else:
        env["GIT_ASKPASS"] = "/bin/false"
    return env


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def clone(
    repo: str,
    ref: str,
    dest: Path,
    *,
    token: str | None = None,
    timeout: float = 600,
    log: Callable[[str], None] = lambda _m: None,
    display: str | None = None,
    base_env: Iterable[tuple[str, str]] | None = None,
    max_bytes: int | None = None,
    caps: Caps | None = None,
) -> str:
    """Check ``repo`` out at ``ref`` into the new folder ``dest``; return how (branch/tag or commit).

    Branches and tags: ``git clone --depth 1 --branch REF`` (a branch is really
    checked out, with its upstream, so agents can commit on it). Commits: a
    depth-1 fetch of the commit (full clone as a fallback for short hashes
    or servers that refuse fetching by id), then a detached checkout.

    The same limits as an archive: what arrives (the pack) is cut off at ``max_bytes``
    (MAESTRO_FETCH_MAX_BYTES), and the commit's tree is checked against ``caps`` and for
    links out of the project before ``git checkout`` writes anything.
    """
    url, creds = split_credentials(clone_url(repo))
    shown = display or url
    clear = in_clear(url)
    if creds is not None and clear:
        raise GitError(f"refusing to send the credentials of {shown} over plain http://: use https://")
    if creds is None and token and not clear and urlsplit(url).scheme in ("http", "https"):
        creds = Credentials("x-access-token", token)

    with tempfile.TemporaryDirectory(prefix="maestro-git-") as tmp:
        askpass = None
        if creds is not None:
            askpass = Path(tmp) / "askpass"
            askpass.write_text(_ASKPASS)
            askpass.chmod(0o700)
        # Keep HOME (ssh keys, known_hosts) and proxies; drop any GIT_* steering from outside.
        base = (inherited_environ(drop_prefix="GIT_") if base_env is None
                else {k: v for k, v in base_env if not k.startswith("GIT_")})
        git = _Git(
            url=url, ref=ref, dest=dest, shown=shown, env=git_env(base, creds, askpass), timeout=timeout,
            secrets=tuple(s for s in (token, creds.password if creds else None) if s),
            withheld=bool(token) and clear,  # never offered in clear; said so if the server asks for it
            max_bytes=max_bytes, caps=caps or Caps(),
        )
        if not ref:  # blank: whatever the remote's HEAD names (its default branch)
            log(f"git: shallow clone of {shown} at its default branch")
            git.shallow_clone([])
            return "default branch"
        log(f"git: shallow clone of {shown} at {ref}")
        if git.shallow_clone(["--branch", ref]):
            return "branch or tag"
        if git.commit_fetch():
            return "commit"
        log(f"git: {shown} refused a shallow fetch of {ref}; cloning the full history")
        git.full_clone()
        return "commit"


@dataclass(frozen=True)
class _Git:
    """One checkout's git commands: their environment, limits and error messages."""

    url: str
    ref: str
    dest: Path
    shown: str
    env: dict[str, str]
    timeout: float
    secrets: tuple[str, ...]
    withheld: bool
    max_bytes: int | None
    caps: Caps

    def run(self, argv: list[str], *, cwd: Path | None = None,
            transfer: bool = False) -> subprocess.CompletedProcess[str]:
        """``git argv``; ``transfer`` (clone, fetch): capped at ``max_bytes``, and one pack, never loose objects."""
        command = ["git", *argv]
        if transfer:
            command = [*transfer_cap(self.max_bytes), "git", "-c", "transfer.unpackLimit=1", *argv]
        try:
            proc = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {argv[0]} of {self.shown} timed out after {self.timeout:.0f}s") from exc
        if transfer and proc.returncode != 0 and "File too large" in proc.stderr:
            raise GitError(f"{self.shown} at {describe(self.ref)}: the git pack is over "
                           f"MAESTRO_FETCH_MAX_BYTES={self.max_bytes}")
        return proc

    def fail(self, what: str, proc: subprocess.CompletedProcess[str]) -> GitError:
        lines = scrub((proc.stderr or proc.stdout).strip(), list(self.secrets)).splitlines()
        detail = "; ".join(line for line in lines[-3:] if line.strip()) or f"exit {proc.returncode}"
        if self.withheld:
            detail += " (the git token is never sent over plain http://: use https://)"
        return GitError(f"{what}: {detail}")

    def shallow_clone(self, branch: list[str]) -> bool:
        """Depth 1 at the remote's HEAD or ``--branch REF``; False when REF may be a commit id."""
        proc = self.run(["clone", "--quiet", "--no-checkout", "--depth", "1", *branch, "--single-branch", "--",
                         self.url, str(self.dest)], transfer=True)
        if proc.returncode == 0:
            self.check_out("HEAD", ["checkout", "--quiet"])
            return True
        missing = "not found in upstream" in proc.stderr or "Could not find remote branch" in proc.stderr
        if missing and looks_like_commit(self.ref):
            return False
        if missing:
            raise GitError(f"git ref {self.ref!r} not found in {self.shown}")
        raise self.fail(f"git clone of {self.shown} at {describe(self.ref)} failed", proc)

    def commit_fetch(self) -> bool:
        """Just the commit, depth 1; False when the server refuses (a short id, or no fetch by id)."""
        _remove(self.dest)
        self.dest.mkdir(parents=True)
        for step, transfer in ((["init", "--quiet"], False), (["remote", "add", "origin", self.url], False),
                               (["fetch", "--quiet", "--depth", "1", "origin", self.ref], True)):
            if self.run(step, cwd=self.dest, transfer=transfer).returncode != 0:
                _remove(self.dest)
                return False
        self.check_out("FETCH_HEAD", ["checkout", "--quiet", "--detach", "FETCH_HEAD"])
        return True

    def full_clone(self) -> None:
        proc = self.run(["clone", "--quiet", "--no-checkout", "--", self.url, str(self.dest)], transfer=True)
        if proc.returncode != 0:
            raise self.fail(f"git clone of {self.shown} at ref {self.ref!r} failed", proc)
        self.check_out(self.ref, ["checkout", "--quiet", "--detach", self.ref])

    def check_out(self, treeish: str, argv: list[str]) -> None:
        """Judge the tree (caps, links) first; only then let git write it."""
        try:
            judge_tree(["-C", str(self.dest)], treeish, self.env, self.timeout, self.caps)
        except LookupError:
            raise GitError(f"git ref {self.ref!r} not found in {self.shown}") from None
        except TreeRefused as exc:
            raise GitError(f"{self.shown} at {describe(self.ref)}: {exc}") from None
        proc = self.run(argv, cwd=self.dest)
        if proc.returncode != 0:
            raise self.fail(f"git checkout of {self.shown} at {describe(self.ref)} failed", proc)


def judge_tree(git_args: list[str], treeish: str, env: dict[str, str], timeout: float, caps: Caps) -> None:
    """What checking ``treeish`` out would write, against ``caps`` and the rule for links
    (:func:`gittree.check_tree`: raises TreeRefused); LookupError when there is no such tree."""
    listing = subprocess.run(["git", *git_args, "ls-tree", "-r", "-l", "-z", "--full-tree", treeish], env=env,
                             capture_output=True, text=True, timeout=timeout)
    if listing.returncode != 0:
        raise LookupError(treeish)
    entries = parse_ls_tree(listing.stdout)
    links = "".join(f"{e.object_id}\n" for e in entries if e.is_link)
    targets = {}
    if links:
        batch = subprocess.run(["git", *git_args, "cat-file", "--batch"], env=env, input=links.encode(),
                               capture_output=True, timeout=timeout)
        targets = parse_link_batch(batch.stdout)
    check_tree(entries, targets, caps)


def describe(ref: str) -> str:
    return f"ref {ref!r}" if ref else "its default branch"


def transfer_cap(max_bytes: int | None) -> list[str]:
    """A prefix that caps every file git writes while fetching (its pack, or each loose object) at
    ``max_bytes``; SIGXFSZ ignored, so git says "File too large" instead of dying unexplained.
    Only the fetch: a checkout's files are judged from the tree (:func:`gittree.check_tree`)."""
    if max_bytes is None or not shutil.which("prlimit"):
        return []
    return ["prlimit", f"--fsize={max_bytes}", "--", "sh", "-c", 'trap "" XFSZ; exec "$@"', "sh"]


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
