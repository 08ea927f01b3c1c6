"""A service's files for supervisord: its launch script(s) and program file(s), written and removed together.

The texts are planned elsewhere (``ops/plan.py``, pure); this module only writes and removes
them. One service may own several programs: its own, one per further Procfile process type
(listed in ``<id>.types`` beside the launch scripts, so removal takes exactly these and never
another service that happens to share the prefix), and an exec health probe script.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from maestro_runtime.engine.supervisord import remove_program, write_program
from maestro_runtime.state.records import atomic_write


def script_path(launch_dir: Path, program_id: str) -> Path:
    """Where a program's launch script lives (its program file names it)."""
    return launch_dir / f"{program_id}.sh"


@dataclass(frozen=True)
class ProgramText:
    """One supervisord program as text: its launch script and its program file."""

    id: str
    script: str
    conf: str


@dataclass(frozen=True)
class ProgramFiles:
    conf_dir: Path  # supervisord's include folder
    launch_dir: Path  # root-only: launch scripts, probe scripts, process-type lists

    def script(self, program_id: str) -> Path:
        return script_path(self.launch_dir, program_id)

    def write(self, program: ProgramText) -> bool:
        """Launch script and program file; True when the program file changed.

        Launch scripts, probe scripts and program files are not fsynced (``durable=False``; the
        rename still shows every reader a whole old or whole new file): they are made from the
        record, which is fsynced, and every boot writes them again when it activates the service,
        before supervisord is given its program (ours are cleared when it starts early, rewritten
        otherwise). A host crash can at worst leave one empty, on ext4 and XFS (they never show
        unwritten blocks), and the next boot writes it again. The process-type lists (what a
        later boot removes) stay fsynced."""
        atomic_write(self.script(program.id), program.script, mode=0o700, durable=False)
        return write_program(self.conf_dir, program.id, program.conf)

    def write_service(self, program: ProgramText, processes: Sequence[ProgramText], probe: str | None) -> bool:
        """All of a service's files; True when supervisord must apply a change."""
        self.write_probe(program.id, probe)
        changed = self.write(program)
        return self.write_processes(program.id, processes) or changed

    def write_probe(self, service_id: str, text: str | None) -> None:
        """An exec health probe's script (None: the service has none)."""
        path = self.launch_dir / f"{service_id}.probe.sh"
        if text is not None:
            atomic_write(path, text, mode=0o700, durable=False)  # as launch scripts (see write)
        else:
            path.unlink(missing_ok=True)

    def write_processes(self, service_id: str, extras: Sequence[ProgramText]) -> bool:
        """Programs for the service's further process types; True when supervisord must apply a change."""
        changed = False
        for gone in set(self.process_ids(service_id)) - {e.id for e in extras}:
            self.remove(gone)
            changed = True
        for extra in extras:
            changed = self.write(extra) or changed
        types_file = self.launch_dir / f"{service_id}.types"
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

    def remove_all(self, service_id: str, spare: Collection[str] = ()) -> None:
        """Everything the service owns here: its process types' programs (but those in ``spare``:
        another's now), its probe, its own program."""
        for extra in self.process_ids(service_id):
            if extra not in spare:
                self.remove(extra)
        (self.launch_dir / f"{service_id}.types").unlink(missing_ok=True)
        (self.launch_dir / f"{service_id}.probe.sh").unlink(missing_ok=True)
        if not self.process_of_another(service_id):  # refused as a name clash: that program is not ours
            self.remove(service_id)

    def process_of_another(self, program_id: str) -> bool:
        """``program_id`` is a process type of another active service (ops/processes.py refuses the clash)."""
        return any(path.stem != program_id and (self.conf_dir / f"{path.stem}.conf").exists()
                   and program_id in self.process_ids(path.stem) for path in self.launch_dir.glob("*.types"))
