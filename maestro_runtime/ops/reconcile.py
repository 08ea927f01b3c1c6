"""Bring the registered services in line with a list of specs (boot and deploy-from-env)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from maestro_runtime.engine.supervisord import PROGRAM_MARKER
from maestro_runtime.ops.provision import Assignment, Outcome, Provisioner, assign_ids
from maestro_runtime.sources.redact import redact
from maestro_runtime.spec import ParseResult
from maestro_runtime.spec.naming import unique_id
from maestro_runtime.state.records import atomic_write

log = logging.getLogger("maestro")
KEPT_KINDS = ("deploy",)  # services added at run time; they are not in the environment


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


def reconcile(provisioner: Provisioner, parsed: ParseResult, *, refetch: bool = False) -> Report:
    """Provision every spec, re-activate services deployed at run time, unregister the rest."""
    started = time.monotonic()
    report = Report(warnings=list(parsed.warnings))
    for warning in parsed.warnings:
        log.warning("%s", warning)
    for error in parsed.errors:
        report.failed[error.origin] = f"{error.field}: {error.message}"
        log.error("%s", error)
    existing = provisioner.store.all()
    kept = [r for r in existing if r.kind in KEPT_KINDS]
    assignments = assign_ids(parsed.specs, reserved=[r.id for r in kept])
    outcomes = [provision_logged(provisioner, a, refetch=refetch) for a in assignments]
    # Entries that failed validation are recorded too (after the good ones, so no id shifts),
    # which makes them visible in list-services with their reason.
    taken = {a.id for a in assignments} | {r.id for r in kept}
    for error in parsed.errors:
        if error.hint:
            failed_id = unique_id(error.hint, taken)
            taken.add(failed_id)
            provisioner.record_invalid(failed_id, error)
    outcomes += [provisioner.reactivate(record) for record in kept if record.ready]
    wanted = taken
    for record in existing:
        if record.id not in wanted:
            provisioner.deactivate(record.id)
            provisioner.store.delete(record.id)
            report.removed.append(record.id)
    # a service's other Procfile types are wanted with it
    wanted = wanted | {extra for sid in wanted for extra in provisioner.process_ids(sid)}
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


def provision_logged(provisioner: Provisioner, assignment: Assignment, *, refetch: bool) -> Outcome:
    log.debug("provisioning %s from %s", assignment.id, assignment.spec.origin)
    outcome = provisioner.provision(assignment, refetch=refetch)
    if outcome.ok and outcome.record:
        r = outcome.record
        log.info("service %s: user %s, port %d, %s (%s)", r.id, r.user, r.port, r.directory, r.command_reason)
    return outcome


def remove_orphan_programs(conf_dir: Path, wanted: set[str]) -> None:
    """Drop program files we rendered for services that no longer exist (never foreign files)."""
    if not conf_dir.is_dir():
        return
    for path in conf_dir.glob("*.conf"):
        if path.stem in wanted:
            continue
        try:
            with path.open() as handle:
                ours = handle.readline().startswith(PROGRAM_MARKER)
        except OSError:
            continue
        if ours:
            path.unlink(missing_ok=True)


def write_report(path: Path, report: Report) -> None:
    # 0600 and redacted: failures quote sources, which may carry credentials.
    atomic_write(path, redact(json.dumps({**asdict(report), "time": time.time()}, indent=1)), mode=0o600)

