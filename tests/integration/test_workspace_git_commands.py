"""Which of a checkout's config-driven commands git runs when the runtime reads a branch
workspace (real git, real useradd). The agent sets every one it can in its own ``.git/config``,
its home's ``~/.gitconfig``, its hooks folder and a populated submodule's own config, each
writing a mark when it runs. The runtime's reads (rev-parse, status --porcelain, rev-list,
log -1) must reach only the clean/process filters (which ``status`` needs to tell a filtered
file's change, and which run in the service's cgroups: test_workspace_cgroup.py); plain git
as the same user, over the same checkout, shows the other traps are live."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fixtures.gitrepos import git, make_repo

from maestro_runtime.tasks import workspace as ws

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

GIT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1"}
FILTERS = {"filter.clean", "filter.process", "global.filter", "sm.filter.clean"}


def _config(path: Path, key: str, value: object) -> None:
    subprocess.run(["git", "config", "--file", str(path), key, str(value)], check=True, env=GIT_ENV)


def _trapped(place: Path, user) -> tuple[Path, Path]:
    """A workspace of main (with a populated submodule) whose every config-driven command leaves a mark in out/."""
    repo, sub = make_repo(place / "src"), make_repo(place / "sub")
    work = place / "src" / "work"
    git("-c", "protocol.file.allow=always", "submodule", "add", "--quiet", str(sub.bare), "sm", cwd=work)
    (work / "g.txt").write_text("global\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "submodule", cwd=work)
    git("push", "--quiet", str(repo.bare), "main", cwd=work)
    store = ws.store_path(place / "state", repo.url)
    ws.fetch_branch(repo.url, "main", store)
    checkout = place / "projects" / "agent"
    checkout.parent.mkdir()
    ws.create(store, "main", checkout, repo.url)
    subprocess.run(["git", "-c", "protocol.file.allow=always", "clone", "--quiet", str(sub.bare), str(checkout / "sm")],
                   check=True, env=GIT_ENV)
    out = place / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    gd = checkout / ".git"

    def mark(tag: str, where: Path = gd) -> Path:
        script = where / f"cmd-{tag}.sh"
        script.write_text(f"#!/bin/sh\necho \"$*\" >> {out}/{tag}\ncat\n")
        script.chmod(0o755)
        return script

    hooks = gd / "hookdir"
    hooks.mkdir()
    for hook in ("post-index-change", "reference-transaction", "post-checkout", "pre-auto-gc"):
        for folder in (hooks, gd / "hooks"):
            (folder / hook).write_text(f"#!/bin/sh\necho {hook} >> {out}/hook-{hook}\n")
            (folder / hook).chmod(0o755)
    settings = {
        "core.fsmonitor": mark("fsmonitor"), "core.hooksPath": hooks,
        "diff.external": mark("diff.external"), "diff.x.textconv": mark("textconv"),
        "diff.x.command": mark("diff.command"), "filter.x.clean": mark("filter.clean"),
        "filter.x.smudge": mark("filter.smudge"), "filter.y.process": mark("filter.process"),
        "log.showSignature": "true", "gpg.program": mark("gpg"), "gpg.ssh.program": mark("gpg.ssh"),
        "core.pager": mark("pager"), "pager.status": mark("pager.status"), "pager.log": mark("pager.log"),
        "core.editor": mark("editor"), "sequence.editor": mark("sequence.editor"),
        "credential.helper": f"!{mark('credential')}", "core.askPass": mark("askpass"),
        "core.sshCommand": mark("ssh"), "uploadpack.packObjectsHook": mark("packObjectsHook"),
        "core.alternateRefsCommand": mark("alternateRefsCommand"),
        "status.submoduleSummary": "true", "diff.submodule": "log", "gc.auto": "1", "maintenance.auto": "true",
    }
    for key, value in settings.items():
        _config(gd / "config", key, value)
    (gd / "info").mkdir(exist_ok=True)
    (gd / "info" / "attributes").write_text("VERSION filter=x diff=x\nindex.html filter=y diff=x\ng.txt filter=g\n")
    home = place / "home"
    home.mkdir()
    _config(home / ".gitconfig", "filter.g.clean", mark("global.filter"))
    smgd = checkout / "sm" / ".git"  # the submodule's own checkout: its config is the agent's too
    _config(smgd / "config", "filter.z.clean", mark("sm.filter.clean", smgd))
    _config(smgd / "config", "core.fsmonitor", mark("sm.fsmonitor", smgd))
    (smgd / "info").mkdir(exist_ok=True)
    (smgd / "info" / "attributes").write_text("* filter=z\n")
    # HEAD a signed commit: log.showSignature would run gpg.program to check it.
    tree = git("rev-parse", "HEAD^{tree}", cwd=checkout)
    signed = (f"tree {tree}\nparent {git('rev-parse', 'HEAD', cwd=checkout)}\nauthor t <t@e> 1 +0000\n"
              "committer t <t@e> 1 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n AAAA\n"
              " -----END PGP SIGNATURE-----\n\nsigned\n")
    sha = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], input=signed, cwd=checkout,
                         env=GIT_ENV, capture_output=True, text=True, check=True).stdout.strip()
    git("-c", "core.hooksPath=/dev/null", "update-ref", "refs/heads/main", sha, cwd=checkout)
    for changed in (checkout / "VERSION", checkout / "index.html", checkout / "g.txt", checkout / "sm" / "VERSION"):
        os.utime(changed, (1e9, 1e9))  # their stat no longer matches the index: status must look inside
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(checkout), str(home)], check=True)
    return checkout, out


def _marks(out: Path) -> set[str]:
    return {name for name in os.listdir(out)}


def test_the_runtimes_reads_reach_only_the_filters(place, user):
    checkout, out = _trapped(place, user)
    home, directory = str(place / "home"), str(checkout)
    assert ws.git_as(user.pw_uid, user.pw_gid, home, directory, ["rev-parse", "HEAD"]) is not None
    status = ws.status(user.pw_uid, user.pw_gid, home, directory, "refs/remotes/origin/main")
    assert status is not None and status.last_commit.endswith("signed"), status
    assert ws.commits_since(user.pw_uid, user.pw_gid, home, directory, "HEAD~1") == 1
    ws.unsaved_work(user.pw_uid, user.pw_gid, home, directory)
    assert _marks(out) == FILTERS


def test_plain_git_as_the_same_user_springs_the_other_traps(place, user):
    """The control: without the runtime's options, the same reads run the checkout's fsmonitor
    (and the submodule's), its post-index-change hook and its gpg.program."""
    checkout, out = _trapped(place, user)
    for argv in (["status", "--porcelain"], ["log", "-1", "--format=%h %s"]):
        subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--",
                        "git", "-C", str(checkout), *argv], capture_output=True, check=False,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(place / "home")})
    assert {"fsmonitor", "sm.fsmonitor", "hook-post-index-change", "gpg"} <= _marks(out) - FILTERS, _marks(out)
