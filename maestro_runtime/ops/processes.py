"""Procfile process types and the release phase (Heroku semantics).

* ``release:`` runs once after each successful build (new code or new dependencies) and before
  the new version starts, as the service's user with its environment; a failure fails the
  deploy, so the previous version keeps running.
* every other type (``worker``, ``clock``...) becomes a program ``<service>-<type>`` of the same
  user and folder, shown by list-services and removed with the service. ``web`` stays the
  service itself (it gets ``PORT``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from maestro_runtime.sources.buildplan import STAMP_NAME, BuildError, Plan
from maestro_runtime.sources.declared import procfile
from maestro_runtime.state.records import ServiceRecord

NOT_PROCESSES = frozenset({"web", "release"})


def declared(directory: Path) -> tuple[str | None, dict[str, str]]:
    """(release command, {type: command}) from the project's Procfile (pure read)."""
    types = procfile(directory)
    return types.get("release"), {t: c for t, c in types.items() if t not in NOT_PROCESSES}


def process_id(service_id: str, ptype: str) -> str:
    return f"{service_id}-{ptype.lower()}"


def process_records(record: ServiceRecord) -> list[ServiceRecord]:
    """One record per extra process type: same user, folder, env and port variable."""
    return [replace(record, id=process_id(record.id, t), name=process_id(record.id, t), command=command,
                    command_reason=f"detected: Procfile {t}", processes={})
            for t, command in sorted(record.processes.items())]


def run_release(directory: Path, account, command: str, env: dict[str, str], *, settings, policy,
                service_id: str) -> None:
    from maestro_runtime.sources import builds  # the build machinery: list-services never needs it

    opts = builds.BuildOptions.from_settings(settings)
    # The service's own variables (DATABASE_URL...), under the build's fixed HOME/PATH/USER.
    opts = replace(opts, passthrough=tuple(sorted({**dict(opts.passthrough), **env}.items())))
    logfile = builds._log_path(opts, service_id, account)
    plan = Plan("release", (), (("/bin/sh", "-c", command),), Path(account.venv_dir) / STAMP_NAME, ())
    try:
        builds._run_plan(plan, directory, account, policy, opts, logfile)
    except BuildError as exc:
        raise BuildError(str(exc).replace("release build failed", "release phase failed", 1)) from None
