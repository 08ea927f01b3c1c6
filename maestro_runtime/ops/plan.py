"""The plan for one service (pure): from what provisioning found to everything there is to write.

Provisioning fetches, builds and detects (``ops/provision.py``); what it found becomes a frozen
record here (:func:`service_record`). :class:`~maestro_runtime.ops.provision.Provisioner`'s
``activate`` then gathers the :class:`Facts` only the machine knows (the sandbox probe, the
cgroup layout, the network decision, the operator's ``maestro stop``) and :func:`plan_service`
turns record and facts into a :class:`ServicePlan`: the record to save (with its sandbox report
and program revision), each program's launch script and program file, the probe script and the
cgroup folders with their limit values. Nothing here reads or writes a file; applying the plan
is the provisioner's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from maestro_runtime.engine.launch import render_launch_script
from maestro_runtime.engine.programs import ProgramText, script_path
from maestro_runtime.engine.supervisord import ProgramOptions, render_program
from maestro_runtime.ops.accounts import Account
from maestro_runtime.ops.processes import process_records
from maestro_runtime.sandbox import cgroups
from maestro_runtime.sandbox.policy import LaunchPlan, SandboxConfig, SandboxFacts, launch_plan
from maestro_runtime.spec import ServiceSpec
from maestro_runtime.state.records import READY, ServiceRecord
from maestro_runtime.tasks.hooks import record_fields, task_program_options

IDENTITY_DEGRADED = "identity: runs as root without capabilities (no CAP_SETUID/CAP_CHOWN)"


# ------------------------------------------------------------ the record


@dataclass(frozen=True)
class Found:
    """What provisioning found for one service: its code, account, port and command."""

    directory: Path
    source: str  # redacted
    revision: str
    account: Account
    has_venv: bool  # the account's venv folder exists (a Python build made it)
    port: int
    command: str
    command_reason: str
    env: dict[str, str]
    processes: dict[str, str]  # Procfile types other than web/release, the spec's winning
    workspace: dict[str, str] | None = None


def service_record(spec: ServiceSpec, service_id: str, found: Found, *, identity_degraded: bool,
                   now: float) -> ServiceRecord:
    """The ready record of a provisioned service."""
    account = found.account
    return ServiceRecord(
        id=service_id, name=spec.name or service_id, kind=spec.kind, origin=spec.origin, source=found.source,
        ref=spec.ref if spec.repo else None, directory=str(found.directory), user=account.user,
        uid=account.uid, gid=account.gid, home=str(account.home), tmp_dir=str(account.tmp_dir),
        cache_dir=str(account.cache_dir), venv_dir=str(account.venv_dir) if found.has_venv else "",
        # Sorted, as the record's JSON keeps it: the same service read back renders the same
        # launch script (a failed redeploy's previous version is not "changed", so not restarted).
        port=found.port, command=found.command, command_reason=found.command_reason,
        env=dict(sorted(found.env.items())),
        processes=found.processes, health=spec.health.as_record(), policy=spec.policy.as_record(),
        autostart=spec.autostart, keep=list(spec.keep), allow_hosts=list(spec.allow_hosts),
        limits=spec.limits.overrides(), state=READY, error=None, updated=now, revision=found.revision,
        degraded=[IDENTITY_DEGRADED] if identity_degraded else [],
        **record_fields(spec, found.workspace),
    )


# ------------------------------------------------------------ the programs


@dataclass(frozen=True)
class Facts:
    """What the plan needs that only the machine knows (gathered by ``Provisioner.activate``)."""

    sandbox: SandboxConfig
    host: SandboxFacts
    launch_dir: Path
    stopwaitsecs: int
    stopped: bool = False  # the operator's `maestro stop` holds across boots
    # Per program id: the limit kinds whose cgroup the kernel refused (learned by applying a plan).
    refused: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServicePlan:
    record: ServiceRecord  # to save: with the sandbox report and the program revision
    program: ProgramText  # the service's own program
    processes: tuple[ProgramText, ...]  # one program `<service>-<type>` per further process type
    probe: str | None  # the exec health probe's script; None: no probe script
    groups: tuple[cgroups.GroupPlan, ...]  # per program: cgroup folders and limit values to write


def program_revision(script: str, record: ServiceRecord) -> str:
    """Changes whenever the launch script or the fetched code does, so supervisord restarts it."""
    return hashlib.sha256(f"{script}\0{record.revision}".encode()).hexdigest()[:16]


def launch_text(record: ServiceRecord, launch: LaunchPlan) -> str:
    return render_launch_script(record, wrapper=launch.wrapper, cgroup_procs=launch.cgroup_procs)


def program_options(record: ServiceRecord, facts: Facts) -> ProgramOptions:
    """The controller restarts, with backoff (control/supervision.py); supervisord only runs.
    An operator's `maestro stop` holds across boots: the program then does not autostart."""
    options = ProgramOptions(autostart=record.autostart and not facts.stopped, startsecs=0, startretries=0,
                             stopwaitsecs=facts.stopwaitsecs)
    return task_program_options(record, options)


def _launch(record: ServiceRecord, facts: Facts, group: str | None = None) -> LaunchPlan:
    name = group or record.id
    return launch_plan(facts.sandbox, facts.host, record, facts.refused.get(name, frozenset()), group=name)


def _program(record: ServiceRecord, script: str, options: ProgramOptions, facts: Facts) -> ProgramText:
    conf = render_program(record.id, script_path(facts.launch_dir, record.id), options,
                          revision=program_revision(script, record))
    return ProgramText(record.id, script, conf)


def plan_service(record: ServiceRecord, facts: Facts) -> ServicePlan:
    """Everything to write for ``record`` under ``facts``. Raises SandboxError (bad limits) and
    RenderError (a value supervisord's config cannot hold) before anything is written."""
    launch = _launch(record, facts)
    script = launch_text(record, launch)
    record = replace(record, sandbox=launch.report, program_revision=program_revision(script, record))
    options = program_options(record, facts)
    program = _program(record, script, options, facts)
    health = record.health.get("command") if record.health.get("kind") == "exec" else None
    # An exec health probe runs through the same launch chain: same sandbox, same user.
    probe = launch_text(replace(record, command=str(health)), launch) if health else None
    extras, groups = [], [launch.groups]
    for extra in process_records(record):
        # In the service's own cgroup: its limits are the service's, whatever number of process
        # types its Procfile declares (a cgroup each gave every type the whole memory and pids).
        extra_launch = _launch(extra, facts, group=record.id)
        extras.append(_program(extra, launch_text(extra, extra_launch), options, facts))
    return ServicePlan(record=record, program=program, processes=tuple(extras), probe=probe,
                       groups=tuple(g for g in groups if g is not None))
