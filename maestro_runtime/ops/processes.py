"""Procfile process types and the release phase (Heroku semantics).

* ``release:`` runs once after each successful build (new code or new dependencies) and before
  the new version starts, as the service's user with its environment; a failure fails the
  deploy, so the previous version keeps running.
* every other type (``worker``, ``clock``...) becomes a program ``<service>-<type>`` of the same
  user and folder, shown by list-services and removed with the service. ``web`` stays the
  service itself (it gets ``PORT``).
* a program name is one service's or one process type's, never both: whoever comes later
  (in activation order; a service with a record is there already) fails with both named
  (:func:`clash`, pure; :func:`refuse_clash` reads who holds what).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from maestro_runtime.sources.buildplan import STAMP_NAME, BuildError, Plan
from maestro_runtime.sources.declared import procfile
from maestro_runtime.sources.projectfiles import ProjectFiles
from maestro_runtime.spec.model import SpecError
from maestro_runtime.spec.naming import PROGRAM_ID_RE
from maestro_runtime.state.records import ServiceRecord, atomic_write

NOT_PROCESSES = frozenset({"web", "release"})
# Each type is a program of supervisord's, polled by the controller, restarted with backoff:
# a Procfile of thousands of types was as many programs for root to carry.
MAX_PROCESS_TYPES = 32


def declared(project: Path | ProjectFiles) -> tuple[str | None, dict[str, str]]:
    """(release command, {type: command}) from the project's Procfile (pure read)."""
    types = procfile(project)
    return types.get("release"), {t: c for t, c in types.items() if t not in NOT_PROCESSES}


def process_id(service_id: str, ptype: str) -> str:
    return f"{service_id}-{ptype.lower()}"


def process_records(record: ServiceRecord) -> list[ServiceRecord]:
    """One record per extra process type: same user, folder, env and port variable."""
    return [replace(record, id=process_id(record.id, t), name=process_id(record.id, t), command=command,
                    command_reason=f"detected: Procfile {t}", processes={})
            for t, command in sorted(record.processes.items())]


def clash(service_id: str, types: Iterable[str], holders: Mapping[str, str]) -> tuple[str, str] | None:
    """(field, reason) when the service's programs would replace another's, else None (pure).
    ``holders``: program name -> who has it (``service web-worker``, ``the worker process type of
    service web``), other services only."""
    if service_id in holders:
        return "name", (f"{service_id} is already {holders[service_id]} (a process type runs as "
                        "<service>-<type>): rename this service or that process type")
    types = list(types)
    if len(types) > MAX_PROCESS_TYPES:
        return "processes", f"{len(types)} process types (Procfile or processes:); at most {MAX_PROCESS_TYPES}"
    seen: dict[str, str] = {}
    for ptype in sorted(types):
        program = process_id(service_id, ptype)
        if not PROGRAM_ID_RE.match(program):
            return "processes", f"process type {ptype} would be program {program!r}, not a valid name"
        if program in holders:
            return "processes", (f"process type {ptype} would be program {program}, which is already "
                                 f"{holders[program]}: rename one of them")
        if program in seen:
            return "processes", f"process types {seen[program]} and {ptype} would both be program {program}"
        seen[program] = ptype
    return None


def _names(folder: Path, suffix: str) -> set[str]:
    """File names with ``suffix`` in ``folder``, without it (a listing: this runs at every activation)."""
    try:
        return {n[: -len(suffix)] for n in os.listdir(folder) if n.endswith(suffix)}
    except FileNotFoundError:
        return set()


def holders(service_id: str, programs, record_ids: Iterable[str]) -> tuple[dict[str, str], list[str] | None]:
    """Who holds which program name now, besides ``service_id``; and, when the service's list of
    process programs is one left from an earlier boot (the service has no program yet: the
    program folder is emptied at boot), that list without what others hold now (else None).

    A program is held by a service with a record, or by an active program; an active service's
    process types are listed in its ``<id>.types``, current since it was activated."""
    active = _names(programs.conf_dir, ".conf")
    held: dict[str, str] = {}
    for owner in _names(programs.launch_dir, ".types"):
        if owner != service_id and owner in active:
            for program in programs.process_ids(owner):
                held[program] = f"the {program[len(owner) + 1:]} process type of service {owner}"
    names = {*record_ids, *active} - {service_id}
    listed = programs.process_ids(service_id)
    own, stale = set(listed), None
    if service_id not in active:
        own = {p for p in listed if p not in held and p not in names}
        stale = sorted(own) if own != set(listed) else None
    for name in names - own:
        held.setdefault(name, f"service {name}")
    return held, stale


def refuse_clash(record: ServiceRecord, programs, store, roster_ids: Iterable[str] = ()) -> None:
    """Before a service's programs are written: SpecError (one line, both named) when one of them
    is another's. ``roster_ids``, every service of this boot, are taken before any is provisioned:
    a service's name wins over another's process type whatever order they are provisioned in.
    A list of process programs left from an earlier boot loses what others hold
    now, so removing this service (as its failure does) never removes theirs."""
    if not record.processes and not _names(programs.launch_dir, ".types"):
        return  # no process type anywhere (the common case): no name can clash
    problem = clash(record.id, record.processes, forget_stale(record.id, programs, store, roster_ids))
    if problem:
        raise SpecError(record.origin, *problem)


def held_by_others(service_id: str, programs, store, roster_ids: Iterable[str] = ()) -> dict[str, str]:
    """Who holds which program name now, besides ``service_id`` (:func:`holders`): what removing
    it spares, as a service that failed before its activation keeps last boot's list."""
    return holders(service_id, programs, {*_names(store.folder, ".json"), *roster_ids})[0]


def forget_stale(service_id: str, programs, store, roster_ids: Iterable[str] = ()) -> dict[str, str]:
    """Drop from ``service_id``'s list of process programs, when it is one left from an earlier
    boot, what others hold now (rewriting or removing ``<id>.types``); returns who holds what.
    Before a service is activated: a service that failed before its activation keeps last
    boot's list, and its programs must not replace another's."""
    found, stale = holders(service_id, programs, {*_names(store.folder, ".json"), *roster_ids})
    if stale is not None:
        types_file = programs.launch_dir / f"{service_id}.types"
        if stale:
            atomic_write(types_file, "".join(f"{p}\n" for p in stale), mode=0o600)
        else:
            types_file.unlink(missing_ok=True)
    return found


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
        raise BuildError(str(exc).replace("release build failed", "release phase failed", 1),
                         killed=exc.killed) from None
