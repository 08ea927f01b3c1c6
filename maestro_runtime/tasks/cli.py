"""``maestro run NAME`` and ``maestro cancel NAME``: ask the task runner, then report what it did."""

from __future__ import annotations

import math
import time

import click

from maestro_runtime.tasks.state import FINISHED, RUNNING, Phase, PhaseStore


def _task(name: str):
    from maestro_runtime.cli.common import command_settings as _settings
    from maestro_runtime.cli.common import find_service as _find
    from maestro_runtime.state.records import RecordStore

    settings = _settings()
    record = _find(RecordStore(settings.records_dir), name)
    if record.role != "task":
        raise click.ClickException(f"service {record.id!r}: not a task (deploy it with kind: task)")
    return settings, record


def _wait(store: PhaseStore, entry_id: str, done, timeout: float) -> Phase | None:
    deadline = time.monotonic() + timeout
    phase = store.load(entry_id)
    while time.monotonic() < deadline:
        phase = store.load(entry_id)
        if phase is not None and done(phase):
            return phase
        time.sleep(0.2)
    return phase


def describe(phase: Phase | None) -> str:
    if phase is None:
        return "unknown"
    text = phase.phase
    if phase.exit_code is not None:
        text += f" (exit {phase.exit_code})"
    if phase.duration is not None:
        text += f" in {phase.duration:.1f}s"
    return text + (f": {phase.reason}" if phase.reason else "")


@click.command("run")
@click.argument("name")
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=None,
              help="Seconds to wait for the run to start (default 5), or with --until-done for it to end "
                   "(default: as long as it takes).")
@click.option("--until-done", is_flag=True, help="Wait until the run ends and exit with its exit code.")
def run_task(name: str, wait: float | None, until_done: bool) -> None:
    """Run task NAME again now (once its dependencies are met)."""
    settings, record = _task(name)
    store = PhaseStore(settings.state_dir / "tasks")
    before = store.load(record.id)
    if before is not None and before.phase == RUNNING:
        raise click.ClickException(f"task {record.id!r}: already running since "
                                   f"{time.strftime('%H:%M:%S', time.localtime(before.started or 0))}")
    runs = before.runs if before else 0
    store.request(record.id, "run")
    if not until_done:
        phase = _wait(store, record.id, lambda p: p.runs > runs or p.phase in ("waiting", "failed"),
                      5.0 if wait is None else wait)
        click.echo(f"{record.id}: {describe(phase)}")
        return

    def ended(p: Phase) -> bool:  # this request's end: a run, or a dependency that failed (no run)
        return p.phase in FINISHED and (before is None or p.runs > runs or p.ended != before.ended)

    phase = _wait(store, record.id, ended, math.inf if wait is None else wait)
    if phase is None or not ended(phase):
        # A script's `maestro run x --until-done && next-step` must not go on while x still runs.
        now = phase.phase if phase and phase.phase not in FINISHED else "pending"
        raise click.ClickException(f"{record.id}: still {now} after {wait:g}s (maestro logs {record.id} -f follows it)")
    click.echo(f"{record.id}: {describe(phase)}")
    if phase.phase != "succeeded":  # failed or cancelled: never a success, with or without an exit code
        raise SystemExit(phase.exit_code if phase.exit_code and 0 < phase.exit_code < 256 else 1)


@click.command("cancel")
@click.argument("name")
@click.option("--wait", "wait", default=15.0, show_default=True, help="Seconds to wait for it to stop.")
def cancel_task(name: str, wait: float) -> None:
    """Stop task NAME's run gracefully (TERM, then KILL after stopwaitsecs), or its pending run."""
    settings, record = _task(name)
    store = PhaseStore(settings.state_dir / "tasks")
    before = store.load(record.id)
    if before is None or before.phase in FINISHED:
        click.echo(f"{record.id}: not running ({describe(before)})")
        return
    store.request(record.id, "cancel")
    phase = _wait(store, record.id, lambda p: p.phase in FINISHED, wait)
    click.echo(f"{record.id}: {describe(phase)}")
