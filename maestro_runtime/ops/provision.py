"""The pipeline for one service: spec -> account -> source -> build -> port -> command -> program.

``assign_ids`` is pure; :class:`Provisioner` is the imperative shell that
performs each step and turns any failure into a recorded, logged outcome,
so one bad service never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.control.runstate import RunStateStore
from maestro_runtime.engine.supervisord import (
    ProgramOptions,
    RenderError,
    remove_program,
    render_program,
    write_program,
)
from maestro_runtime.ops import accounts
from maestro_runtime.sandbox import policy as sandbox
from maestro_runtime.settings import Settings
from maestro_runtime.sources import builds, detect
from maestro_runtime.sources import fetch as sources
from maestro_runtime.sources.redact import redact
from maestro_runtime.spec import ServiceSpec, SpecError
from maestro_runtime.spec.naming import default_user, reserved, unique_id
from maestro_runtime.state.ports import PortError, PortLedger
from maestro_runtime.state.records import FAILED, READY, RecordStore, ServiceRecord, atomic_write

log = logging.getLogger("maestro")

IDENTITY_WARNING = (
    "per-project users are NOT enforced: this container lacks {caps}; services run as root without "
    "capabilities. Grant --cap-add CHOWN --cap-add SETUID --cap-add SETGID --cap-add DAC_OVERRIDE "
    "--cap-add FOWNER --cap-add KILL to give each project its own user"
)
# Everything a single service's failure can raise; anything else is a bug and propagates.
PROVISION_ERRORS = (
    SpecError, PortError, RenderError, OSError,
    accounts.AccountError, sources.SourceError, builds.BuildError, sandbox.SandboxError,
)


IDENTITY_FILES = (".maestro-name", ".maestro-user")


@dataclass(frozen=True)
class Assignment:
    spec: ServiceSpec
    id: str
    user: str


@dataclass(frozen=True)
class Outcome:
    id: str
    ok: bool
    error: str | None = None
    changed: bool = False  # the program's config changed: supervisord must apply it
    record: ServiceRecord | None = None


@dataclass(frozen=True)
class Code:
    """A service's code on disk: where, from where, which fetch, and what it replaced."""

    directory: Path
    source: str  # redacted
    revision: str
    fetched: bool = False
    previous_dir: Path | None = None  # kept until the build succeeds


def assign_ids(specs: Iterable[ServiceSpec], reserved: Iterable[str] = ()) -> list[Assignment]:
    """Unique program ids in input order (``web``, ``web-1``...); the same input gives the same ids."""
    taken = set(reserved)
    out = []
    for spec in specs:
        program_id = unique_id(spec.base_name, taken)
        taken.add(program_id)
        out.append(Assignment(spec, program_id, spec.user or default_user(program_id)))
    return out


def holder_key(a: Assignment) -> str:
    """Whom an account belongs to: a pre-seeded folder (its id may move), else the service id."""
    return a.spec.origin if a.spec.kind == "preseeded" else f"service {a.id}"


def program_revision(script: str, record: ServiceRecord) -> str:
    """Changes whenever the launch script or the fetched code does, so supervisord restarts it."""
    return hashlib.sha256(f"{script}\0{record.revision}".encode()).hexdigest()[:16]


class Provisioner:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = RecordStore(settings.records_dir)
        self.ledger = PortLedger(settings.port_ledger)
        self.launch_dir = settings.runtime_dir / "launch"
        self.policy = sandbox.SandboxPolicy.from_settings(settings)
        self.missing_caps = accounts.missing_identity_caps()
        self.accounts = accounts.AccountRegistry(
            settings.state_dir / "accounts.json", prefix=settings.accounts_prefix,
            allowed=accounts.allowed_users(settings.environ.get("MAESTRO_ALLOWED_USERS", "")))

    def boot_warnings(self) -> list[str]:
        warnings = sandbox.boot_report(self.policy.config)
        if self.identity_degraded:
            warnings.append(IDENTITY_WARNING.format(caps=", ".join(self.missing_caps)))
        return warnings

    @property
    def identity_degraded(self) -> bool:
        return bool({"SETUID", "SETGID", "CHOWN"} & set(self.missing_caps))

    # ------------------------------------------------------------ one service

    def provision(self, assignment: Assignment, *, refetch: bool = False) -> Outcome:
        previous = self.store.load(assignment.id)
        try:
            record = self._provision(assignment, previous, refetch)
            changed = self.activate(record)
        except PROVISION_ERRORS as exc:
            return self._fail(assignment, previous, exc)
        except Exception as exc:  # a bug here must not stop the other services: say so loudly
            log.exception("service %s: unexpected error while provisioning", assignment.id)
            return self._fail(assignment, previous, RuntimeError(f"internal error: {exc!r}"))
        return Outcome(record.id, True, changed=changed, record=record)

    def reactivate(self, record: ServiceRecord) -> Outcome:
        """Render a service that needs no provisioning (deployed at run time) for this boot."""
        try:
            return Outcome(record.id, True, changed=self.activate(record), record=record)
        except PROVISION_ERRORS as exc:
            failed = replace(record, state=FAILED, error=f"{record.origin}: {exc}", updated=time.time())
            self.store.save(failed)
            self.deactivate(record.id)
            log.error("service %s: %s", record.id, failed.error)
            return Outcome(record.id, False, error=failed.error, record=failed)

    def _provision(self, a: Assignment, previous: ServiceRecord | None, refetch: bool) -> ServiceRecord:
        spec = a.spec
        settings = self.settings
        if reserved(a.id):
            raise SpecError(spec.origin, "name", f"{a.id!r} is reserved for maestro-runtime's own programs "
                                                 "(names starting with maestro-); choose another name")
        self.accounts.admit(a.user, holder_key(a), explicit=spec.user is not None)
        if self.identity_degraded:
            account = accounts.shared_account(a.user, settings.home_root)
        else:
            account = accounts.ensure_account(a.user, settings.home_root, settings.accounts_prefix)
        code = self._source(a, previous, refetch)
        directory = code.directory
        try:
            if not self.identity_degraded:
                # Root-owned identity files stay root's: only then are they honoured (spec.py).
                leave = IDENTITY_FILES if spec.kind == "preseeded" else ()
                for skipped in accounts.own_tree(directory, account, leave=leave):
                    log.warning("service %s: %s left as it is (not given to %s)", a.id, skipped, account.user)
            builds.build(directory, account, settings=settings, policy=self.policy, service_id=a.id)
        except BaseException:
            if code.fetched:  # the previous version (or nothing) comes back: never a half-built service
                sources.roll_back(directory, code.previous_dir, spec.keep)
            raise
        sources.finish(code.previous_dir)
        port = self.ledger.assign(a.id, spec.port, settings.port_range)
        if spec.kind == "preseeded" and spec.port is None:
            self._remember_port(directory, port, account)
        if spec.cmd:
            command, reason = spec.cmd, "explicit"
        else:
            found = detect.detect_command(directory, account.venv_dir if account.venv_dir.is_dir() else None)
            command, reason = found.command, found.reason
        return ServiceRecord(
            id=a.id, name=spec.name or a.id, kind=spec.kind, origin=spec.origin, source=code.source,
            ref=spec.ref if spec.repo else None, directory=str(directory), user=account.user,
            uid=account.uid, gid=account.gid, home=str(account.home), tmp_dir=str(account.tmp_dir),
            cache_dir=str(account.cache_dir),
            venv_dir=str(account.venv_dir) if account.venv_dir.is_dir() else "",
            port=port, command=command, command_reason=reason, env=dict(spec.env),
            health=spec.health.as_record(), policy=spec.policy.as_record(), autostart=spec.autostart,
            keep=list(spec.keep), allow_hosts=list(spec.allow_hosts),
            limits={k: v for k, v in spec.limits.__dict__.items() if v is not None},
            state=READY, error=None, updated=time.time(), revision=code.revision,
            degraded=["identity: runs as root without capabilities (no CAP_SETUID/CAP_CHOWN)"]
            if self.identity_degraded else [],
        )

    def _source(self, a: Assignment, previous: ServiceRecord | None, refetch: bool) -> Code:
        """Where the service's code is. A pre-seeded folder is used in place; a source is fetched
        when new, changed, missing or asked for, and swapped in with the previous version kept."""
        spec = a.spec
        if spec.directory is not None:
            return Code(spec.directory, str(spec.directory), "")
        assert spec.repo is not None
        self._check_system_path(spec)
        directory, source = self.settings.projects_dir / a.id, sources.redact(spec.repo)
        stale = previous is None or previous.source != source or previous.ref != spec.ref
        if not (refetch or stale or not directory.is_dir()):
            return Code(directory, source, previous.revision if previous else "")
        staging = sources.stage(spec.repo, spec.ref, directory, settings=self.settings, sha256=spec.sha256)
        previous_dir = sources.swap_in(staging, directory, spec.keep)
        return Code(directory, source, f"{time.time():.6f}", fetched=True, previous_dir=previous_dir)

    def _check_system_path(self, spec: ServiceSpec) -> None:
        """A local repo under /etc, /root, the runtime's own state... only on the operator's say-so."""
        env = self.settings.environ
        if spec.allow_system_path or env.get("MAESTRO_ALLOW_SYSTEM_PATHS", "").strip().lower() in ("1", "true", "yes"):
            return
        s = self.settings
        protected = [s.state_dir, s.runtime_dir, s.home_root, *([s.accounts_prefix] if s.accounts_prefix else [])]
        roots = [Path(r) for r in env.get("MAESTRO_LOCAL_SOURCE_ROOTS", "").replace(",", " ").split()]
        problem = sources.system_path_problem(spec.repo or "", protected, roots)
        if problem:
            raise SpecError(spec.origin, "repo", f"{problem}: refused (deploy --allow-system-path, YAML "
                                                 "allow_system_path: true or MAESTRO_ALLOW_SYSTEM_PATHS=1 to allow)")

    def _remember_port(self, directory: Path, port: int, account: accounts.Account) -> None:
        """Write .maestro-port into a pre-seeded folder, but never over the user's own file."""
        try:
            with safefs.opened_dir(directory, under=safefs.trusted_parent(directory)) as fd:
                safefs.create_at(fd, ".maestro-port", f"{port}\n".encode(), uid=account.uid, gid=account.gid)
        except safefs.UnsafeFile as exc:
            raise accounts.AccountError(str(exc)) from None

    def _fail(self, a: Assignment, previous: ServiceRecord | None, exc: BaseException) -> Outcome:
        error = redact(str(exc) if isinstance(exc, SpecError) else f"{a.spec.origin}: {exc}")
        if previous is not None and previous.ready and previous.origin == a.spec.origin:
            # A failed redeploy leaves the previous version running, with the error visible.
            kept = self.reactivate(replace(previous, error=error, updated=time.time()))
            if kept.ok:
                log.error("service %s: %s (previous version kept running)", a.id, error)
                return Outcome(a.id, False, error=error, record=kept.record)
        failed = ServiceRecord(
            id=a.id, name=a.spec.name or a.id, kind=a.spec.kind, origin=a.spec.origin,
            source=sources.redact(a.spec.repo) if a.spec.repo else str(a.spec.directory),
            directory="", user=a.user, port=0, state=FAILED, error=error, updated=time.time(),
        )
        self.store.save(failed)
        self.deactivate(a.id)
        log.error("service %s: %s", a.id, error)
        return Outcome(a.id, False, error=error, record=failed)

    def record_invalid(self, service_id: str, error: SpecError) -> None:
        """A spec that failed validation: a failed record, never a program."""
        previous = self.store.load(service_id)
        if previous is not None and previous.ready and previous.origin == error.origin:
            self._fail(Assignment(ServiceSpec(origin=error.origin, kind=previous.kind), service_id,
                                  previous.user), previous, error)
            return
        self.deactivate(service_id)
        kind = "preseeded" if error.origin.startswith("pre-seeded") else "env"
        self.store.save(ServiceRecord(
            id=service_id, name=service_id, kind=kind, origin=error.origin, source="", directory="",
            user="", port=0, state=FAILED, error=str(error), updated=time.time(),
        ))

    # ------------------------------------------------------------ supervisord programs

    def activate(self, record: ServiceRecord) -> bool:
        """Plan the sandbox, save the record, write the launch script and program file.
        True when supervisord must apply a change."""
        plan = self.policy.plan(record)
        record.sandbox = plan.report
        self.store.save(record)
        script_text = sandbox_script(record, plan)
        script = self.launch_dir / f"{record.id}.sh"
        atomic_write(script, script_text, mode=0o700)
        self._write_probe_script(record, plan)
        # The controller restarts, with backoff (control/supervision.py); supervisord only runs.
        # An operator's `maestro stop` holds across boots: the program then does not autostart.
        stopped = RunStateStore(self.settings.state_dir).stopped(record.id)
        options = ProgramOptions(
            autostart=record.autostart and not stopped,
            startsecs=0,
            startretries=0,
            stopwaitsecs=self.settings.stopwaitsecs,
        )
        text = render_program(record.id, script, options, revision=program_revision(script_text, record))
        return write_program(self.settings.supervisor_conf_dir, record.id, text)

    def _write_probe_script(self, record: ServiceRecord, plan: sandbox.LaunchPlan) -> None:
        """An exec health probe runs through the same launch chain: same sandbox, same user."""
        path = self.launch_dir / f"{record.id}.probe.sh"
        command = record.health.get("command") if record.health.get("kind") == "exec" else None
        if command:
            atomic_write(path, sandbox_script(replace(record, command=str(command)), plan), mode=0o700)
        else:
            path.unlink(missing_ok=True)

    def deactivate(self, service_id: str) -> None:
        remove_program(self.settings.supervisor_conf_dir, service_id)
        (self.launch_dir / f"{service_id}.sh").unlink(missing_ok=True)
        (self.launch_dir / f"{service_id}.probe.sh").unlink(missing_ok=True)

    def unregister(self, record: ServiceRecord) -> None:
        """Forget the service: program, launch script, port, record and run state. Files (and logs) stay."""
        self.deactivate(record.id)
        self.ledger.release(record.id)
        self.store.delete(record.id)
        RunStateStore(self.settings.state_dir).forget(record.id)  # a new service of that name starts afresh

    def cleanup(self, record: ServiceRecord, *, purge: bool, delete_user: bool) -> None:
        """After the service has stopped: its cgroups and allow-host additions go; its files and
        account only when asked."""
        self.policy.forget(record)
        if purge and record.directory:
            _purge(Path(record.directory))
        deletable = delete_user and self.accounts.created(record.user)
        if delete_user and not deletable:
            log.warning("user %s was not created by maestro-runtime: kept", record.user)
        if deletable and not any(r.user == record.user for r in self.store.all()):
            accounts.delete_account(record.user, self.settings.accounts_prefix)
            self.accounts.forget(record.user)
            if purge and record.home:
                _purge(Path(record.home))
        elif purge and record.home:
            # The account stays (maybe shared): remove only this service's per-project dirs.
            for sub in (".maestro", ".cache"):
                _purge(Path(record.home) / sub, under=Path(record.home).parent)


def _purge(path: Path, under: Path | None = None) -> None:
    """--purge after the service is gone: what cannot be removed is named, never a traceback."""
    try:
        accounts.purge_tree(path, under)
    except (accounts.AccountError, OSError) as exc:
        log.warning("could not delete %s: %s", path, exc)


def sandbox_script(record: ServiceRecord, plan: sandbox.LaunchPlan) -> str:
    from maestro_runtime.engine.launch import render_launch_script

    return render_launch_script(record, wrapper=plan.wrapper, cgroup_procs=plan.cgroup_procs)

