"""Bring the registered services in line with a list of specs (boot and deploy-from-env)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maestro_runtime.engine.supervisord import remove_orphan_programs
from maestro_runtime.ops.parallel import map_bounded
from maestro_runtime.ops.provision import Assignment, Outcome, Provisioner
from maestro_runtime.sources.redact import redact
from maestro_runtime.spec import ParseResult, ServiceSpec, SpecError
from maestro_runtime.spec.naming import default_user, reserved, unique_id
from maestro_runtime.state.ports import PortError
from maestro_runtime.state.records import ServiceRecord, atomic_write

log = logging.getLogger("maestro")
KEPT_KINDS = ("deploy",)  # services added at run time; they are not in the environment
PROVISION_THREADS = 32  # services provisioned at once (threads waiting for a build slot cost nothing)
# Called with the programs of each service as soon as it is provisioned (boot starts them there
# and then), and with [] while nothing ends; always in reconcile's own thread.
OnReady = Callable[[list[str]], None]


@dataclass
class Report:
    prepared: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # id or origin -> reason
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"prepared {len(self.prepared)} service(s)"]
        if self.prepared:
            parts[0] += ": " + ", ".join(self.prepared)
        if self.failed:
            # the first line only: a build's tail was already printed, as lines, with its error
            parts.append(f"{len(self.failed)} failed: " + "; ".join(
                f"{k} ({v.splitlines()[0] if v else v})" for k, v in self.failed.items()))
        if self.removed:
            parts.append("unregistered: " + ", ".join(self.removed))
        return "; ".join(parts) + f" [{self.seconds:.2f}s]"


@dataclass(frozen=True)
class Roster:
    """Who is in and who is out, decided before anything is touched (pure: :func:`roster`)."""

    assignments: tuple[Assignment, ...]  # the specs, with their program ids and users
    kept: tuple[ServiceRecord, ...]  # services deployed at run time: not in the environment, kept
    invalid: tuple[tuple[str, SpecError], ...]  # entries that failed validation, recorded under an id
    removed: tuple[str, ...]  # registered services no spec asks for any more
    wanted: frozenset[str]
    corrupt: tuple[str, ...] = ()  # unusable records of services no spec provisions: they fail, visibly


def assign_ids(specs: Iterable[ServiceSpec], reserved: Iterable[str] = ()) -> list[Assignment]:
    """Unique program ids in input order (``web``, ``web-1``...); the same input gives the same ids."""
    taken = set(reserved)
    out = []
    for spec in specs:
        program_id = unique_id(spec.base_name, taken)
        taken.add(program_id)
        out.append(Assignment(spec, program_id, spec.user or default_user(program_id)))
    return out


def roster(parsed: ParseResult, existing: Sequence[ServiceRecord], corrupt: Sequence[str] = ()) -> Roster:
    """The id rules: kept deploys reserve their ids, specs get unique ids in input order, invalid
    entries are named after them (so no id shifts), and every other registered service goes."""
    kept = tuple(r for r in existing if r.kind in KEPT_KINDS)
    assignments = tuple(assign_ids(parsed.specs, reserved=[r.id for r in kept]))
    assigned = {a.id for a in assignments}
    unusable = tuple(i for i in corrupt if i not in assigned)
    taken = assigned | {r.id for r in kept} | set(unusable)
    invalid = []
    for error in parsed.errors:
        if error.hint:
            failed_id = unique_id(error.hint, taken)
            taken.add(failed_id)
            invalid.append((failed_id, error))
    removed = tuple(r.id for r in existing if r.id not in taken)
    return Roster(assignments, kept, tuple(invalid), removed, frozenset(taken), unusable)


def reconcile(provisioner: Provisioner, parsed: ParseResult, *, refetch: bool = False, jobs: int = 1,
              on_ready: OnReady | None = None) -> Report:
    """Provision every spec (up to ``max(jobs, PROVISION_THREADS)`` at once; their builds take the
    provisioner's MAESTRO_BUILD_JOBS slots), re-activate services deployed at run time, unregister
    the rest. ``on_ready`` gets each service's programs as soon as they are written."""
    started = time.monotonic()
    report = Report(warnings=list(parsed.warnings))
    for warning in parsed.warnings:
        log.warning("%s", warning)
    for error in parsed.errors:
        report.failed[error.origin] = f"{error.field}: {error.message}"
        log.error("%s", error)
    existing, corrupt = provisioner.store.scan()
    plan = roster(parsed, existing, [p.service_id for p in corrupt])
    # An unusable record of a service in the specs is rebuilt by provisioning it; any other
    # fails its service alone, visibly (see Provisioner.record_corrupt).
    outcomes = [provisioner.record_corrupt(p) for p in corrupt if p.service_id in plan.corrupt]
    ports = reserve_ports(provisioner, plan.assignments)  # before anything runs in parallel: same input, same ports
    listed = provisioner.settings.provisioning_list
    write_provisioning(listed, plan.assignments, ports)
    provisioner.roster_ids = plan.wanted  # names taken before any build ends (Provisioner.activate)
    ready = announce(provisioner, on_ready)
    # More threads than build slots (Provisioner.slots): a project with nothing to build is
    # fetched and started while others build.
    threads = max(jobs, PROVISION_THREADS)
    try:
        outcomes += map_bounded(per_user(provisioner, refetch), plan.assignments, threads, on_result=ready,
                                on_idle=(lambda: on_ready([])) if on_ready else None)
    except BaseException:  # SIGTERM: threads waiting for a build slot must not begin one
        provisioner.stopping.set()
        provisioner.slots.wake()
        raise
    finally:
        listed.unlink(missing_ok=True)
    # Entries that failed validation are recorded too (after the good ones, so no id shifts),
    # which makes them visible in list-services with their reason.
    for failed_id, error in plan.invalid:
        provisioner.record_invalid(failed_id, error)
    for record in plan.kept:
        if record.ready:
            outcomes.append(provisioner.reactivate(record))
            ready(outcomes[-1])
    for service_id in plan.removed:
        provisioner.deactivate(service_id)
        provisioner.store.delete(service_id)
        report.removed.append(service_id)
    # a service's other Procfile types are wanted with it
    wanted = set(plan.wanted) | {extra for sid in plan.wanted for extra in provisioner.process_ids(sid)}
    remove_orphan_programs(provisioner.settings.supervisor_conf_dir, wanted)
    for outcome in outcomes:
        if outcome.ok:
            report.prepared.append(outcome.id)
        if outcome.error:
            report.failed[outcome.id] = outcome.error
        if outcome.changed:
            report.changed.append(outcome.id)
    report.seconds = time.monotonic() - started
    return report


def write_provisioning(path: Path, assignments: Sequence[Assignment], ports: dict[str, int]) -> None:
    """What is being provisioned, for list-services to show as PROVISIONING until each has its
    record (a fetch or build can take minutes: no service should look missing meanwhile).
    Sources redacted, 0600; ``pid`` lets a reader ignore a list a dead boot left behind."""
    entries = {a.id: {"user": a.user, "port": ports.get(a.id), "kind": a.spec.kind,
                      "source": redact(a.spec.repo or a.spec.origin), "ref": a.spec.ref} for a in assignments}
    try:
        atomic_write(path, json.dumps({"pid": os.getpid(), "since": time.time(), "services": entries}),
                     mode=0o600, durable=False)
    except OSError as exc:  # only a view: provisioning goes on without it
        log.debug("cannot write %s: %s", path, exc)


def reserve_ports(provisioner: Provisioner, assignments: Sequence[Assignment]) -> dict[str, int]:
    """Every port in input order, in one ledger write; provisioning then finds its port remembered.
    A port that cannot be given (taken, none left) fails its service later, with the reason."""
    wanted = [(a.id, a.spec.port) for a in assignments if not reserved(a.id)]
    try:
        return provisioner.ledger.reserve(wanted, provisioner.settings.port_range)
    except (PortError, OSError) as exc:  # each service's own assign says it again, in its failure
        log.debug("ports not reserved ahead: %s", exc)
        return {}


def per_user(provisioner: Provisioner, refetch: bool) -> Callable[[Assignment], Outcome]:
    """Provisioning of one service, never at once with another of the same user: they share the
    user's home, caches and venv (ops/accounts.py)."""
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    def work(assignment: Assignment) -> Outcome:
        with guard:
            lock = locks.setdefault(assignment.user, threading.Lock())
        with lock:
            return provision_logged(provisioner, assignment, refetch=refetch)

    return work


def announce(provisioner: Provisioner, on_ready: OnReady | None) -> Callable[[Outcome], None]:
    """Hand a provisioned service's programs to ``on_ready``: its own and its process types', when
    its program is written (a failed redeploy's previous version too); none for a failure."""

    def ready(outcome: Outcome) -> None:
        if on_ready is not None and outcome.record is not None and outcome.record.ready:
            on_ready([outcome.id, *provisioner.process_ids(outcome.id)])

    return ready


def provision_logged(provisioner: Provisioner, assignment: Assignment, *, refetch: bool) -> Outcome:
    log.debug("provisioning %s from %s", assignment.id, assignment.spec.origin)
    outcome = provisioner.provision(assignment, refetch=refetch)
    if outcome.ok and outcome.record:
        r = outcome.record
        log.info("service %s: user %s, port %d, %s (%s)", r.id, r.user, r.port, r.directory, r.command_reason)
    return outcome


def write_report(path: Path, report: Report) -> None:
    # 0600 and redacted: failures quote sources, which may carry credentials.
    atomic_write(path, redact(json.dumps({**asdict(report), "time": time.time()}, indent=1)), mode=0o600)

