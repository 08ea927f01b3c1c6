"""Day-to-day operator commands (click): start, stop, restart, logs. Thin: parse, call, print."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from maestro_runtime.engine.supervisord import Supervisor, SupervisorUnavailable


def _settings():
    from maestro_runtime.cli.common import command_settings as settings

    return settings()


def _targets(store, names: tuple[str, ...], everything: bool) -> list:
    from maestro_runtime.cli.common import find_service as _find

    if everything == bool(names):
        raise click.UsageError("name one or more services, or give --all (not both)")
    if everything:  # tasks run through the task runner (maestro run/cancel), never behind its back
        return [r for r in store.all() if r.ready and r.role != "task"]
    records = [_find(store, n) for n in names]
    for r in records:
        if r.role == "task":
            # supervisord would run it with no phase, exit code, commits or dependencies recorded
            # (and, for an agent, another paid run): refused before anything is touched.
            raise click.ClickException(f"{r.id} is a task: maestro run {r.id} runs it again, "
                                       f"maestro cancel {r.id} stops its run")
    return [r for r in records if r.ready]


def _lifecycle(action: str, names: tuple[str, ...], everything: bool) -> None:
    from maestro_runtime.control.runstate import RunStateStore
    from maestro_runtime.ops import lifecycle
    from maestro_runtime.ops.inventory import programs_of
    from maestro_runtime.state.records import RecordStore

    settings = _settings()
    records = _targets(RecordStore(settings.records_dir), names, everything)
    supervisor = Supervisor(settings.supervisor_socket)
    if not supervisor.available():
        raise click.ClickException("supervisord is not running (is the runtime up?)")
    runs = RunStateStore(settings.state_dir)
    do = getattr(lifecycle, action)
    failed = False
    for record in records:
        try:
            extras = [x.id for x in programs_of(record)[1:]]  # its Procfile types go with it
            outcome = do(supervisor, runs, record.id, settings.stopwaitsecs + 5.0, extras)
        except SupervisorUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            outcome = lifecycle.Outcome(record.id, False, f"{type(exc).__name__}: {exc}")
        failed |= not outcome.ok
        click.echo(f"{outcome.service}: {outcome.message}", err=not outcome.ok)
    if failed:
        sys.exit(1)


@click.command("start")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every service (not tasks).")
def start(names: tuple[str, ...], everything: bool) -> None:
    """Start services, with their Procfile process types (and forget an earlier maestro stop)."""
    _lifecycle("start", names, everything)


@click.command("stop")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every service (not tasks).")
def stop(names: tuple[str, ...], everything: bool) -> None:
    """Stop services and their process types gracefully (TERM, then KILL after stopwaitsecs); they stay
    stopped across restarts."""
    _lifecycle("stop", names, everything)


@click.command("restart")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every service (not tasks).")
def restart(names: tuple[str, ...], everything: bool) -> None:
    """Restart services (with their process types), one at a time; no other service is touched."""
    _lifecycle("restart", names, everything)


@click.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", "last", type=click.IntRange(min=0), default=100, show_default=True,
              help="How many of the last lines.")
@click.option("--since", help="Only lines newer than this (10m, 2h, 30s); not with --build.")
@click.option("--build", is_flag=True, help="The dependency build's log instead (also of a failed build).")
def logs(name: str, follow: bool, last: int, since: str | None, build: bool) -> None:
    """Print a service's output (running, exited or failed), or its build log with --build."""
    from maestro_runtime.cli.common import find_service as _find
    from maestro_runtime.log_format import terminal_safe
    from maestro_runtime.ops import logs as logfiles
    from maestro_runtime.spec.durations import parse_duration
    from maestro_runtime.state.records import RecordStore

    if since and build:  # a build log's lines carry no time to compare
        raise click.UsageError("--since does not apply to --build (the build log's lines have no time)")
    settings = _settings()
    record = _find(RecordStore(settings.records_dir), name)
    stamp = None
    if since:
        try:
            stamp = logfiles.since_stamp(parse_duration(since))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    if build:
        path = settings.build_log(record.id)
        paths, show = [path], (lambda line: line)
        if not path.exists():
            raise click.ClickException(f"service {record.id}: no build log (nothing was built for it)")
    else:
        paths = logfiles.log_files(settings.service_log_dir, record.id)
        show = logfiles.display
        if not any(p.exists() for p in paths) and not follow:
            click.echo(f"note: {record.id} has written no output yet", err=True)
    # What the service (or its build) wrote reaches the operator's terminal with no escape it could act on.
    for line in logfiles.select(logfiles.read_lines(paths), last=last, since=stamp):
        click.echo(terminal_safe(show(line)))
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            logfiles.follow(Path(paths[-1]), lambda line: click.echo(terminal_safe(show(line))))


COMMANDS = (start, stop, restart, logs)
