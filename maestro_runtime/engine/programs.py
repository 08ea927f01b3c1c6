"""A service's files for supervisord: its launch script(s) and program file(s), written and removed together.

One service may own several programs: its own, one per further Procfile process type
(listed in ``<id>.types`` beside the launch scripts, so removal takes exactly these and never
another service that happens to share the prefix), and an exec health probe script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from maestro_runtime.engine.launch import render_launch_script
from maestro_runtime.engine.supervisord import ProgramOptions, remove_program, render_program, write_program
from maestro_runtime.state.records import ServiceRecord, atomic_write


def program_revision(script: str, record: ServiceRecord) -> str:
    """Changes whenever the launch script or the fetched code does, so supervisord restarts it."""
    return hashlib.sha256(f"{script}\0{record.revision}".encode()).hexdigest()[:16]


def launch_text(record: ServiceRecord, plan) -> str:
    """The launch script of ``record`` under its sandbox ``plan`` (a ``sandbox.policy.LaunchPlan``)."""
    return render_launch_script(record, wrapper=plan.wrapper, cgroup_procs=plan.cgroup_procs)


@dataclass(frozen=True)
class ProgramFiles:
    conf_dir: Path  # supervisord's include folder
    launch_dir: Path  # root-only: launch scripts, probe scripts, process-type lists

    def script(self, program_id: str) -> Path:
        return self.launch_dir / f"{program_id}.sh"

    def write(self, program_id: str, script_text: str, options: ProgramOptions, revision: str) -> bool:
        """Launch script and program file; True when the program file changed."""
        atomic_write(self.script(program_id), script_text, mode=0o700)
        text = render_program(program_id, self.script(program_id), options, revision=revision)
        return write_program(self.conf_dir, program_id, text)

    def write_probe(self, record: ServiceRecord, plan) -> None:
        """An exec health probe runs through the same launch chain: same sandbox, same user."""
        path = self.launch_dir / f"{record.id}.probe.sh"
        command = record.health.get("command") if record.health.get("kind") == "exec" else None
        if command:
            atomic_write(path, launch_text(replace(record, command=str(command)), plan), mode=0o700)
        else:
            path.unlink(missing_ok=True)

    def write_processes(self, record: ServiceRecord, extras: Sequence[ServiceRecord], options: ProgramOptions,
                        plan_for: Callable[[ServiceRecord], object]) -> bool:
        """Programs for the service's further process types; True when supervisord must apply a change."""
        changed = False
        for gone in set(self.process_ids(record.id)) - {e.id for e in extras}:
            self.remove(gone)
            changed = True
        for extra in extras:
            text = launch_text(extra, plan_for(extra))
            changed = self.write(extra.id, text, options, program_revision(text, extra)) or changed
        types_file = self.launch_dir / f"{record.id}.types"
        if extras:
            atomic_write(types_file, "".join(f"{e.id}\n" for e in extras), mode=0o600)
        else:
            types_file.unlink(missing_ok=True)
        return changed

    def process_ids(self, service_id: str) -> list[str]:
        """The programs of a service's further process types (stopped and removed with it)."""
        try:
            return (self.launch_dir / f"{service_id}.types").read_text().split()
        except OSError:
            return []

    def remove(self, program_id: str) -> None:
        remove_program(self.conf_dir, program_id)
        self.script(program_id).unlink(missing_ok=True)

    def remove_all(self, service_id: str) -> None:
        """Everything the service owns here: its process types' programs, its probe, its own program."""
        for extra in self.process_ids(service_id):
            self.remove(extra)
        (self.launch_dir / f"{service_id}.types").unlink(missing_ok=True)
        (self.launch_dir / f"{service_id}.probe.sh").unlink(missing_ok=True)
        if not self.process_of_another(service_id):  # refused as a name clash: that program is not ours
            self.remove(service_id)

    def process_of_another(self, program_id: str) -> bool:
        """``program_id`` is a process type of another active service (ops/processes.py refuses the clash)."""
        return any(path.stem != program_id and (self.conf_dir / f"{path.stem}.conf").exists()
                   and program_id in self.process_ids(path.stem) for path in self.launch_dir.glob("*.types"))
