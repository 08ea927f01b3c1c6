"""What every command shares: settings (exit 2 on bad ones), one-line errors, no orphans, finding a service."""


from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from maestro_runtime.engine.supervisord import Supervisor, SupervisorUnavailable
from maestro_runtime.log_format import setup_logging, terminal_safe_text
from maestro_runtime.settings import Settings, load_or_exit
from maestro_runtime.state.records import RecordError, RecordStore, ServiceRecord

log = logging.getLogger("maestro")


def command_settings() -> Settings:
    settings = load_or_exit(Path(sys.argv[0]).name or "maestro")  # bad settings: exit 2
    # The runtime sets the modes that matter itself; a caller's stricter umask (the README's agent
    # example runs `umask 077` before deploy-from-env) made the projects folder root-only, so a
    # service without a sandbox could not even stat its own folder (git: "failed to stat").
    os.umask(0o022)
    setup_logging(settings.log_level, settings.log_timestamps)
    return settings


def one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """What goes wrong on the way (a full or read-only state disk, an unusable ledger, a
    supervisord that stops answering) is one line naming what and where, exit 1: never a
    traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            one_line(*args, **kwargs)
        except click.ClickException as exc:  # may quote a build's last lines: no escape reaches the terminal
            exc.message = terminal_safe_text(exc.message)
            raise

    def one_line(*args: Any, **kwargs: Any) -> None:
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


def ends_its_children(command: Callable[..., None]) -> Callable[..., None]:
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


def running_supervisor(provisioner) -> Supervisor | None:
    """Rebuild the firewall for the current services; then the running supervisord, if any.
    A firewall this container cannot have (no NET_ADMIN: Docker's and podman's default) was said
    at boot and shows in list-services: each deploy, remove and allow-host does not say it again."""
    standing = set(provisioner.policy.firewall().skipped())
    for problem in provisioner.policy.sync_firewall(provisioner.store.all()):
        (log.debug if problem in standing else log.warning)("%s", problem)
    supervisor = Supervisor(provisioner.settings.supervisor_socket)
    return supervisor if supervisor.available() else None


def apply_changes(provisioner) -> bool:
    """Tell a running supervisord about changed program files; False when it is not running."""
    supervisor = running_supervisor(provisioner)
    if supervisor:
        supervisor.update()
    return supervisor is not None


def find_service(store: RecordStore, name: str) -> ServiceRecord:
    """The service's record (RecordError when its file is there but unusable)."""
    record = store.load(name) if name and "/" not in name and not name.startswith(".") else None
    if record is None:
        matches = [r for r in store.all() if r.name == name]
        record = matches[0] if len(matches) == 1 else None
    if record is None:
        raise click.ClickException(f"service {name!r}: no such service (see list-services)")
    return record


