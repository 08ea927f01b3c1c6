"""The pipeline for one service: spec -> account -> source -> build -> port -> command -> program.

The plan is pure (``ops/plan.py``: the record from what was found, then every text to
write); :class:`Provisioner` is the imperative shell that performs each
step, applies the plan, and turns any failure into a recorded, logged outcome, so one bad
service never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from maestro_runtime import safefs
from maestro_runtime.control.runstate import RunStateStore
from maestro_runtime.engine.programs import ProgramFiles
from maestro_runtime.engine.supervisord import RenderError
from maestro_runtime.ops import accounts, processes
from maestro_runtime.ops.buildslots import BuildSlots
from maestro_runtime.ops.logs import clip_message
from maestro_runtime.ops.plan import Facts, Found, plan_service, service_record
from maestro_runtime.sandbox.policy import SandboxError, SandboxPolicy, boot_report
from maestro_runtime.settings import Settings
from maestro_runtime.sources import builds, detect, fetch
from maestro_runtime.sources.buildplan import may_build
from maestro_runtime.sources.declared import service_env
from maestro_runtime.sources.projectfiles import ProjectFiles
from maestro_runtime.sources.redact import redact
from maestro_runtime.spec import ServiceSpec, SpecError, envvars
from maestro_runtime.spec.naming import PROGRAM_ID_RE, reserved
from maestro_runtime.state.ports import PortError, PortLedger
from maestro_runtime.state.records import FAILED, RecordError, RecordStore, ServiceRecord
from maestro_runtime.tasks.hooks import task_source

log = logging.getLogger("maestro")

IDENTITY_WARNING = (
    "per-project users are NOT enforced: this container lacks {caps}; services run as root without "
    "capabilities. Grant --cap-add CHOWN --cap-add SETUID --cap-add SETGID --cap-add DAC_OVERRIDE "
    "--cap-add FOWNER --cap-add KILL to give each project its own user"
)
# Everything a single service's failure can raise; anything else is a bug and propagates.
PROVISION_ERRORS = (SpecError, PortError, RenderError, OSError, accounts.AccountError, fetch.SourceError,
                    builds.BuildError, SandboxError, detect.NoStartCommand)
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
    workspace: dict[str, str] | None = None  # a git workspace (tasks/workspace.py)


def holder_key(a: Assignment) -> str:
    """Whom an account belongs to: a pre-seeded folder (its id may move), else the service id."""
    return a.spec.origin if a.spec.kind == "preseeded" else f"service {a.id}"


class Provisioner:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = RecordStore(settings.records_dir)
        self.ledger = PortLedger(settings.port_ledger, rebuild=self._ports_from_records)
        self.launch_dir = settings.runtime_dir / "launch"
        self.programs = ProgramFiles(settings.supervisor_conf_dir, self.launch_dir)
        self.policy = SandboxPolicy.from_settings(settings)
        self.missing_caps = accounts.missing_identity_caps()
        self.accounts = accounts.AccountRegistry(
            settings.accounts_registry, prefix=settings.accounts_prefix,
            allowed=accounts.allowed_users(settings.allowed_users))
        # Boot provisions in parallel (ops/reconcile.py): tasks' git workspaces share stores.
        self._workspaces = threading.Lock()
        # Every service id of the boot's roster (reconcile sets it): a process type program never
        # takes one, whichever service is provisioned first.
        self.roster_ids: frozenset[str] = frozenset()
        self._naming = threading.Lock()  # a program name is checked and written as one step
        self.stopping = threading.Event()  # the boot is unwinding (SIGTERM): no build begins any more
        # Builds and release phases (CPU, memory and network heavy) run MAESTRO_BUILD_JOBS at a time;
        # the rest of provisioning (fetch, account, start) goes on meanwhile, so a static site never
        # queues behind other projects' builds.
        self.slots = BuildSlots(settings.build_jobs, self.stopping, settings.node_build_jobs)

    def _build(self, files: ProjectFiles, account, service_id: str) -> list[str]:
        """The project's build in a slot. One the kernel killed while other builds ran beside it
        (their memory, most likely) runs once more, alone; a release phase never runs twice."""
        def build(project: ProjectFiles) -> list[str]:
            return builds.build(project, account, settings=self.settings, policy=self.policy, service_id=service_id)

        if not may_build(files):
            return build(files)
        with self.slots.slot(node="package.json" in files.names) as run:
            try:
                return build(files)
            except builds.BuildError as exc:
                if not (exc.killed and run.overlapped):
                    raise
                log.warning("service %s: %s; building again with no other build beside it", service_id,
                            str(exc).splitlines()[0])
        with self.slots.alone():
            return build(ProjectFiles.take(files.directory))  # a look at what the killed build left

    def _ports_from_records(self) -> dict[str, int]:
        """What a lost port ledger is rebuilt from: the ports the ready services were given."""
        ledger: dict[str, int] = {}
        for record in self.store.all():
            if record.ready and record.port and record.port not in ledger.values():
                ledger[record.id] = record.port
        return ledger

    def load_previous(self, service_id: str) -> ServiceRecord | None:
        """The service's record; an unusable one is set aside (one line naming it) and the service
        is then provisioned afresh from its spec, as if new."""
        try:
            return self.store.load(service_id)
        except RecordError as problem:
            self.set_aside(problem, f"service {service_id} is provisioned afresh from its spec")
            return None

    def set_aside(self, problem: RecordError, then: str) -> Path | None:
        try:
            aside = self.store.set_aside(problem.path)
        except OSError as exc:
            log.error("%s; moving it aside failed: %s", problem, exc.strerror)
            return None
        log.warning("%s; moved to %s; %s", problem, aside.name, then)
        return aside

    def record_corrupt(self, problem: RecordError) -> Outcome:
        """An unusable record with no spec to rebuild it from (a service deployed at run time):
        the service fails, visibly, until it is deployed again or removed."""
        service_id = problem.service_id
        if not PROGRAM_ID_RE.match(service_id):  # not a name we ever gave: nothing to fail
            self.set_aside(problem, "it names no service")
            return Outcome(service_id, False, error=str(problem))
        aside = self.set_aside(problem, f"service {service_id} is not started")
        error = f"{problem}{f', moved to {aside.name}' if aside else ''}: deploy it again or remove-service it"
        self.deactivate(service_id)
        self._save_failure(ServiceRecord(
            id=service_id, name=service_id, kind="deploy", origin=f"record {problem.path.name}", source="",
            directory="", user="", port=0, state=FAILED, error=error, updated=time.time(),
        ))
        return Outcome(service_id, False, error=error)

    def _save_failure(self, record: ServiceRecord) -> None:
        """Record a failure; when even that fails (a full state disk), say so and go on."""
        try:
            self.store.save(record)
        except OSError as exc:
            log.error("service %s: its failure could not be recorded in %s: %s",
                      record.id, self.store.path(record.id), exc.strerror or exc)

    def boot_warnings(self) -> list[str]:
        warnings = boot_report(self.policy.config)
        if self.identity_degraded:
            warnings.append(IDENTITY_WARNING.format(caps=", ".join(self.missing_caps)))
        return warnings

    @property
    def identity_degraded(self) -> bool:
        return bool({"SETUID", "SETGID", "CHOWN"} & set(self.missing_caps))

    # ------------------------------------------------------------ one service

    def provision(self, assignment: Assignment, *, refetch: bool = False) -> Outcome:
        previous = self.load_previous(assignment.id)
        try:
            record, changed = self.activate(self._provision(assignment, previous, refetch))
        except PROVISION_ERRORS as exc:
            return self._fail(assignment, previous, exc)
        except Exception as exc:  # a bug here must not stop the other services: one error line (_fail)
            # and, at ENTRYPOINT_LOG_LEVEL=debug, where it happened.
            log.debug("service %s: unexpected error while provisioning", assignment.id, exc_info=True)
            return self._fail(assignment, previous, RuntimeError(f"internal error: {exc!r}"))
        return Outcome(record.id, True, changed=changed, record=record)

    def reactivate(self, record: ServiceRecord) -> Outcome:
        """Render a service that needs no provisioning (deployed at run time) for this boot."""
        try:
            active, changed = self.activate(record)
            return Outcome(record.id, True, changed=changed, record=active)
        except PROVISION_ERRORS as exc:
            failed = replace(record, state=FAILED, error=f"{record.origin}: {exc}", updated=time.time())
            self._save_failure(failed)
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
            files = ProjectFiles.take(directory)  # read once per step, never kept beyond it (projectfiles.py)
            built = self._build(files, account, a.id)
            if built:  # what ran (empty: nothing did), which may have changed the files (collectstatic)
                files = ProjectFiles.take(directory)
            release, types = processes.declared(files)
            release, types = spec.release or release, {**types, **spec.processes}  # the spec wins
            env = envvars.check_size(spec.origin, service_env(files, spec.env, a.id,
                                                                 dotenv=settings.build.project_dotenv))
            if release and (built or code.fetched or previous is None or not previous.ready):
                log.info("service %s: release phase: %s", a.id, release)
                with self.slots.slot():
                    processes.run_release(directory, account, release, env, settings=settings,
                                          policy=self.policy, service_id=a.id)
                files = ProjectFiles.take(directory)  # and again after the release phase
            port = self.ledger.assign(a.id, spec.port, settings.port_range)
            if spec.kind == "preseeded" and spec.port is None:
                self._remember_port(directory, port, account)
            if spec.cmd:
                command, reason = spec.cmd, "explicit"
            else:
                detected = detect.detect_command(files, account.venv_dir if account.venv_dir.is_dir() else None)
                command, reason = detected.command, detected.reason
        except BaseException:
            if code.fetched:  # the previous version (or nothing) comes back: never half-built, nor portless
                fetch.roll_back(directory, code.previous_dir, spec.keep)
            raise
        fetch.finish(code.previous_dir)
        found = Found(directory=directory, source=code.source, revision=code.revision, account=account,
                      has_venv=account.venv_dir.is_dir(), port=port, command=command, command_reason=reason,
                      env=env, processes=types, workspace=code.workspace)
        return service_record(spec, a.id, found, identity_degraded=self.identity_degraded, now=time.time())

    def _source(self, a: Assignment, previous: ServiceRecord | None, refetch: bool) -> Code:
        """Where the service's code is. A pre-seeded folder is used in place; a source is fetched
        when new, changed, missing or asked for, and swapped in with the previous version kept."""
        spec = a.spec
        if spec.directory is not None:
            return Code(spec.directory, str(spec.directory), "")
        assert spec.repo is not None
        self._check_system_path(spec)
        with self._workspaces:
            workspace = task_source(self, a, previous, refetch)
        if workspace is not None:  # a writable git checkout on its branch (tasks/workspace.py)
            return workspace
        directory, source = self.settings.projects_dir / a.id, redact(spec.repo)
        stale = previous is None or previous.source != source or previous.ref != spec.ref
        if not (refetch or stale or not directory.is_dir()):
            return Code(directory, source, previous.revision if previous else "")
        staging = fetch.stage(spec.repo, spec.ref, directory, settings=self.settings, sha256=spec.sha256)
        previous_dir = fetch.swap_in(staging, directory, spec.keep)
        return Code(directory, source, f"{time.time():.6f}", fetched=True, previous_dir=previous_dir)

    def _check_system_path(self, spec: ServiceSpec) -> None:
        """A local repo under /etc, /root, the runtime's own state... only on the operator's say-so."""
        s = self.settings
        if spec.allow_system_path or s.allow_system_paths:
            return
        protected = [s.state_dir, s.runtime_dir, s.home_root, *([s.accounts_prefix] if s.accounts_prefix else [])]
        problem = fetch.system_path_problem(spec.repo or "", protected, list(s.local_source_roots))
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
        # A build's tail may be one line of gigabytes: clipped before it is saved, listed or sent.
        error = clip_message(redact(str(exc) if isinstance(exc, SpecError) else f"{a.spec.origin}: {exc}"))
        if previous is not None and previous.ready and previous.origin == a.spec.origin:
            # A failed redeploy leaves the previous version running, with the error visible.
            kept = self.reactivate(replace(previous, error=error, updated=time.time()))
            if kept.ok:
                log.error("service %s: %s (previous version kept running)", a.id, error)
                return Outcome(a.id, False, error=error, record=kept.record)
        failed = ServiceRecord(
            id=a.id, name=a.spec.name or a.id, kind=a.spec.kind, origin=a.spec.origin,
            source=redact(a.spec.repo) if a.spec.repo else str(a.spec.directory),
            directory="", user=a.user, port=0, state=FAILED, error=error, updated=time.time(),
        )
        self._save_failure(failed)
        self.deactivate(a.id)
        log.error("service %s: %s", a.id, error)
        return Outcome(a.id, False, error=error, record=failed)

    def record_invalid(self, service_id: str, error: SpecError) -> None:
        """A spec that failed validation: a failed record, never a program."""
        previous = self.load_previous(service_id)
        if previous is not None and previous.ready and previous.origin == error.origin:
            self._fail(Assignment(ServiceSpec(origin=error.origin, kind=previous.kind), service_id,
                                  previous.user), previous, error)
            return
        self.deactivate(service_id)
        kind = "preseeded" if error.origin.startswith("pre-seeded") else "env"
        self._save_failure(ServiceRecord(
            id=service_id, name=service_id, kind=kind, origin=error.origin, source="", directory="",
            user="", port=0, state=FAILED, error=str(error), updated=time.time(),
        ))

    # ------------------------------------------------------------ supervisord programs

    def activate(self, record: ServiceRecord) -> tuple[ServiceRecord, bool]:
        """Gather the facts -> plan (pure, ops/plan.py) -> apply: the cgroups and their limits, the
        record, the launch scripts and program files. Returns the saved record, and True when
        supervisord must apply a change."""
        facts = self._facts(record)
        planned = plan_service(record, facts)
        refused = {g.name: kinds for g in planned.groups if (kinds := self.policy.make_groups(g))}
        if refused:  # a limit the kernel refuses is learned only by trying: planned again, it falls back
            planned = plan_service(record, replace(facts, refused=refused))
        with self._naming:  # a program name is one service's
            processes.refuse_clash(record, self.programs, self.store, self.roster_ids)
            self.store.save(planned.record)
            return planned.record, self.programs.write_service(planned.program, planned.processes, planned.probe)

    def _facts(self, record: ServiceRecord) -> Facts:
        return Facts(sandbox=self.policy.config, host=self.policy.facts(record), launch_dir=self.launch_dir,
                     stopwaitsecs=self.settings.stopwaitsecs,
                     stopped=RunStateStore(self.settings.state_dir).stopped(record.id))

    def deactivate(self, service_id: str) -> None:
        # A list left from an earlier boot spares what others hold now. Under the naming lock (no
        # program is written between that look and the removal) and writing nothing: a failure
        # on a full disk removes like any other, instead of ending the boot with its OSError.
        with self._naming:
            spare = processes.held_by_others(service_id, self.programs, self.store, self.roster_ids) \
                if self.programs.process_ids(service_id) else {}
            self.programs.remove_all(service_id, spare=spare)

    def process_ids(self, service_id: str) -> list[str]:
        """The programs of a service's other process types (for stopping them with it)."""
        return self.programs.process_ids(service_id)

    def unregister(self, record: ServiceRecord) -> None:
        """Forget the service: port, record, program, launch script and run state. Files (and logs) stay.

        All or nothing: the ledger write is the one step that needs free space, so it goes
        first; if it fails, nothing has changed. The rest only unlinks."""
        self.forget(record.id)

    def forget(self, service_id: str) -> None:
        self.ledger.release(service_id)
        self.store.delete(service_id)
        self.deactivate(service_id)
        RunStateStore(self.settings.state_dir).forget(service_id)  # a new service of that name starts afresh

    def cleanup(self, record: ServiceRecord, *, purge: bool, delete_user: bool) -> None:
        """After the service has stopped: what it left running, its cgroups and allow-host
        additions go; its files and account only when asked (ops/removal.py)."""
        from maestro_runtime.ops import removal

        removal.cleanup(self, record, purge=purge, delete_user=delete_user)
