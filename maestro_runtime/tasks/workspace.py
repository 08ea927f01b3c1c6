"""Branch workspaces: a git source at a branch as a real checkout its entry can commit to.

Every entry on a repository shares one object store: a bare repository under
``<state>/git/<hash>.git``, owned by root, mode 0700, that root alone fetches
into and reads. Each entry gets its own clone of its branch made by root: its
object files are hard links to the store's where those hold only its branch's
objects (so shared history is on disk once), left root-owned and read-only in the
entry's folder, and every commit the entry makes is its own file.

Why not ``git clone --shared`` (alternates) or ``git worktree add``: both need
every entry's user to read the store, which holds every branch anyone fetched
(and, without the sandbox, any user could read any repository's store); a
worktree would also need it writable. Nor ``git clone --local``: it links the
whole object folder, so a checkout could read another entry's branch (:mod:`.objects`
links only the store files that hold nothing but the branch's objects, and packs the
rest). Linked or packed, they stay valid whatever the store later prunes. See
benchmarks/bench_workspaces.py for the disk and time figures.

Root never runs git inside a workspace (its ``.git/config`` is the service's):
status is read by running git as the entry's user (:func:`git_as`). That git still obeys the
service's config, and some of it runs commands (a ``filter.*.clean`` on a racy file during
``status``, a promisor remote's ``uploadpack`` on a missing object): so, when services are
sandboxed, it runs in a bubblewrap jail of its own (:func:`sandbox_jail`: no network, a read-only
view of the checkout, killed with its pid namespace on a timeout), never beside root, outside
the service's sandbox, network policy and lifetime. Whether sandboxed or not, that git also runs in
the service's own cgroups (:func:`sandbox_jail`: joined before exec, as its launch joins them),
so what the config starts counts against the service's memory, pids and CPU limits, never
against its caller's (the controller, the operator's CLI).

Which of the config's commands git reaches in these reads (rev-parse, status --porcelain,
rev-list, log -1 --format): only ``filter.<driver>.clean``/``.process`` (a file whose stat
changed, in the checkout or in a populated submodule's own checkout), which status needs to
tell a filtered file's change (git-lfs); ``core.fsmonitor``, hooks (``post-index-change``),
``log.showSignature``'s ``gpg.program`` and transports are switched off below; external diff,
textconv, pagers, editors, credential helpers are never reached by these commands
(tests/integration/test_workspace_git_commands.py sets them all).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from maestro_runtime.sources import git as gitsource
from maestro_runtime.sources.extract import Caps
from maestro_runtime.sources.gittree import TreeRefused
from maestro_runtime.sources.redact import redact

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT_TIMEOUT = 10.0  # reading a checkout's status: a hostile repository must not stall list-services or the runner


@dataclass(frozen=True)
class Confinement:
    """Where git reading one checkout runs: the cgroup.procs files its child joins before exec
    (the service's), and the argv before the privilege drop (the jail, rlimit fallbacks; "--" last)."""

    procs: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()


Jail = Callable[[str], AbstractContextManager[Confinement]]  # a checkout's folder -> its confinement, while held


@contextlib.contextmanager
def no_jail(directory: str) -> Iterator[Confinement]:
    yield Confinement()


class WorkspaceError(Exception):
    pass


class NotABranch(WorkspaceError):
    """The ref is a tag or a commit: no branch to commit on."""


class GitTimedOut(WorkspaceError):
    """git reading a checkout ran out of time: a FIFO planted as HEAD or alternates, a filter that sleeps."""


def store_path(state_dir: Path, url: str) -> Path:
    clean, _ = gitsource.split_credentials(gitsource.clone_url(url))
    return state_dir / "git" / f"{hashlib.sha256(clean.encode()).hexdigest()[:16]}.git"


def _root_env() -> dict[str, str]:
    """Root's git environment for its own folders: no credentials, no configuration but the repository's."""
    return gitsource.git_env({"PATH": SYSTEM_PATH, "HOME": "/nonexistent"}, None, None)


def _root_git(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 600, input: str | None = None, prefix: list[str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    """git as root, in root's own folders only, reading no configuration but the repository's."""
    base = env or _root_env()
    try:
        return subprocess.run([*(prefix or ()), "git", "-c", "core.hooksPath=/dev/null", *argv], cwd=cwd, env=base,
                              input=input,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceError(f"git {argv[0]} timed out after {timeout:.0f}s") from exc


def fetch_branch(repo: str, branch: str, store: Path, *, token: str | None = None, timeout: float = 600,
                 max_bytes: int | None = None) -> str:
    """Fetch ``branch`` of ``repo`` into the shared store; return its commit. Each file the fetch
    writes (its pack; a small fetch's loose objects) is capped at ``max_bytes``
    (MAESTRO_FETCH_MAX_BYTES). Loose objects stay on, unlike a service's own clone (sources/git.py):
    they are what checkouts of other branches can share by hard link (objects.py)."""
    url, creds = gitsource.split_credentials(gitsource.clone_url(repo))
    if creds is not None and gitsource.in_clear(url):
        raise WorkspaceError(f"refusing to send the credentials of {redact(url)} over plain http://: use https://")
    if creds is None and token and urlsplit(url).scheme == "https":  # as sources/git.py: never in clear
        creds = gitsource.Credentials("x-access-token", token)
    secrets = [s for s in (token, creds.password if creds else None) if s]
    store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (store / "objects").is_dir():
        proc = _root_git(["init", "--quiet", "--bare", str(store)])
        if proc.returncode != 0:
            raise WorkspaceError(f"cannot create the object store {store}: {proc.stderr.strip()}")
    for private in (store.parent, store):  # root's alone: it holds every branch anyone fetched
        private.chmod(0o700)
    with tempfile.TemporaryDirectory(prefix="maestro-git-") as tmp:
        askpass = None
        if creds is not None:
            askpass = Path(tmp) / "askpass"
            askpass.write_text(gitsource._ASKPASS)
            askpass.chmod(0o700)
        env = gitsource.git_env({"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/root")}, creds, askpass)
        proc = _root_git(["--git-dir", str(store), "fetch", "--quiet", "--no-tags", "--", url,
                          f"+refs/heads/{branch}:refs/heads/{branch}"], env=env, timeout=timeout,
                         prefix=gitsource.transfer_cap(max_bytes))
    if proc.returncode != 0 and "File too large" in proc.stderr:
        raise WorkspaceError(f"git fetch of branch {branch!r} from {redact(url)}: what it fetched is over "
                             f"MAESTRO_FETCH_MAX_BYTES={max_bytes}")
    if proc.returncode != 0:
        detail = gitsource.scrub(proc.stderr.strip(), secrets).splitlines()[-1:] or [f"exit {proc.returncode}"]
        if "couldn't find remote ref" in proc.stderr:
            raise NotABranch(f"{branch!r} is not a branch of {redact(url)}")
        raise WorkspaceError(f"git fetch of branch {branch!r} from {redact(url)} failed: {detail[0]}")
    return branch_tip(store, branch) or ""


def branch_tip(store: Path, branch: str) -> str | None:
    proc = _root_git(["--git-dir", str(store), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
                     timeout=GIT_TIMEOUT)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def gained_upstream(store: Path, base: str, upstream: str) -> int | None:
    """Commits the branch gained upstream since the checkout was made from ``base`` (root, in
    the store): the checkout itself does not have them until its user fetches."""
    proc = _root_git(["--git-dir", str(store), "rev-list", "--count", f"{base}..{upstream}"], timeout=GIT_TIMEOUT)
    return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip().isdigit() else None


def create(store: Path, branch: str, dest: Path, public_url: str, caps: Caps | None = None) -> None:
    """A new checkout of ``branch`` at ``dest`` (which must not exist) holding that branch's objects
    only (:mod:`.objects`): hard links to the store's files where they hold nothing else (root's,
    read-only, shared on disk), a pack of its own for the rest. What ``git clone --single-branch``
    would set up, made by hand because ``clone --local`` links the whole store. Its tree is held
    to ``caps`` and the rule for links before anything is written (as a service's own clone)."""
    from maestro_runtime.tasks import objects

    tip = branch_tip(store, branch)
    if tip is None:
        raise WorkspaceError(f"workspace {dest.name}: branch {branch!r} is not in the object store")
    try:
        gitsource.judge_tree(["-c", "core.hooksPath=/dev/null", "--git-dir", str(store)], tip, _root_env(), 300,
                             caps or Caps())
    except (LookupError, TreeRefused) as exc:
        raise WorkspaceError(f"workspace {dest.name}: branch {branch!r}: {exc}") from None

    def git(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
        return _root_git(argv, timeout=300, **kw)

    def run(*argv: str) -> None:
        proc = git(["-C", str(dest), *argv])
        if proc.returncode != 0:
            raise WorkspaceError(f"git {argv[0]} for workspace {dest.name} failed: {proc.stderr.strip()[-300:]}")

    proc = git(["init", "--quiet", f"--initial-branch={branch}", "--", str(dest)])
    if proc.returncode != 0:
        raise WorkspaceError(f"git init for workspace {dest.name} failed: {proc.stderr.strip()[-300:]}")
    try:
        objects.fill(git, store, branch, dest / ".git")
    except objects.ObjectsError as exc:
        raise WorkspaceError(f"workspace {dest.name}: {exc}") from None
    run("update-ref", f"refs/heads/{branch}", tip)
    run("update-ref", f"refs/remotes/origin/{branch}", tip)
    # The entry's pushes and fetches go to the real repository (with its own credentials, if any).
    run("config", "remote.origin.url", public_url)
    run("config", "remote.origin.fetch", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    run("config", f"branch.{branch}.remote", "origin")
    run("config", f"branch.{branch}.merge", f"refs/heads/{branch}")
    run("reset", "--quiet", "--hard", tip)


# ---------------------------------------------------------------- status, read as the entry's user


@dataclass(frozen=True)
class GitStatus:
    branch: str
    changed: int  # files changed in the working tree (git status --porcelain)
    ahead: int
    behind: int
    last_commit: str  # "abc1234 subject"
    head: str


_ONE_SHOT = itertools.count()  # names of the groups made for one read (see _groups)


def sandbox_jail(settings) -> Jail:
    """How git reads a checkout as its services are confined: in the cgroups of the service whose
    folder it is (:func:`_groups`), and in a bubblewrap jail when services are sandboxed (none
    when they run unsandboxed: the service is then no better confined than the git reading it)."""
    from maestro_runtime.sandbox.bwrap import Shape, bwrap_argv, system_view
    from maestro_runtime.sandbox.policy import SandboxError, SandboxPolicy
    from maestro_runtime.state.records import RecordStore

    policy = SandboxPolicy.from_settings(settings)
    store = RecordStore(settings.records_dir)

    def bwrap(directory: str) -> tuple[str, ...]:
        try:
            on, _ = policy.sandboxed()
        except SandboxError:  # require mode without bubblewrap: no service runs, nothing to read
            on = False
        if not on:
            return ()
        # The checkout read-only (optional locks are off: git writes nothing), no network, its
        # own pid namespace: whatever the service's config starts ends with it.
        shape = Shape(writable=(), readonly=(directory,), unshare_net=True, new_session=True,
                      private_proc=policy.probe().private_proc)
        return tuple(bwrap_argv(policy.config.bwrap, system_view(policy.config), shape))

    @contextlib.contextmanager
    def jail(directory: str) -> Iterator[Confinement]:
        record = next((r for r in store.all() if r.directory == directory), None)
        with _groups(policy, record) as (procs, prlimit):
            yield Confinement(procs, (*bwrap(directory), *prlimit))

    return jail


@contextlib.contextmanager
def _groups(policy, record) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(cgroup.procs files, prlimit argv) for git reading ``record``'s checkout: the service's own
    groups, as its launch joins them (sandbox/cgroups.py), so its limits hold for it and all it
    runs together. Where they are not there (not made yet, or removed with the service: never
    made again from here), a group for this one read with the service's limits, as a build step
    gets (no record: the defaults), removed after it."""
    from maestro_runtime.sandbox import cgroups

    layout = policy.layout()
    limits = policy.config.limits
    if record is not None:
        with contextlib.suppress(ValueError):  # limits provisioning refused: the defaults
            limits = cgroups.resolve_limits(limits, record.limits)
        own = cgroups.plan_groups(layout, record.id, limits)
        if all(group.folder.is_dir() for group in own.dirs):
            yield own.procs, own.prlimit
            return
    name = f"git-{os.getpid()}-{next(_ONE_SHOT)}"
    prepared = cgroups.prepare(layout, name, limits)
    try:
        yield prepared.procs, prepared.prlimit
    finally:
        cgroups.remove(layout, name)


def git_as(uid: int, gid: int, home: str, directory: str, argv: list[str], jail: Jail = no_jail) -> str | None:
    """Run git as the entry's user in its workspace: its own config then only affects itself,
    and the commands that config names run confined by ``jail`` (see the module's doc). None: it failed."""
    try:
        with jail(directory) as confined:
            return _git_as(uid, gid, home, directory, argv, confined)
    except GitTimedOut:
        return None


def _git_as(uid: int, gid: int, home: str, directory: str, argv: list[str], confined: Confinement) -> str | None:
    """:func:`git_as`, raising GitTimedOut when git ran out of time."""
    env = {"PATH": SYSTEM_PATH, "HOME": home or "/nonexistent", "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0",
           # No transport at all: a missing object in a "partial clone" would otherwise be fetched
           # by running the repository's remote.*.uploadpack (or ssh, or ext::).
           "GIT_ALLOW_PROTOCOL": ""}
    prefix: list[str] = []
    hardening = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "log.showSignature=false"]
    procs: tuple[str, ...] = ()
    if os.geteuid() == 0:
        from maestro_runtime.engine.launch import drop_privileges_argv

        # As the entry runs: its cgroups and user, or in degraded mode root without a capability
        # (the runtime's own would otherwise reach whatever the checkout's config makes git run).
        prefix = [*confined.argv, *drop_privileges_argv(uid, gid)]
        procs = confined.procs
    if os.geteuid() != 0 or uid == 0:  # degraded mode (the entry runs as root too) or tests as a normal user
        hardening += ["-c", f"safe.directory={directory}"]
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    try:
        # The child joins the service's cgroups before exec, as sandbox/runner.py's commands do:
        # everything git starts is then counted there. A group it cannot join fails the read.
        proc = subprocess.run([*prefix, "git", *hardening, "-C", directory, *argv], env=env, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT, preexec_fn=_joining(procs))
    except subprocess.TimeoutExpired:
        raise GitTimedOut(f"git {argv[0]} in {directory} timed out after {GIT_TIMEOUT:.0f}s") from None
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _joining(procs: tuple[str, ...]) -> Callable[[], None] | None:
    if not procs:
        return None
    from maestro_runtime.sandbox import cgroups

    return lambda: cgroups.join(procs)


def status(uid: int, gid: int, home: str, directory: str, upstream: str | None, *,
           store: Path | None = None, base: str | None = None, jail: Jail = no_jail) -> GitStatus | None:
    """The checkout as its user sees it; ``store`` and ``base`` (the commit it was made from)
    count what upstream gained that the checkout has not fetched. None: unreadable, or one
    read ran out of time (the rest would too: a hostile checkout costs one GIT_TIMEOUT, not five)."""
    try:
        with jail(directory) as confined:
            return _status(uid, gid, home, directory, upstream, store, base, confined)
    except GitTimedOut:
        return None


def _status(uid: int, gid: int, home: str, directory: str, upstream: str | None, store: Path | None,
            base: str | None, confined: Confinement) -> GitStatus | None:
    def git(*argv: str) -> str | None:
        return _git_as(uid, gid, home, directory, list(argv), confined)

    head = (git("rev-parse", "HEAD") or "").strip()
    if not head:
        return None
    branch = (git("rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    porcelain = git("status", "--porcelain", "--untracked-files=normal") or ""
    ahead = behind = 0
    if upstream:
        counts = (git("rev-list", "--left-right", "--count", f"HEAD...{upstream}") or "").split()
        if len(counts) == 2:
            ahead, behind = int(counts[0]), int(counts[1])
        elif store is not None and base:  # upstream's new commits are in the store only
            since = git("rev-list", "--count", f"{base}..HEAD")
            ahead = int(since.strip()) if since and since.strip().isdigit() else 0
            behind = gained_upstream(store, base, upstream) or 0
    last = (git("log", "-1", "--format=%h %s") or "").strip()
    return GitStatus(branch, len([line for line in porcelain.splitlines() if line.strip()]), ahead, behind,
                     last[:120], head)


def commits_since(uid: int, gid: int, home: str, directory: str, start: str, jail: Jail = no_jail) -> int | None:
    out = git_as(uid, gid, home, directory, ["rev-list", "--count", f"{start}..HEAD"], jail)
    return int(out.strip()) if out and out.strip().isdigit() else None


def unsaved_work(uid: int, gid: int, home: str, directory: str, jail: Jail = no_jail) -> str | None:
    """What in a checkout exists nowhere else (commits on no remote-tracking branch, changed or
    new files), said in a few words; None when nothing. A checkout git cannot read counts as
    holding work: whether it does cannot be told, and the only copy must not go unasked."""
    try:
        with jail(directory) as confined:
            unpushed = _git_as(uid, gid, home, directory, ["rev-list", "--count", "HEAD", "--not", "--remotes"],
                               confined)
            porcelain = _git_as(uid, gid, home, directory, ["status", "--porcelain", "--untracked-files=normal"],
                                confined)
    except GitTimedOut:
        unpushed = porcelain = None
    if unpushed is None or porcelain is None or not unpushed.strip().isdigit():
        return "a checkout git cannot read (its work cannot be told apart)"
    parts = []
    if int(unpushed):
        parts.append(f"{int(unpushed)} commit(s) not pushed")
    if changed := len([line for line in porcelain.splitlines() if line.strip()]):
        parts.append(f"{changed} changed file(s) not committed")
    return " and ".join(parts) or None
