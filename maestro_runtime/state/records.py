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
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

READY = "ready"
FAILED = "failed"


@dataclass(frozen=True)
class ServiceRecord:
    """What the runtime knows about one service; a change makes a new one (``dataclasses.replace``)."""

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
    # Issue 14 (tasks/): a one-shot task or a service; its schedule and dependencies; its git workspace.
    role: str = "service"  # service | task
    schedule: str | None = None
    catch_up: bool = False
    depends_on: dict[str, str] = field(default_factory=dict)
    workspace: dict[str, str] = field(default_factory=dict)  # store, branch, base (see tasks/workspace.py)
    program_revision: str = ""  # of the program last rendered: a task whose revision changed runs again
    processes: dict[str, str] = field(default_factory=dict)  # Procfile types other than web/release

    @property
    def ready(self) -> bool:
        return self.state == READY

    def to_json(self) -> str:
        # The fields as they are (asdict would deep-copy every dict and list only to be encoded).
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> ServiceRecord:
        """ValueError naming the first field of the wrong type: a record is only used whole."""
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__} where an object belongs")
        known = {f.name: f for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, expected in _FIELD_TYPES.items():
            if (name in values and not isinstance(values[name], expected)) or (
                    name in values and isinstance(values[name], bool) and bool not in expected):
                raise ValueError(f"field {name!r} has the wrong type ({type(values[name]).__name__})")
        missing = [f.name for f in known.values() if f.name not in values and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"field {missing[0]!r} is missing")
        return cls(**values)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "kind": (str,), "origin": (str,), "source": (str,), "directory": (str,),
    "user": (str,), "port": (int,), "ref": (str, type(None)), "uid": (int,), "gid": (int,), "home": (str,),
    "tmp_dir": (str,), "cache_dir": (str,), "venv_dir": (str,), "command": (str,), "command_reason": (str,),
    "env": (dict,), "health": (dict,), "autostart": (bool,), "keep": (list,), "allow_hosts": (list,),
    "limits": (dict,), "sandbox": (dict,), "degraded": (list,), "state": (str,), "error": (str, type(None)),
    "updated": (int, float), "revision": (str,),
}
MAX_RECORD_BYTES = 4 << 20  # far above any real record; a bigger file is not one of ours


class RecordError(ValueError):
    """A record file that cannot be used: one line naming the file and what is wrong."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.service_id = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
        super().__init__(f"{path}: unreadable service record ({reason})")


def read_record(path: Path) -> ServiceRecord:
    """FileNotFoundError when absent, RecordError when present but unusable (torn by a crash,
    a directory, not an object, a field of the wrong type...). Never blocks, never follows links."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RecordError(path, exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RecordError(path, "not a regular file")
        if info.st_size > MAX_RECORD_BYTES:
            raise RecordError(path, f"{info.st_size} bytes, more than a record can hold")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise RecordError(path, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    try:
        return ServiceRecord.from_dict(json.loads(raw.decode("utf-8")))
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RecordError(path, reason[:120]) from None


def atomic_write(path: Path, text: str, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write a whole file or nothing: temp file in the same folder, fsync, rename.

    ``durable=False`` leaves out the fsync, for files remade at every boot before anything
    reads them (launch scripts): the rename still shows every reader the whole old file or
    the whole new one; only a host crash can lose the write, and the next boot writes it again."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except FileNotFoundError:  # the folder is made only when missing: no mkdir per write
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # A failed write names no file (ENOSPC): name the one that was being written.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


class RecordStore:
    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, service_id: str) -> Path:
        return self.folder / f"{service_id}.json"

    def load(self, service_id: str) -> ServiceRecord | None:
        """None when there is no record; RecordError when there is one that cannot be used."""
        try:
            return read_record(self.path(service_id))
        except FileNotFoundError:
            return None

    def scan(self) -> tuple[list[ServiceRecord], list[RecordError]]:
        """The usable records, and one RecordError per file in their place that is not."""
        if not self.folder.is_dir():
            return [], []
        records, problems = [], []
        for path in sorted(self.folder.glob("*.json")):
            try:
                records.append(read_record(path))
            except FileNotFoundError:
                continue  # removed meanwhile
            except RecordError as exc:
                problems.append(exc)
        return records, problems

    def all(self) -> list[ServiceRecord]:
        return self.scan()[0]

    def set_aside(self, path: Path) -> Path:
        """Move an unusable record out of the way (kept for the operator to look at), so the
        service can be recorded afresh: ``NAME.json`` -> ``NAME.json.corrupt-<time>``."""
        target = path.with_name(f"{path.name}.corrupt-{time.time():.0f}")
        os.rename(path, target)
        return target

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
