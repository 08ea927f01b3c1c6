"""Service specs and their parsers (pure: they read a mapping, a YAML text or folders).

Sources, in the order their specs are gathered (and program ids assigned):
pre-seeded folders, the YAML file, ``SERVICES``, then ``SERVICES_COUNT`` + ``SVC_<i>_*``.
Every parser returns the specs it could read plus one :class:`SpecError` per bad entry,
so one bad service never stops the others.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import safefs
from .naming import env_key, name_from_repo, reserved, sanitize_name, valid_user

DEFAULT_REF = "main"
MAX_FIELD = 64 * 1024
_REF_RE = re.compile(r"^[A-Za-z0-9._/@+-]{1,255}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SIZE_RE = re.compile(r"^(max|\d+[KMGkmg]?)$")
SERVICE_FIELDS = ("repo", "port", "ref", "name", "user", "cmd")
YAML_FIELDS = frozenset(
    {*SERVICE_FIELDS, "command", "env", "health", "autostart", "sha256", "keep",
     "allow_hosts", "memory", "cpu_quota_us", "cpu_period_us", "pids_max", "allow_system_path"}
)
META_FILES = (".maestro-name", ".maestro-port", ".maestro-cmd", ".maestro-user", ".maestro-disable")


class SpecError(Exception):
    """A bad value in one spec: names where it came from and which field."""

    def __init__(self, origin: str, field_name: str, message: str, hint: str = ""):
        super().__init__(f"{origin}: {field_name}: {message}")
        self.origin = origin
        self.field = field_name
        self.message = message
        self.hint = hint  # the name the service would have had, so list-services can show it failed


@dataclass(frozen=True)
class Health:
    kind: str = "http"  # "http" or "tcp"
    path: str = "/"


@dataclass(frozen=True)
class Limits:
    """Per-service overrides of the sandbox limits; None means the global default."""

    memory: str | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    pids_max: int | None = None


@dataclass(frozen=True)
class ServiceSpec:
    origin: str  # human-readable place it came from, used in every error
    kind: str  # "preseeded" | "file" | "env" | "deploy"
    repo: str | None = None  # source; None for a pre-seeded folder used in place
    directory: Path | None = None  # pre-seeded folder
    port: int | None = None  # None: pick one
    ref: str = DEFAULT_REF
    name: str | None = None
    user: str | None = None
    cmd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    autostart: bool = True
    sha256: str | None = None
    keep: tuple[str, ...] = ("data",)
    allow_hosts: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    allow_system_path: bool = False  # the operator's say-so for a repo like /etc (deploy --allow-system-path)

    @property
    def base_name(self) -> str:
        """The sanitised name the program id starts from."""
        if self.name:
            return sanitize_name(self.name)
        if self.directory is not None:
            return sanitize_name(self.directory.name) or "service"
        return name_from_repo(self.repo or "") or "service"


@dataclass
class ParseResult:
    specs: list[ServiceSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.specs += other.specs
        self.errors += other.errors
        self.warnings += other.warnings


# ---------------------------------------------------------------- field checks


def _text(origin: str, name: str, value: str, *, multiline: bool = False) -> str:
    if len(value) > MAX_FIELD:
        raise SpecError(origin, name, f"longer than {MAX_FIELD} characters")
    bad = "\x00" if multiline else "\x00\r\n"
    if any(c in value for c in bad) or any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise SpecError(origin, name, "contains control characters or line breaks")
    return value


def parse_port(origin: str, raw: Any) -> int | None:
    """'' / 0 / None -> None (pick one); otherwise 1..65535."""
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "0")) or raw == 0:
        return None
    if isinstance(raw, bool):
        raise SpecError(origin, "port", f"must be a number, got {raw!r}")
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()):  # '²'.isdigit() is True, int('²') fails
        raise SpecError(origin, "port", f"must be a number from 1 to 65535 (or 0 for auto), got {text[:40]!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise SpecError(origin, "port", f"{port} is out of range 1-65535")
    return port


def parse_ref(origin: str, raw: str | None) -> str:
    ref = (raw or "").strip() or DEFAULT_REF
    if not _REF_RE.match(ref) or ref.startswith("-") or ".." in ref:
        raise SpecError(origin, "ref", f"not a valid git ref: {ref[:60]!r}")
    return ref


def parse_name(origin: str, raw: str | None) -> str | None:
    name = (raw or "").strip()
    if not name:
        return None
    _text(origin, "name", name)
    if not sanitize_name(name):
        raise SpecError(origin, "name", f"{name[:40]!r} has no letters or digits to name a service by")
    if reserved(sanitize_name(name)):
        raise SpecError(origin, "name", f"{name[:40]!r} is reserved for maestro-runtime's own programs "
                                        "(names starting with maestro-); choose another name")
    return name


def parse_user(origin: str, raw: str | None) -> str | None:
    user = (raw or "").strip()
    if not user:
        return None
    if not valid_user(user):
        rule = "[a-z_][a-z0-9_-]*, at most 32 characters, not root"
        raise SpecError(origin, "user", f"{user[:40]!r} is not a valid user name ({rule})")
    return user


def parse_cmd(origin: str, raw: str | None) -> str | None:
    cmd = (raw or "").strip()
    return _text(origin, "cmd", cmd, multiline=True) if cmd else None


def parse_repo(origin: str, raw: str | None) -> str:
    repo = (raw or "").strip()
    if not repo:
        raise SpecError(origin, "repo", "is required")
    _text(origin, "repo", repo)
    if any(c.isspace() for c in repo):
        raise SpecError(origin, "repo", f"must not contain spaces: {repo[:60]!r}")
    return repo


def parse_env(origin: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(origin, "env", f"must be a mapping of NAME: value, got {type(raw).__name__}")
    env: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise SpecError(origin, "env", f"{str(key)[:40]!r} is not a valid variable name")
        if isinstance(value, (dict, list)) or value is None:
            raise SpecError(origin, f"env.{key}", "must be a string, number or boolean")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "\x00" in text or len(text) > MAX_FIELD:
            raise SpecError(origin, f"env.{key}", "contains NUL or is too long")
        env[key] = text
    return env


def parse_health(origin: str, raw: Any) -> Health:
    if raw is None:
        return Health()
    if isinstance(raw, str):
        value = raw.strip()
        if value == "tcp":
            return Health(kind="tcp")
        if value.startswith("/") and not any(c.isspace() or ord(c) < 32 for c in value):
            return Health(kind="http", path=value)
    raise SpecError(origin, "health", f"must be an HTTP path like /healthz or 'tcp', got {str(raw)[:40]!r}")


def parse_host(origin: str, raw: Any) -> str:
    """An egress allowlist entry: ``host``, ``*.domain``, either with an optional ``:port``."""
    from .netpolicy import NetPolicyError, validate_host

    try:
        return validate_host(str(raw))
    except NetPolicyError as exc:
        raise SpecError(origin, "allow_hosts", str(exc)) from exc


def _str_list(origin: str, name: str, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise SpecError(origin, name, "must be a list of strings")
    return raw


def _int(origin: str, name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise SpecError(origin, name, f"must be a positive whole number, got {raw!r}")
    return raw


def parse_keep(origin: str, raw: Any) -> tuple[str, ...]:
    keep = []
    for item in _str_list(origin, "keep", raw):
        path = Path(item)
        if path.is_absolute() or ".." in path.parts or not item.strip():
            raise SpecError(origin, "keep", f"{item[:60]!r} must be a relative path inside the project")
        keep.append(str(path))
    return tuple(keep)


def parse_limits(origin: str, entry: Mapping[str, Any]) -> Limits:
    memory = entry.get("memory")
    if memory is not None and not _SIZE_RE.match(str(memory)):
        raise SpecError(origin, "memory", f"must look like 512M, 1G or max, got {str(memory)[:20]!r}")
    return Limits(
        memory=str(memory) if memory is not None else None,
        cpu_quota_us=_int(origin, "cpu_quota_us", entry["cpu_quota_us"]) if "cpu_quota_us" in entry else None,
        cpu_period_us=_int(origin, "cpu_period_us", entry["cpu_period_us"]) if "cpu_period_us" in entry else None,
        pids_max=_int(origin, "pids_max", entry["pids_max"]) if "pids_max" in entry else None,
    )


def name_hint(fields: Mapping[str, Any]) -> str:
    """A best-effort service name for an entry that failed validation."""
    for key, derive in (("name", sanitize_name), ("repo", name_from_repo)):
        value = fields.get(key)
        if isinstance(value, str) and derive(value.strip()):
            return derive(value.strip())
    return ""


def make_spec(origin: str, kind: str, fields: Mapping[str, Any]) -> ServiceSpec:
    """Validate the six common fields (repo|port|ref|name|user|cmd)."""
    try:
        return _make_spec(origin, kind, fields)
    except SpecError as err:
        err.hint = err.hint or name_hint(fields)
        raise


def _make_spec(origin: str, kind: str, fields: Mapping[str, Any]) -> ServiceSpec:
    return ServiceSpec(
        origin=origin,
        kind=kind,
        repo=parse_repo(origin, fields.get("repo")),
        port=parse_port(origin, fields.get("port")),
        ref=parse_ref(origin, fields.get("ref")),
        name=parse_name(origin, fields.get("name")),
        user=parse_user(origin, fields.get("user")),
        cmd=parse_cmd(origin, fields.get("cmd")),
    )


# ---------------------------------------------------------------- env sources


def parse_services_string(raw: str) -> ParseResult:
    """``SERVICES="repo|port|ref|name|user|cmd;..."``. The command is the last field, so it may contain '|'."""
    result = ParseResult()
    for index, entry in enumerate((e.strip() for e in raw.split(";")), start=1):
        if not entry:
            continue
        origin = f"SERVICES[{index}]"
        parts = entry.split("|", len(SERVICE_FIELDS) - 1)
        try:
            result.specs.append(make_spec(origin, "env", dict(zip(SERVICE_FIELDS, parts, strict=False))))
        except SpecError as err:
            result.errors.append(err)
    return result


def parse_svc_vars(env: Mapping[str, str]) -> ParseResult:
    """``SERVICES_COUNT=N`` with ``SVC_<i>_REPO/PORT/REF/NAME/USER/CMD`` for i = 1..N."""
    result = ParseResult()
    raw_count = env.get("SERVICES_COUNT", "").strip()
    if not raw_count:
        return result
    if not (raw_count.isascii() and raw_count.isdigit()):
        result.errors.append(SpecError("SERVICES_COUNT", "count", f"must be a whole number, got {raw_count[:20]!r}"))
        return result
    for i in range(1, int(raw_count) + 1):
        fields = {f: env.get(f"SVC_{i}_{f.upper()}", "") for f in SERVICE_FIELDS}
        if not fields["repo"].strip():
            result.warnings.append(f"SVC_{i}_REPO is not set; service {i} of SERVICES_COUNT={raw_count} skipped")
            continue
        try:
            result.specs.append(make_spec(f"SVC_{i}", "env", fields))
        except SpecError as err:
            result.errors.append(err)
    return result


def legacy_variables(env: Mapping[str, str]) -> list[str]:
    return sorted(k for k in env if k.startswith(("SERVICE_A_", "SERVICE_B_")))


# ---------------------------------------------------------------- YAML file


def parse_yaml_entry(origin: str, entry: Any) -> ServiceSpec:
    if not isinstance(entry, Mapping):
        raise SpecError(origin, "entry", f"must be a mapping, got {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in YAML_FIELDS)
    if unknown:
        raise SpecError(origin, unknown[0], f"unknown key (known: {', '.join(sorted(YAML_FIELDS))})")
    for key in ("repo", "ref", "name", "user", "cmd", "command", "sha256"):
        if key in entry and entry[key] is not None and not isinstance(entry[key], str):
            raise SpecError(origin, key, f"must be a string, got {type(entry[key]).__name__}")
    if "cmd" in entry and "command" in entry:
        raise SpecError(origin, "command", "give either cmd or command, not both")
    fields = dict(entry)
    fields["cmd"] = entry.get("cmd", entry.get("command"))
    base = make_spec(origin, "file", fields)
    autostart = entry.get("autostart", True)
    if not isinstance(autostart, bool):
        raise SpecError(origin, "autostart", f"must be true or false, got {autostart!r}")
    allow_system_path = entry.get("allow_system_path", False)
    if not isinstance(allow_system_path, bool):
        raise SpecError(origin, "allow_system_path", f"must be true or false, got {allow_system_path!r}")
    sha256 = entry.get("sha256")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise SpecError(origin, "sha256", "must be 64 hexadecimal characters")
    return replace(
        base,
        env=parse_env(origin, entry.get("env")),
        health=parse_health(origin, entry.get("health")),
        autostart=autostart,
        sha256=sha256.lower() if sha256 else None,
        keep=parse_keep(origin, entry["keep"]) if "keep" in entry else ("data",),
        allow_hosts=tuple(parse_host(origin, h) for h in _str_list(origin, "allow_hosts", entry["allow_hosts"]))
        if "allow_hosts" in entry else (),
        limits=parse_limits(origin, entry),
        allow_system_path=allow_system_path,
    )


def parse_services_yaml(text: str, source: str) -> ParseResult:
    """The YAML services file: a list of entries, or a mapping with a ``services:`` list."""
    import yaml  # imported here: only boot and deploy read YAML

    result = ParseResult()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        result.errors.append(SpecError(source, "yaml", str(exc).replace("\n", " ")))
        return result
    if doc is None:
        return result
    if isinstance(doc, Mapping):
        unknown = sorted(str(k) for k in doc if k != "services")
        if unknown:
            result.errors.append(SpecError(source, unknown[0], "unknown top-level key (expected: services)"))
        doc = doc.get("services") or []
    if not isinstance(doc, list):
        result.errors.append(SpecError(source, "services", "must be a list of service entries"))
        return result
    for index, entry in enumerate(doc, start=1):
        try:
            result.specs.append(parse_yaml_entry(f"{source}#{index}", entry))
        except SpecError as err:
            err.hint = err.hint or (name_hint(entry) if isinstance(entry, Mapping) else "")
            result.errors.append(err)
    return result


# ---------------------------------------------------------------- pre-seeded folders


IDENTITY_META = (".maestro-name", ".maestro-user")


def _read_meta(fd: int, folder: Path, name: str, warnings: list[str]) -> str | None:
    """A metadata file, read through the folder's descriptor: a link, FIFO or oversized file
    is an error for this folder. Identity files count only when the operator wrote them."""
    origin = f"pre-seeded {folder}"
    identity = name in IDENTITY_META
    ignored = f"{origin}: {name} ignored: not a root-owned regular file (a service may have written it; " \
              "only the operator sets a service's name and user)"
    if identity and not _operator_owned(safefs.owner_at(fd, name)):
        warnings.append(ignored)  # never even opened
        return None
    try:
        found = safefs.read_stat_at(fd, name, folder / name, limit=MAX_FIELD)
    except safefs.UnsafeFile as exc:
        raise SpecError(origin, name, exc.reason) from None
    if found is None:
        return None
    if identity and not _operator_owned(found[1]):  # swapped since it was looked at
        warnings.append(ignored)
        return None
    return found[0].decode("utf-8", "replace").strip()


def _operator_owned(st: os.stat_result | None) -> bool:
    """Missing, or a singly-linked regular file owned by root (the runtime's own user)."""
    return st is None or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid())


def _has_content(fd: int) -> bool:
    return any(not name.startswith(".maestro-") for name in os.listdir(fd))


def parse_preseeded_folder(folder: Path, env: Mapping[str, str], mode: str,
                           warnings: list[str] | None = None) -> ServiceSpec | None:
    """One pre-seeded folder -> a spec, None when skipped (disabled, empty in auto mode)."""
    if mode == "never":
        return None
    try:
        with safefs.opened_dir(folder, under=folder.parent) as fd:
            return _parse_folder(fd, folder, env, mode, [] if warnings is None else warnings)
    except safefs.UnsafeFile as exc:
        raise SpecError(f"pre-seeded {folder}", "folder", exc.reason) from None


def _parse_folder(fd: int, folder: Path, env: Mapping[str, str], mode: str, warnings: list[str],
                  ) -> ServiceSpec | None:
    origin = f"pre-seeded {folder}"
    if safefs.exists(fd, ".maestro-disable"):  # any entry counts; a link is never followed
        return None
    raw_name = _read_meta(fd, folder, ".maestro-name", warnings) or folder.name
    name = parse_name(origin, raw_name) or folder.name
    key = env_key(sanitize_name(name))

    def pick(var: str, meta: str) -> str | None:
        value = env.get(f"MAESTRO_{var}_{key}")
        return value if value is not None and value.strip() else _read_meta(fd, folder, meta, warnings)

    cmd = pick("CMD", ".maestro-cmd")
    if mode == "auto" and not cmd and not _has_content(fd):
        return None
    return ServiceSpec(
        origin=origin,
        kind="preseeded",
        directory=folder,
        name=name,
        port=parse_port(origin, pick("PORT", ".maestro-port")),
        user=parse_user(origin, pick("USER", ".maestro-user")),
        cmd=parse_cmd(origin, cmd),
    )


def parse_preseeded(roots: Iterable[Path], env: Mapping[str, str], mode: str) -> ParseResult:
    result = ParseResult()
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder.is_symlink() or folder.name.startswith("."):
                continue
            try:
                spec = parse_preseeded_folder(folder, env, mode, result.warnings)
            except SpecError as err:
                err.hint = sanitize_name(folder.name)
                result.errors.append(err)
                continue
            except OSError as err:
                result.errors.append(SpecError(f"pre-seeded {folder}", "folder", err.strerror or str(err)))
                continue
            if spec is not None:
                result.specs.append(spec)
    return result
