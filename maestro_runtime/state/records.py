"""Service records: one JSON file per service in the state dir.

A record is everything known about a provisioned service. The launcher,
``list-services``, the healthcheck and ``remove-service`` read it; only
provisioning writes it. It deliberately holds user data (command, env) so
that none of it has to pass through supervisord's INI parser.

This module is stdlib-only: the launcher and the healthcheck import it and
must start fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

READY = "ready"
FAILED = "failed"


@dataclass
class ServiceRecord:
    id: str  # program id: [a-z0-9][a-z0-9_-]*
    name: str
    kind: str  # preseeded | file | env | deploy
    origin: str
    source: str  # where the code came from, credentials redacted
    directory: str
    user: str
    port: int
    ref: str | None = None
    uid: int = -1
    gid: int = -1
    home: str = ""
    tmp_dir: str = ""
    cache_dir: str = ""
    venv_dir: str = ""
    command: str = ""
    command_reason: str = ""
    env: dict[str, str] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=lambda: {"kind": "http", "path": "/"})
    autostart: bool = True
    policy: dict[str, object] = field(default_factory=dict)  # restart policy as written (see control/policy.py)
    keep: list[str] = field(default_factory=lambda: ["data"])
    allow_hosts: list[str] = field(default_factory=list)
    limits: dict[str, object] = field(default_factory=dict)
    sandbox: dict[str, object] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)  # protections not enforced for this service, and why
    state: str = READY
    error: str | None = None
    updated: float = 0.0
    revision: str = ""  # changes each time the code is fetched anew

    @property
    def ready(self) -> bool:
        return self.state == READY

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ServiceRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a whole file or nothing: temp file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RecordStore:
    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, service_id: str) -> Path:
        return self.folder / f"{service_id}.json"

    def load(self, service_id: str) -> ServiceRecord | None:
        try:
            return ServiceRecord.from_dict(json.loads(self.path(service_id).read_text()))
        except FileNotFoundError:
            return None

    def all(self) -> list[ServiceRecord]:
        if not self.folder.is_dir():
            return []
        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                records.append(ServiceRecord.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a torn or foreign file is not a service
        return records

    def save(self, record: ServiceRecord) -> None:
        # 0600: records carry the service's environment, which may hold secrets.
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path(record.id), record.to_json(), mode=0o600)

    def delete(self, service_id: str) -> None:
        self.path(service_id).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise whole changes (deploy, remove, boot) so two never interleave."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.folder / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Say why we stand still: a deploy run during boot waits for the whole boot.
                logging.getLogger("maestro").warning(
                    "waiting for another change (boot, deploy or remove-service) to finish")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
