"""Field checks: one raw value in, a valid value or a :class:`SpecError` naming origin and field out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maestro_runtime.spec.durations import parse_duration
from maestro_runtime.spec.model import (
    DEFAULT_REF,
    Backoff,
    Health,
    Limits,
    RestartPolicy,
    ServiceSpec,
    SpecError,
)
from maestro_runtime.spec.naming import name_from_repo, reserved, sanitize_name, valid_user
from maestro_runtime.spec.sizes import SIZE_FORM, format_size, parse_size

MAX_FIELD = 64 * 1024
_REF_RE = re.compile(r"^[A-Za-z0-9._/@+-]{1,255}\Z")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


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


def _http_path(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("/") and not any(c.isspace() or ord(c) < 32 for c in value):
        return value
    return None


_HEALTH_KEYS = ("http", "tcp", "exec", "expect", "interval", "timeout", "retries", "start_period")


def _seconds(origin: str, name: str, raw: Any) -> float:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise SpecError(origin, name, str(exc)) from None


def parse_health(origin: str, raw: Any) -> Health:
    """A string (``/healthz`` or ``tcp``), or a mapping with one of http, tcp, exec and the timings."""
    if raw is None:
        return Health()
    if isinstance(raw, str):
        value = raw.strip()
        if value == "tcp":
            return Health(kind="tcp")
        if _http_path(value):
            return Health(kind="http", path=value)
    if not isinstance(raw, Mapping):
        raise SpecError(origin, "health",
                        f"must be an HTTP path like /healthz, 'tcp' or a mapping, got {str(raw)[:40]!r}")
    unknown = sorted(str(k) for k in raw if k not in _HEALTH_KEYS)
    if unknown:
        raise SpecError(origin, f"health.{unknown[0]}", f"unknown key (known: {', '.join(_HEALTH_KEYS)})")
    kinds = [k for k in ("http", "tcp", "exec") if k in raw]
    if len(kinds) != 1:
        raise SpecError(origin, "health", "give exactly one of http, tcp or exec")
    kind, value = kinds[0], raw[kinds[0]]
    path, command = "/", None
    if kind == "http" and not (path := _http_path(value) or ""):
        raise SpecError(origin, "health.http", f"must be a path like /healthz, got {str(value)[:40]!r}")
    if kind == "tcp" and value is not True:
        raise SpecError(origin, "health.tcp", "must be true")
    if kind == "exec":
        if not isinstance(value, str) or not value.strip():
            raise SpecError(origin, "health.exec", "must be a command")
        command = _text(origin, "health.exec", value.strip())
    expect = raw.get("expect")
    if expect is not None and (kind != "http" or isinstance(expect, bool) or not isinstance(expect, int)
                               or not 100 <= expect <= 599):
        raise SpecError(origin, "health.expect", "must be an HTTP status (100-599), with http only")
    retries = raw.get("retries")
    if retries is not None:
        retries = _int(origin, "health.retries", retries)
    timings = {k: _seconds(origin, f"health.{k}", raw[k]) for k in ("interval", "timeout", "start_period") if k in raw}
    if timings.get("interval") == 0 or timings.get("timeout") == 0:
        raise SpecError(origin, "health", "interval and timeout must be above zero")
    return Health(kind=kind, path=path or "/", expect=expect, command=command, retries=retries, **timings)


def parse_policy(origin: str, entry: Mapping[str, Any]) -> RestartPolicy:
    """restart, backoff, max_restarts, restart_on_unhealthy, essential: unset fields stay None (env default)."""
    restart = entry.get("restart")
    if restart is not None and restart not in ("always", "on-failure", "never"):
        raise SpecError(origin, "restart", f"must be always, on-failure or never, got {str(restart)[:20]!r}")
    max_restarts = entry.get("max_restarts")
    if max_restarts is not None and (isinstance(max_restarts, bool) or not isinstance(max_restarts, int)
                                     or max_restarts < 0):
        raise SpecError(origin, "max_restarts", f"must be a whole number >= 0 (0: forever), got {max_restarts!r}")
    flags = {}
    for key in ("restart_on_unhealthy", "essential"):
        flags[key] = entry.get(key, False)
        if not isinstance(flags[key], bool):
            raise SpecError(origin, key, f"must be true or false, got {flags[key]!r}")
    raw = entry.get("backoff")
    backoff = Backoff()
    if raw is not None:
        if not isinstance(raw, Mapping) or any(k not in ("initial", "factor", "max") for k in raw):
            raise SpecError(origin, "backoff", "must be a mapping with initial, factor and/or max")
        factor = raw.get("factor")
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                                   or not 1 <= factor <= 100):
            raise SpecError(origin, "backoff.factor", f"must be a number from 1 to 100, got {factor!r}")
        backoff = Backoff(
            initial=_seconds(origin, "backoff.initial", raw["initial"]) if "initial" in raw else None,
            factor=float(factor) if factor is not None else None,
            max=_seconds(origin, "backoff.max", raw["max"]) if "max" in raw else None,
        )
    return RestartPolicy(restart=restart, backoff=backoff, max_restarts=max_restarts, **flags)


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


def health_yaml(health: Health) -> Any:
    """The YAML form that parses back to ``health`` (the short string when it is enough)."""
    extra = {k: v for k, v in health.as_record().items() if k not in ("kind", "path", "command")}
    if not extra and health.kind != "exec":
        return "tcp" if health.kind == "tcp" else health.path
    head = {"http": {"http": health.path}, "tcp": {"tcp": True}, "exec": {"exec": health.command}}[health.kind]
    return {**head, **extra}


def policy_yaml(policy: RestartPolicy) -> dict[str, Any]:
    """The YAML keys that parse back to ``policy`` (only those not left to the defaults)."""
    out = policy.as_record()
    return {k: v for k, v in out.items() if not (k in ("restart_on_unhealthy", "essential") and v is False)}
