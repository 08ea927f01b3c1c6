"""Field checks: one raw value in, a valid value or a :class:`SpecError` naming origin and field out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maestro_runtime.spec.model import DEFAULT_REF, Health, Limits, ServiceSpec, SpecError
from maestro_runtime.spec.naming import name_from_repo, reserved, sanitize_name, valid_user
from maestro_runtime.spec.sizes import SIZE_FORM, format_size, parse_size

MAX_FIELD = 64 * 1024
_REF_RE = re.compile(r"^[A-Za-z0-9._/@+-]{1,255}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


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
    if ref and (not _REF_RE.match(ref) or ref.startswith("-") or ".." in ref):
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
    from maestro_runtime.sandbox.netpolicy import NetPolicyError, validate_host

    try:
        return validate_host(str(raw))
    except NetPolicyError as exc:
        raise SpecError(origin, "allow_hosts", str(exc)) from exc


def str_list(origin: str, name: str, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise SpecError(origin, name, "must be a list of strings")
    return raw


def _int(origin: str, name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise SpecError(origin, name, f"must be a positive whole number, got {raw!r}")
    return raw


def parse_keep(origin: str, raw: Any) -> tuple[str, ...]:
    keep = []
    for item in str_list(origin, "keep", raw):
        path = Path(item)
        if path.is_absolute() or ".." in path.parts or not item.strip():
            raise SpecError(origin, "keep", f"{item[:60]!r} must be a relative path inside the project")
        keep.append(str(path))
    return tuple(keep)


def parse_limits(origin: str, entry: Mapping[str, Any]) -> Limits:
    memory = entry.get("memory")
    if memory is not None:  # parsed once, here; recorded in its canonical form ("1GiB" -> "1G")
        try:
            memory = format_size(parse_size(str(memory)))
        except ValueError:
            raise SpecError(origin, "memory", f"must be {SIZE_FORM}, got {str(memory)[:20]!r}") from None
    return Limits(
        memory=memory,
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
