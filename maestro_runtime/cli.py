"""Operator commands (click): parse, call, print. Exit codes: 0 ok, 1 user error, 2 usage."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from maestro_runtime.engine.supervisord import Supervisor, SupervisorUnavailable
from maestro_runtime.log_format import setup_logging
from maestro_runtime.settings import Settings, load_or_exit
from maestro_runtime.spec.naming import env_pair
from maestro_runtime.state.records import RecordError, RecordStore, ServiceRecord

log = logging.getLogger("maestro")


def _settings() -> Settings:
    settings = load_or_exit(Path(sys.argv[0]).name or "maestro")  # bad settings: exit 2
    setup_logging(settings.log_level, settings.log_timestamps)
    return settings


def _one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """What goes wrong on the way (a full or read-only state disk, an unusable ledger, a
    supervisord that stops answering) is one line naming what and where, exit 1: never a
    traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        from maestro_runtime.engine.supervisord import SupervisorUnavailable
        from maestro_runtime.state.ports import PortError

        try:
            command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in str(exc.strerror) else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None
        except (PortError, RecordError, SupervisorUnavailable) as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # a bug or an error type not foreseen: still one line
            log.debug("unexpected error", exc_info=True)
            raise click.ClickException(
                f"internal error: {exc!r} (ENTRYPOINT_LOG_LEVEL=debug shows where)".replace("\n", " ")) from None

    return run


def _ends_its_children(command: Callable[..., None]) -> Callable[..., None]:
    """Fetches and builds start processes that start others (git's remote helper): when the
    command is stopped (SIGTERM, ^C) or ends, nothing it started may live on. As a child
    subreaper it inherits those orphans and ends them all on the way out."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        import signal

        from maestro_runtime.engine import reaper

        def stop(signum: int, _frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise SystemExit(128 + signum)

        reaper.become_subreaper()
        signal.signal(signal.SIGTERM, stop)
        try:
            command(*args, **kwargs)
        finally:
            reaper.end_descendants()

    return run


def _running_supervisor(provisioner) -> Supervisor | None:
    """Rebuild the firewall for the current services; then the running supervisord, if any."""
    for problem in provisioner.policy.sync_firewall(provisioner.store.all()):
        log.warning("%s", problem)
    supervisor = Supervisor(provisioner.settings.supervisor_socket)
    return supervisor if supervisor.available() else None


def _apply(provisioner) -> bool:
    """Tell a running supervisord about changed program files; False when it is not running."""
    supervisor = _running_supervisor(provisioner)
    if supervisor:
        supervisor.update()
    return supervisor is not None


def _find(store: RecordStore, name: str) -> ServiceRecord:
    """The service's record (RecordError when its file is there but unusable)."""
    record = store.load(name) if name and "/" not in name and not name.startswith(".") else None
    if record is None:
        matches = [r for r in store.all() if r.name == name]
        record = matches[0] if len(matches) == 1 else None
    if record is None:
        raise click.ClickException(f"service {name!r}: no such service (see list-services)")
    return record


# ---------------------------------------------------------------- list-services


@click.command("list-services")
@click.option("--json", "as_json", is_flag=True, help="A JSON array for tools (stable keys, see README).")
@click.option("--kind", type=click.Choice(["task", "service"]), help="Only tasks, or only services.")
@click.option("--state", help="Only entries in this state or task phase (RUNNING, failed, waiting...).")
@click.option("--watch", is_flag=True, help="Refresh the table every 2 seconds until Ctrl-C.")
@_one_line_errors
def list_services(as_json: bool, kind: str | None, state: str | None, watch: bool) -> None:
    """List every registered service: state, health, restarts, last exit, CPU, memory, port, command."""
    settings = _settings()
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
    from maestro_runtime.ops.inventory import build_views, format_table, gather_extras
    from maestro_runtime.tasks.state import PhaseStore
    from maestro_runtime.tasks.view import enrich, matches

    records, corrupt = RecordStore(settings.records_dir).scan()
    for problem in corrupt:
        click.echo(f"warning: {problem}: `remove-service {problem.service_id}` clears it", err=True)
    processes = None
    try:
        supervisor = Supervisor(settings.supervisor_socket, timeout=5)
        if settings.supervisor_socket.exists():
            processes = supervisor.processes()
    except SupervisorUnavailable:
        processes = None
    views = build_views(records, processes, gather_extras(settings.state_dir, records), settings.startsecs)
    views = [v for v in enrich(views, records, PhaseStore(settings.state_dir / "tasks").all())
             if matches(v, kind, state)]
    if as_json:
        text = json.dumps([v.as_json() for v in views], indent=2)
    else:
        text = format_table(views) if views else "no services registered"
    return text, "note: supervisord is not running; statuses are unknown" if processes is None else ""


# ---------------------------------------------------------------- remove-service


@click.command("remove-service")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete the project's files and per-project dirs.")
@click.option("--delete-user", is_flag=True, help="Also delete the service's UNIX account.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_one_line_errors
def remove_service(name: str, purge: bool, delete_user: bool, yes: bool) -> None:
    """Stop and unregister service NAME and free its port (files are kept unless --purge)."""
    from maestro_runtime.ops.provision import Provisioner

    settings = _settings()
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        try:
            record = _find(provisioner.store, name)
        except RecordError as problem:
            _remove_unreadable(provisioner, problem, purge or delete_user)
            return
        if (purge or delete_user) and not yes:
            doomed = ["its files"] * purge + [f"user {record.user}"] * delete_user
            what = " and ".join(doomed)
            click.confirm(f"Remove service {record.id} and delete {what}?", abort=True)
        extras = provisioner.process_ids(record.id)  # its worker/clock... programs go with it
        provisioner.unregister(record)
        supervisor = _running_supervisor(provisioner)
        if supervisor:
            for program in (record.id, *extras):
                supervisor.remove(program)  # stops the program before its files go
        provisioner.cleanup(record, purge=purge, delete_user=delete_user)
    kept = "deleted" if purge else f"kept in {record.directory}"
    click.echo(f"removed {record.id}: port {record.port or '-'} freed, files {kept}"
               + ("" if supervisor else " (supervisord not running)"))
    if record.kind == "preseeded" and not purge and record.directory:
        # A pre-seeded folder would come back at the next boot: mark it, additively.
        _mark_disabled(Path(record.directory))
        click.echo(f"wrote {record.directory}/.maestro-disable so it stays removed (delete it to bring it back)")
    elif record.kind not in ("deploy", "preseeded"):
        click.echo(f"note: {record.id} comes from {record.origin}; remove it there too or it returns at next boot",
                   err=True)


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
    supervisor = _running_supervisor(provisioner)
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
@_ends_its_children
@_one_line_errors
def deploy_from_env(prepare_only: bool, refetch: bool) -> None:
    """Apply pre-seeded folders, the YAML file, SERVICES and SVC_* to the running system."""
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.ops.reconcile import reconcile
    from maestro_runtime.spec.gather import gather_specs

    settings = _settings()
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        report = reconcile(provisioner, gather_specs(settings), refetch=refetch)
        applied = False if prepare_only else _apply(provisioner)
    click.echo(report.summary())
    if not prepare_only and not applied:
        click.echo("note: supervisord is not running; programs start at next boot", err=True)
    if report.failed:
        sys.exit(1)


# ---------------------------------------------------------------- deploy



@click.command("deploy")
@click.option("--repo", help="Source: folder, file:// URL, git URL or archive URL.")
@click.option("--port", help="Port (0 or empty: pick a free one).")
@click.option("--ref", help="Branch, tag or commit (default: the repository's default branch).")
@click.option("--name", help="Service name (default: from the source).")
@click.option("--user", help="UNIX user (default svc_<name>).")
@click.option("--cmd", help="Start command (default: detected).")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Environment for the service.")
@click.option("--yes", "-y", is_flag=True, help="No questions: take the flags and defaults as they are.")
@click.option("--wait", default=20.0, show_default=True, help="Seconds to wait for the service to run.")
@click.option("--allow-system-path", is_flag=True,
              help="Allow a local --repo under /etc, /root, /proc, /run, the runtime's state... (refused by default).")
@click.option("--task", "as_task", is_flag=True, help="A one-shot task (kind: task): runs once, never restarted.")
@click.option("--schedule", help="Cron expression for a task, e.g. '*/5 * * * *'.")
@click.option("--depends-on", "depends_on", multiple=True, metavar="NAME[:started|healthy|completed]",
              help="Start only once NAME meets the condition (default started).")
@_ends_its_children
@_one_line_errors
def deploy(yes: bool, wait: float, env_pairs: tuple[str, ...], allow_system_path: bool, as_task: bool,
           schedule: str | None, depends_on: tuple[str, ...], **given: str | None) -> None:
    """Deploy one service into the running system (asks for what the flags do not say)."""
    from dataclasses import replace

    from maestro_runtime.ops.provision import Assignment, Provisioner
    from maestro_runtime.spec import SpecError, make_spec, parse_env
    from maestro_runtime.spec.naming import default_user, unique_id

    settings = _settings()
    fields = dict(given)
    if not yes:
        fields = _ask(fields)
    try:
        env = parse_env("deploy", dict(_pair(p) for p in env_pairs))
        spec = replace(make_spec("deploy", "deploy", fields), env=env, allow_system_path=allow_system_path)
        from maestro_runtime.spec.tasks import task_fields

        spec = replace(spec, **task_fields("deploy", {"kind": "task" if as_task else None, "schedule": schedule,
                                                      "depends_on": ",".join(depends_on)}))
    except SpecError as exc:
        raise click.ClickException(str(exc)) from exc
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        existing = {r.id: r for r in provisioner.store.all()}
        unknown = sorted(set(spec.depends_on) - set(existing) - {r.name for r in existing.values()})
        if unknown:
            raise click.ClickException(f"deploy: depends_on: unknown service {unknown[0]!r} (see list-services)")
        base = spec.base_name
        program_id = base if base in existing and existing[base].kind == "deploy" else unique_id(base, existing)
        previous = existing.get(program_id)
        user = spec.user or (previous.user if previous else None)
        if not yes and not click.confirm(
            f"Deploy {program_id} from {spec.repo} (ref {spec.ref or 'default branch'})"
            f" as {user or default_user(program_id)}"
            f" on port {spec.port or 'auto'}?", default=True,
        ):
            raise click.Abort()
        spec = replace(spec, origin=f"deploy {program_id}")
        outcome = provisioner.provision(Assignment(spec, program_id, user or default_user(program_id)), refetch=True)
        applied = _apply(provisioner)
    if not outcome.ok:
        raise click.ClickException(outcome.error or "deploy failed")
    record = outcome.record
    assert record is not None
    if record.role == "task":
        when = f"on schedule {record.schedule!r}" if record.schedule else "now (see list-services --kind task)"
        click.echo(f"deployed task {record.id}: runs {when}, user {record.user}, command {record.command!r}"
                   + ("" if applied else " (supervisord not running)"))
        return
    status = _wait_running(settings, record.id, wait) if applied else "not started (supervisord not running)"
    click.echo(f"deployed {record.id}: {status}, user {record.user}, port {record.port}, "
               f"command {record.command!r} ({record.command_reason})")
    click.echo(f"url: http://localhost:{record.port}/")


def _pair(text: str) -> tuple[str, str]:
    try:
        return env_pair(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--env") from exc


def _ask(fields: dict[str, str | None]) -> dict[str, str | None]:
    """Prompt for each field the flags left out, with the default shown."""
    from maestro_runtime.spec.naming import default_user, name_from_repo, sanitize_name

    out = dict(fields)
    if not out.get("repo"):
        out["repo"] = click.prompt("Source (folder, file://, git or archive URL)")
    repo = out["repo"] or ""
    prompts = (
        ("port", "Port (0 = auto)", "0"),
        ("ref", "Git ref", "main"),
        ("name", "Service name", name_from_repo(repo) or "service"),
        ("user", "UNIX user", None),
        ("cmd", "Start command (empty = detect)", ""),
    )
    for key, text, default in prompts:
        if out.get(key) is None:
            if key == "user":
                default = default_user(sanitize_name(out.get("name") or "") or "service")
            out[key] = click.prompt(text, default=default, show_default=bool(default))
    return out


def _wait_running(settings: Settings, program_id: str, timeout: float) -> str:
    supervisor = Supervisor(settings.supervisor_socket)
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            info = supervisor.call("supervisor.getProcessInfo", program_id)
            state = info["statename"]
            if state == "RUNNING" and time.time() - info["start"] < settings.startsecs:
                state = "STARTING"  # programs run with startsecs=0: started once up MAESTRO_STARTSECS
        except Exception:  # not added yet
            state = "unknown"
        if state in ("RUNNING", "FATAL", "STOPPED", "EXITED"):
            break
        time.sleep(0.2)
    return state


# ---------------------------------------------------------------- allow-host


@click.command("allow-host")
@click.argument("service")
@click.argument("host")
@click.option("--save", is_flag=True, help="Keep the host across reboots (default: until the next boot).")
@_one_line_errors
def allow_host(service: str, host: str, save: bool) -> None:
    """Let SERVICE reach HOST (a name or *.domain) through its egress allowlist."""
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.sandbox.netpolicy import NetPolicyError
    from maestro_runtime.sandbox.netpolicy import allow_host as add_host

    settings = _settings()
    provisioner = Provisioner(settings)
    with provisioner.store.lock():
        try:
            name = add_host(settings, service, host, save=save)
        except NetPolicyError as exc:
            raise click.ClickException(f"service {service!r}: host: {exc}") from exc
        record = _find(provisioner.store, service)
        provisioner.activate(record)  # the sandbox report lists the new host
        _apply(provisioner)
    click.echo(f"{record.id} may now reach {name}" + (" (saved)" if save else " (until the next boot)"))


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
        result = exporter.render(gather_specs(_settings(), preseeded=False), options)
    except exporter.ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        click.echo(result.text(), nl=False)
    else:
        for path in exporter.write_files(result, output):
            click.echo(f"wrote {path}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


# ---------------------------------------------------------------- the group


def _ops_commands() -> tuple[click.Command, ...]:
    from maestro_runtime.cli_ops import COMMANDS  # start, stop, restart, logs

    return COMMANDS


class _Maestro(click.Group):
    """The ``maestro`` group; ``sandbox`` is loaded only when used (it is the heaviest import)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "sandbox"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "sandbox":
            from maestro_runtime.sandbox.cli import main as sandbox_main

            return sandbox_main
        return super().get_command(ctx, name)


@click.group(cls=_Maestro)
@click.version_option(package_name="maestro-runtime")
def maestro() -> None:
    """maestro-runtime: many projects in one container, each as its own user under supervisord."""


for _command in (list_services, remove_service, deploy_from_env, deploy, allow_host, export):
    maestro.add_command(_command)
for _command in _ops_commands():
    maestro.add_command(_command)
maestro.add_command(remove_service, "remove-project")
# Issue 14: one-shot tasks (maestro run / maestro cancel).
from maestro_runtime.tasks.cli import cancel_task, run_task  # noqa: E402

maestro.add_command(run_task)
maestro.add_command(cancel_task)
