"""The small hooks provisioning calls for tasks, dependencies and branch workspaces.

Kept here so ``ops/provision.py`` only gains three calls: what a record holds,
how a task's program differs from a service's, and where a workspace's code comes from.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from maestro_runtime.engine.supervisord import ProgramOptions
from maestro_runtime.spec import ServiceSpec, SpecError

if TYPE_CHECKING:
    from maestro_runtime.ops.provision import Assignment, Code, Provisioner
    from maestro_runtime.state.records import ServiceRecord


def record_fields(spec: ServiceSpec, workspace: dict[str, str] | None) -> dict[str, Any]:
    return {
        "role": spec.role, "schedule": spec.schedule, "catch_up": spec.catch_up,
        "depends_on": dict(spec.depends_on), "workspace": dict(workspace or {}),
    }


def task_program_options(record: ServiceRecord, options: ProgramOptions) -> ProgramOptions:
    """A task is a program supervisord never starts or restarts by itself: the task runner
    (tasks/runner.py) starts it when it is due and its dependencies are met, and records how
    it ended. startsecs=0: a task that exits at once has still run (EXITED, not FATAL).
    A service with dependencies is likewise started by the runner, not at supervisord's start."""
    if record.role == "task":
        return replace(options, autostart=False, autorestart=False, startsecs=0, startretries=0)
    if record.depends_on:
        return replace(options, autostart=False)
    return options


def wants_workspace(spec: ServiceSpec) -> bool:
    from maestro_runtime.sources import fetch as sources

    if spec.workspace is False or spec.repo is None:
        return False
    if sources.classify(spec.repo).kind != "git":
        if spec.workspace:
            raise SpecError(spec.origin, "workspace", "needs a git source (git URL, git+https://... or a local "
                                                      "repository ending in .git)")
        return False
    return bool(spec.workspace) or spec.role == "task"


def public_url(repo: str) -> str:
    from maestro_runtime.sources import git as gitsource

    return gitsource.split_credentials(gitsource.clone_url(repo))[0]


def task_source(provisioner: Provisioner, a: Assignment, previous: ServiceRecord | None,
                refetch: bool) -> Code | None:
    """The entry's branch workspace, or None when its source is not one. An existing workspace
    of the same store and branch is kept as it is: the commits made in it are the entry's."""
    from maestro_runtime.ops.provision import Code
    from maestro_runtime.sources import fetch as sources
    from maestro_runtime.tasks import workspace as ws

    spec = a.spec
    settings = provisioner.settings
    directory = settings.projects_dir / a.id
    if not wants_workspace(spec):
        _keep_unsaved_work(provisioner, previous, directory)
        return None
    assert spec.repo is not None
    source = sources.redact(spec.repo)
    store = ws.store_path(settings.state_dir, spec.repo)
    same = (previous is not None and previous.workspace.get("store") == str(store)
            and previous.workspace.get("branch") == spec.ref and (directory / ".git").is_dir()
            and not (directory / ".git").is_symlink())
    if not same:  # another repository or branch (or a tag): the checkout would be replaced
        _keep_unsaved_work(provisioner, previous, directory)
    opts = sources.FetchOptions.from_settings(settings)
    try:
        if same and previous is not None:
            if refetch:  # the store learns the upstream's new commits: "behind" shows them
                ws.fetch_branch(spec.repo, spec.ref, store, token=opts.token, timeout=opts.git_timeout,
                                max_bytes=opts.max_bytes)
            return Code(directory, source, previous.revision, workspace=dict(previous.workspace))
        tip = ws.fetch_branch(spec.repo, spec.ref, store, token=opts.token, timeout=opts.git_timeout,
                              max_bytes=opts.max_bytes)
        staging = directory.with_name(f".{directory.name}.workspace")
        shutil.rmtree(staging, ignore_errors=True)
        ws.create(store, spec.ref, staging, public_url(spec.repo), opts.caps)
    except ws.NotABranch as exc:
        if spec.workspace is None:  # a task at a tag or commit: an ordinary checkout, as a service gets
            return None
        raise sources.SourceError(f"workspace: {exc}") from None
    except ws.WorkspaceError as exc:
        raise sources.SourceError(str(exc)) from None
    previous_dir = sources.swap_in(staging, directory, spec.keep)
    return Code(directory, source, f"{tip[:12]}-{time.time():.6f}", fetched=True, previous_dir=previous_dir,
                workspace={"store": str(store), "branch": spec.ref, "base": tip})


def _keep_unsaved_work(provisioner: Provisioner, previous: ServiceRecord | None, directory) -> None:
    """A branch workspace about to be replaced (its repository or branch changed) may hold the
    only copy of its entry's commits: the change is refused, naming them, and the previous
    version keeps its checkout (ops/provision.py keeps a failed redeploy's previous version)."""
    from maestro_runtime.sources import fetch as sources
    from maestro_runtime.tasks import workspace as ws

    if previous is None or not previous.workspace:
        return
    git_dir = directory / ".git"
    if git_dir.is_symlink() or not git_dir.is_dir():
        return
    work = ws.unsaved_work(previous.uid, previous.gid, previous.home, str(directory),
                           ws.sandbox_jail(provisioner.settings))
    if work:
        branch = previous.workspace.get("branch", "?")
        raise sources.SourceError(
            f"workspace: the checkout of branch {branch!r} in {directory} holds {work}; it is not replaced: "
            f"push them (or copy them out), or remove-service {previous.id} --purge to drop them")
