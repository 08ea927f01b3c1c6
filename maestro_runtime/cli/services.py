"""list-services, remove-service, deploy-from-env, allow-host and export."""


from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from maestro_runtime.cli.common import (
    apply_changes,
    command_settings,
    ends_its_children,
    find_service,
    one_line_errors,
    running_supervisor,
)
from maestro_runtime.engine.supervisord import Supervisor, SupervisorUnavailable
from maestro_runtime.log_format import terminal_safe_text
from maestro_runtime.settings import Settings
from maestro_runtime.state.records import RecordError, RecordStore

# ---------------------------------------------------------------- list-services


@click.command("list-services")
@click.option("--json", "as_json", is_flag=True, help="A JSON array for tools (stable keys, see README).")
@click.option("--kind", type=click.Choice(["task", "service"]), help="Only tasks, or only services.")
@click.option("--state", help="Only entries in this state or task phase (RUNNING, failed, waiting...).")
@click.option("--watch", is_flag=True, help="Refresh the table every 2 seconds until Ctrl-C.")
@click.option("--ready", is_flag=True,
              help="Exit 0 when every entry is ready (a service RUNNING whose probe passes, a one-shot task "
                   "that succeeded; scheduled tasks do not count), else 1; one line names the others "
                   "(a readiness check).")
@one_line_errors
def list_services(as_json: bool, kind: str | None, state: str | None, watch: bool, ready: bool) -> None:
    """List every registered service: state, health, restarts, last exit, CPU, memory, port, command."""
    settings = command_settings()
    if ready:
        views, _every, _processes = _gather(settings, kind, state, git=False)  # a workspace's git is not shown
        waiting = [f"{v.name} ({v.status}{'' if v.health in (None, 'healthy') else ', ' + v.health})"
                   for v in views if not v.ready]
        if views and not waiting:
            click.echo(f"ready: {len(views)} entr{'y' if len(views) == 1 else 'ies'}")
            return
        click.echo("not ready: " + (", ".join(waiting) or "no entries registered"))
        raise SystemExit(1)
    while True:
        text, note = _services_text(settings, as_json, kind, state)
        if watch:
            click.echo("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S  ") + "(Ctrl-C to stop)")  # redraw in place
        click.echo(text)
        if note:
            click.echo(note, err=True)
        if not watch:
            return
        try:
            time.sleep(2.0)
        except KeyboardInterrupt:
            return


def _services_text(settings: Settings, as_json: bool, kind: str | None = None,
                   state: str | None = None) -> tuple[str, str]:
    from maestro_runtime.ops.inventory import format_table

    views, every, processes = _gather(settings, kind, state)
    if as_json:
        text = json.dumps([v.as_json() for v in views], indent=2)
    elif views:
        text = format_table(views)
    elif every:  # a filter left nothing: not the same as an empty system (README: troubleshooting)
        given = " ".join(f"--{k} {v}" for k, v in (("kind", kind), ("state", state)) if v)
        text = f"no entries match {given} ({len(every)} registered)"
    else:
        text = "no services registered"
    return text, "note: supervisord is not running; statuses are unknown" if processes is None else ""


def _gather(settings: Settings, kind: str | None, state: str | None, *, git: bool = True,
            ) -> tuple[list, list, dict | None]:
    """(the views the filters keep, every view, supervisord's processes or None when it is down)."""
    from maestro_runtime.control.rpc import process_states
    from maestro_runtime.ops.inventory import build_views, gather_extras, provisioning_views
    from maestro_runtime.tasks.state import PhaseStore
    from maestro_runtime.tasks.view import enrich, matches

    records, corrupt = RecordStore(settings.records_dir).scan()
    for problem in corrupt:
        click.echo(f"warning: {problem}: `remove-service {problem.service_id}` clears it", err=True)
    processes = None
    try:
        supervisor = Supervisor(settings.supervisor_socket, timeout=5)
        if settings.supervisor_socket.exists():
            processes = process_states(supervisor)
    except SupervisorUnavailable:
        processes = None
    views = build_views(records, processes, gather_extras(settings.state_dir, records), settings.startsecs)
    listed = _provisioning(settings)
    views += [replace(v, step=_provisioning_step(settings, v.name, listed["since"]))  # a row: listed is a dict
              for v in provisioning_views(listed, {r.id for r in records}, time.time())]
    from maestro_runtime.tasks.workspace import sandbox_jail

    every = enrich(views, records, PhaseStore(settings.state_dir / "tasks").all(), sandbox_jail(settings), git=git)
    return [v for v in every if matches(v, kind, state)], every, processes


def _provisioning(settings: Settings) -> object:
    """The boot's list of services still being provisioned, when that boot is still running."""
    try:
        listed = json.loads(settings.provisioning_list.read_text())
        alive = isinstance(listed, dict) and isinstance(listed.get("pid"), int) and os.path.exists(
            f"/proc/{listed['pid']}")
    except (OSError, ValueError):
        return None
    return listed if alive else None


def _provisioning_step(settings: Settings, name: str, since: object) -> str:
    """What a listed service is doing, from its build's steps (root's 0700 folder: sources/builds.py)."""
    from maestro_runtime.ops.inventory import provisioning_step
    from maestro_runtime.ops.logs import tail_bytes

    log = settings.build_steps(name)
    try:
        modified = None if "/" in name else log.stat().st_mtime
    except OSError:
        modified = None
    return provisioning_step(tail_bytes(log, 4096) if modified else [], modified, since)


# ---------------------------------------------------------------- remove-service


@click.command("remove-service")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the project's files and per-project dirs.")
@click.option("--delete-user", is_flag=True, help="Also delete the service's UNIX account.")
@click.option("--yes", "-y", is_flag=True,
              help="Do not ask before --purge or --delete-user (a plain remove never asks).")
@one_line_errors
def remove_service(name: str, purge: bool, delete_user: bool, yes: bool) -> None:
    """Stop and unregister service NAME and free its port (files are kept unless --purge)."""
    from maestro_runtime.ops.provision import Provisioner

    settings = command_settings()
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        try:
            record = find_service(provisioner.store, name)
        except RecordError as problem:
            _remove_unreadable(provisioner, problem, purge or delete_user)
            return
        if (purge or delete_user) and not yes:
            doomed = ["its files" + _unsaved(settings, record)] * purge + [f"user {record.user}"] * delete_user
            what = " and ".join(doomed)
            click.confirm(f"Remove service {record.id} and delete {what}?", abort=True)
        extras = provisioner.process_ids(record.id)  # its worker/clock... programs go with it
        provisioner.unregister(record)
        supervisor = running_supervisor(provisioner)
        if supervisor:
            for program in (record.id, *extras):
                supervisor.remove(program)  # stops the program before its files go
        provisioner.cleanup(record, purge=purge, delete_user=delete_user)
    done = [f"port {record.port} freed"] * bool(record.port) + [
        ("files deleted" if purge else f"files kept in {record.directory}")] * bool(record.directory)
    click.echo(f"removed {record.id}" + "".join(f"{', ' if i else ': '}{d}" for i, d in enumerate(done))
               + ("" if supervisor else " (supervisord not running)"))
    if record.kind == "preseeded" and not purge and record.directory:
        # A pre-seeded folder would come back at the next boot: mark it, additively.
        _mark_disabled(Path(record.directory))
        click.echo(f"wrote {record.directory}/.maestro-disable so it stays removed (delete it to bring it back)")
    elif record.kind not in ("deploy", "preseeded"):
        click.echo(f"note: {record.id} comes from {record.origin}; remove it there too or it returns at next boot",
                   err=True)


def _unsaved(settings: Settings, record) -> str:
    """`` (its checkout holds 2 commit(s) not pushed)`` for a branch workspace whose work exists
    nowhere else: the question before --purge says what it deletes."""
    if not record.workspace or not record.directory or not (Path(record.directory) / ".git").is_dir():
        return ""
    from maestro_runtime.tasks import workspace as ws

    work = ws.unsaved_work(record.uid, record.gid, record.home, record.directory, ws.sandbox_jail(settings))
    return f" (its checkout holds {work})" if work else ""


def _mark_disabled(folder: Path) -> None:
    """Create .maestro-disable by descriptor: a link the service planted there is never followed."""
    from maestro_runtime import safefs

    try:
        with safefs.opened_dir(folder, under=folder.parent) as fd:
            safefs.create_at(fd, ".maestro-disable")
    except (safefs.UnsafeFile, OSError) as exc:
        raise click.ClickException(f"cannot write {folder}/.maestro-disable: {exc}") from None


def _remove_unreadable(provisioner, problem: RecordError, asked_for_more: bool) -> None:
    """A service whose record is unusable is still removable: its port, program and launch
    script go and the file is set aside. What it owned (folder, user) is unknown: kept."""
    provisioner.ledger.release(problem.service_id)  # first: the one step that needs space
    aside = provisioner.store.set_aside(problem.path)
    provisioner.deactivate(problem.service_id)
    supervisor = running_supervisor(provisioner)
    if supervisor:
        supervisor.remove(problem.service_id)
    click.echo(f"removed {problem.service_id}: {problem}; the file is kept as {aside.name}")
    if asked_for_more:
        click.echo("note: its files and user are unknown (the record is unreadable): nothing else was deleted",
                   err=True)


# ---------------------------------------------------------------- deploy-from-env


@click.command("deploy-from-env")
@click.option("--prepare-only", is_flag=True, help="Prepare users, files and programs; do not touch supervisord.")
@click.option("--refetch", is_flag=True, help="Fetch every source again, even when unchanged.")
@ends_its_children
@one_line_errors
def deploy_from_env(prepare_only: bool, refetch: bool) -> None:
    """Apply pre-seeded folders, the YAML file, SERVICES and SVC_* to the running system."""
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.ops.reconcile import reconcile
    from maestro_runtime.spec.gather import gather_specs

    settings = command_settings()
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        report = reconcile(provisioner, gather_specs(settings), refetch=refetch)
        applied = False if prepare_only else apply_changes(provisioner)
    click.echo(terminal_safe_text(report.summary()))  # a failure's first line may be a build's
    if not prepare_only and not applied:
        click.echo("note: supervisord is not running; programs start at next boot", err=True)
    if report.failed:
        sys.exit(1)


# ---------------------------------------------------------------- allow-host


@click.command("allow-host")
@click.argument("service")
@click.argument("host")
@click.option("--save", is_flag=True, help="Keep the host across reboots (default: until the next boot).")
@one_line_errors
def allow_host(service: str, host: str, save: bool) -> None:
    """Let SERVICE reach HOST (a name or *.domain) through its egress allowlist."""
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.sandbox.netpolicy import NetPolicyError
    from maestro_runtime.sandbox.netpolicy import allow_host as add_host

    settings = command_settings()
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        # The service first, as every command finds it (by id or name): "host:" then names only
        # a bad host, never a missing service.
        record = find_service(provisioner.store, service)
        try:
            name = add_host(settings, record.id, host, save=save)
        except NetPolicyError as exc:
            raise click.ClickException(f"service {service!r}: host: {exc}") from exc
        provisioner.activate(record)  # the sandbox report lists the new host
        apply_changes(provisioner)
    click.echo(f"{record.id} may now reach {name}" + (" (saved)" if save else " (until the next boot)"))
    egress = str(((provisioner.store.load(record.id) or record).sandbox.get("network") or {}).get(
        "egress_enforced_by", ""))
    if egress.startswith("not enforced"):  # it could reach every host before, as it can now
        click.echo(f"note: {record.id}'s egress is {egress}: it reaches any host anyway", err=True)


# ---------------------------------------------------------------- export


@click.command("export")
@click.argument("target", type=click.Choice(["kubernetes", "compose"]))
@click.option("--split", is_flag=True, help="One runtime per service (a Deployment each) instead of one for all.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Write the files (and NOTES.md) into this folder instead of printing them.")
@click.option("--name", default="maestro", show_default=True, help="Prefix of every object name.")
@click.option("--image", help="Image to run (default: ghcr.io/maestro-runtime/maestro-runtime:latest).")
def export(target: str, split: bool, output: Path | None, name: str, image: str | None) -> None:
    """Render Kubernetes or compose manifests from the specs the container reads (YAML file, SERVICES, SVC_*)."""
    from maestro_runtime.ops import export as exporter
    from maestro_runtime.spec.gather import gather_specs

    options = exporter.Options(target, name, image or exporter.DEFAULT_IMAGE, split)
    try:
        result = exporter.render(gather_specs(command_settings(), preseeded=False), options)
    except exporter.ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        click.echo(result.text(), nl=False)
    else:
        for path in exporter.write_files(result, output):
            click.echo(f"wrote {path}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


