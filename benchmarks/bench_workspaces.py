"""20 branch workspaces of one repository vs 20 full clones: disk and time (not a test).

Three ways to give N entries each a writable checkout of their own branch:

* ``clones``     N independent full clones (``git clone --no-local``: what N services
                 fetching the same repository separately cost);
* ``maestro``    what maestro-runtime does (tasks/workspace.py ``fetch_branch`` + ``create``):
                 one bare store, each checkout holding its branch's objects only, as hard
                 links to the store's files that hold nothing else, the rest packed for it;
* ``linked``     one bare store + N ``git clone --local`` (every store file hard-linked, other
                 branches' objects included: what maestro did before it kept branches apart);
* ``shared``     one bare store + N ``git clone --shared`` (alternates: every user would
                 have to read the whole store; for comparison);
* ``worktrees``  one bare store + N ``git worktree add`` (for comparison).

    python benchmarks/bench_workspaces.py [--repo PATH_OR_URL | --synthetic] [-n 20] [--json out.json]

The default repository is this checkout's own history (a real one, offline).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
       "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}


def git(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout


def disk_kib(path: Path) -> int:
    """du counts a hard-linked file once, so shared objects are not counted twice."""
    return int(subprocess.run(["du", "-sk", str(path)], check=True, capture_output=True, text=True).stdout.split()[0])


def synthetic(base: Path, commits: int = 300) -> str:
    """A repository whose history outweighs its tree (as a long-lived project's does)."""
    import os

    work = base / "synthetic"
    work.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    for i in range(commits):
        (work / f"f{i % 10}.bin").write_bytes(os.urandom(32 * 1024))
        git("add", ".", cwd=work)
        git("commit", "--quiet", "-m", f"c{i}", cwd=work)
    return str(work)


def prepare(source: str, base: Path, n: int) -> Path:
    """A bare origin with n branches (b0..b{n-1}), each one commit ahead of the default branch."""
    origin = base / "origin.git"
    git("clone", "--quiet", "--bare", "--no-local", source, str(origin))
    head = git("--git-dir", str(origin), "rev-parse", "HEAD").strip()
    for i in range(n):
        git("--git-dir", str(origin), "branch", f"b{i}", head)
    return origin


def clones(origin: Path, out: Path, n: int) -> None:
    for i in range(n):
        git("clone", "--quiet", "--no-local", "--branch", f"b{i}", f"file://{origin}", str(out / f"c{i}"))


def from_store(how: str, origin: Path, out: Path, n: int) -> None:
    store = out / "store.git"
    git("init", "--quiet", "--bare", str(store))
    for i in range(n):  # one fetch per branch, like one provisioning per entry
        git("--git-dir", str(store), "fetch", "--quiet", "--no-tags", f"file://{origin}",
            f"+refs/heads/b{i}:refs/heads/b{i}")
        git("clone", "--quiet", how, "--no-tags", "--single-branch", "--branch", f"b{i}", str(store),
            str(out / f"w{i}"))


def maestro(origin: Path, out: Path, n: int) -> None:
    from maestro_runtime.tasks import workspace

    store = out / "store.git"
    for i in range(n):  # one fetch per branch, like one provisioning per entry
        workspace.fetch_branch(f"file://{origin}", f"b{i}", store)
        workspace.create(store, f"b{i}", out / f"w{i}", f"file://{origin}")


def linked(origin: Path, out: Path, n: int) -> None:
    from_store("--local", origin, out, n)


def shared(origin: Path, out: Path, n: int) -> None:
    from_store("--shared", origin, out, n)


def worktrees(origin: Path, out: Path, n: int) -> None:
    store = out / "store.git"
    git("init", "--quiet", "--bare", str(store))
    for i in range(n):
        git("--git-dir", str(store), "fetch", "--quiet", "--no-tags", f"file://{origin}",
            f"+refs/heads/b{i}:refs/heads/b{i}")
        git("--git-dir", str(store), "worktree", "add", "--quiet", str(out / f"w{i}"), f"b{i}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--synthetic", action="store_true", help="a generated repository: 300 commits of 32 KiB "
                        "random files (history ~9 MiB, tree 320 KiB)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="maestro-bench-ws-"))
    try:
        origin = prepare(synthetic(base) if args.synthetic else args.repo, base, args.n)
        results = {"repository_kib": disk_kib(origin), "n": args.n}
        ways = (("clones", clones), ("maestro", maestro), ("linked", linked), ("shared", shared),
                ("worktrees", worktrees))
        for name, way in ways:
            out = base / name
            out.mkdir()
            started = time.perf_counter()
            way(origin, out, args.n)
            results[name] = {"seconds": round(time.perf_counter() - started, 3), "disk_kib": disk_kib(out)}
            # One commit in the first checkout must stay there (and cost only its own objects).
            first = out / ("c0" if name == "clones" else "w0")
            (first / "bench.txt").write_text("x\n")
            git("add", "bench.txt", cwd=first)
            git("commit", "--quiet", "-m", "bench", cwd=first)
        for name in ("maestro", "linked", "shared", "worktrees"):
            results[name]["disk_ratio_vs_clones"] = round(results[name]["disk_kib"] / results["clones"]["disk_kib"], 3)
            results[name]["time_ratio_vs_clones"] = round(results[name]["seconds"] / results["clones"]["seconds"], 3)
        print(json.dumps(results, indent=1))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
