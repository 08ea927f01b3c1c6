"""What survives a container restart about each task (and each gated service): its phase.

One JSON file per entry in ``<state>/tasks/``, written atomically, only by the task runner.
Commands ask the runner for a run or a cancel by dropping a request file beside them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from maestro_runtime.state.records import atomic_write

PENDING, WAITING, RUNNING = "pending", "waiting", "running"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
PHASES = (PENDING, WAITING, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
REQUESTS = ("run", "cancel")


@dataclass(frozen=True)
class Phase:
    phase: str = PENDING
    want: bool = False  # start as soon as the dependencies allow (a new revision, a schedule slot, maestro run)
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    reason: str | None = None  # "waiting: db healthy", "dependency migrate failed (exit 1)"...
    revision: str = ""  # the program revision this phase belongs to: a new one runs the task again
    start_commit: str | None = None  # HEAD of the workspace when the run started
    commits: int | None = None  # commits made during the last run
    last_slot: float | None = None  # the schedule slot last decided on (run or skipped)
    runs: int = 0
    blocked: bool = False  # failed because a dependency never could allow it: looked at again each step

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)

    def to(self, phase: str, **changes: object) -> Phase:
        changes.setdefault("blocked", False)  # only the gate's verdict blocks, and only until the next move
        return replace(self, phase=phase, **changes)

    @classmethod
    def from_dict(cls, data: dict) -> Phase:
        known = {f.name for f in fields(cls)}
        phase = cls(**{k: v for k, v in data.items() if k in known})
        return phase if phase.phase in PHASES else replace(phase, phase=PENDING)


class PhaseStore:
    def __init__(self, folder: Path):
        self.folder = folder
        self.requests = folder / "requests"

    def load(self, entry_id: str) -> Phase | None:
        try:
            return Phase.from_dict(json.loads((self.folder / f"{entry_id}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def all(self) -> dict[str, Phase]:
        out: dict[str, Phase] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                phase = self.load(path.stem)
                if phase is not None:
                    out[path.stem] = phase
        return out

    def save(self, entry_id: str, phase: Phase) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.folder / f"{entry_id}.json", json.dumps(asdict(phase), indent=1, sort_keys=True), 0o600)

    def delete(self, entry_id: str) -> None:
        (self.folder / f"{entry_id}.json").unlink(missing_ok=True)
        for what in REQUESTS:
            (self.requests / f"{entry_id}.{what}").unlink(missing_ok=True)

    def request(self, entry_id: str, what: str) -> None:
        assert what in REQUESTS
        self.requests.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.requests / f"{entry_id}.{what}", "", 0o600)

    def take_requests(self) -> list[tuple[str, str]]:
        """(entry id, run|cancel), each handed out once."""
        out = []
        if self.requests.is_dir():
            for path in sorted(self.requests.iterdir()):
                entry_id, _, what = path.name.rpartition(".")
                if what in REQUESTS and entry_id:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        continue
                    out.append((entry_id, what))
        return out
