"""The environment forms (``SERVICES``, ``SERVICES_COUNT`` + ``SVC_<i>_*``) and the YAML services file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from maestro_runtime.spec.envvars import interpolate_all, parse_dotenv, prefixed
from maestro_runtime.spec.fields import (
    make_spec,
    name_hint,
    parse_env,
    parse_health,
    parse_host,
    parse_keep,
    parse_limits,
    parse_policy,
    str_list,
)
from maestro_runtime.spec.model import ParseResult, ServiceSpec, SpecError
from maestro_runtime.spec.tasks import TASK_FIELDS, task_fields

SERVICE_FIELDS = ("repo", "port", "ref", "name", "user", "cmd")
YAML_FIELDS = frozenset(
    {*SERVICE_FIELDS, "command", "env", "env_file", "release", "processes", "health", "autostart", "sha256", "keep",
     "allow_hosts", "memory", "cpu_quota_us", "cpu_period_us", "pids_max", "allow_system_path", *TASK_FIELDS,
     "restart", "backoff", "max_restarts", "restart_on_unhealthy", "essential"}
)


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
    """``SERVICES_COUNT=N`` with ``SVC_<i>_REPO/PORT/REF/NAME/USER/CMD`` for i = 1..N,
    and ``SVC_<i>_ENV_<KEY>`` for the service's environment."""
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
        extra = {f: env.get(f"SVC_{i}_{f.upper()}") for f in TASK_FIELDS}
        try:
            spec = make_spec(f"SVC_{i}", "env", fields)
            result.specs.append(replace(spec, env=parse_env(f"SVC_{i}", prefixed(env, f"SVC_{i}_ENV_")),
                                        **task_fields(spec.origin, extra)))
        except SpecError as err:
            err.hint = err.hint or name_hint(fields)
            result.errors.append(err)
    return result


def legacy_variables(env: Mapping[str, str]) -> list[str]:
    return sorted(k for k in env if k.startswith(("SERVICE_A_", "SERVICE_B_")))


# ---------------------------------------------------------------- YAML file


def _env_files(origin: str, raw: Any, base: Path | None) -> dict[str, str]:
    """``env_file:`` (one path or a list), relative to the services file's folder; later files win."""
    env: dict[str, str] = {}
    for name in [raw] if isinstance(raw, str) else str_list(origin, "env_file", raw):
        path = Path(name) if Path(name).is_absolute() or base is None else base / name
        try:
            env.update(parse_dotenv(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(origin, "env_file", f"{path} cannot be read ({type(exc).__name__})") from None
    return env


def parse_yaml_entry(origin: str, entry: Any, environ: Mapping[str, str] | None = None,
                     folder: Path | None = None) -> ServiceSpec:
    if not isinstance(entry, Mapping):
        raise SpecError(origin, "entry", f"must be a mapping, got {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in YAML_FIELDS)
    if unknown:
        raise SpecError(origin, unknown[0], f"unknown key (known: {', '.join(sorted(YAML_FIELDS))})")
    for key in ("repo", "ref", "name", "user", "cmd", "command", "sha256", "release"):
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
        # env_file first, env: over it (compose); ${VAR} from the container's environment
        env=parse_env(origin, {**_env_files(origin, entry["env_file"], folder),
                               **interpolate_all(origin, parse_env(origin, entry.get("env")), environ or {})}
                      if "env_file" in entry else
                      interpolate_all(origin, parse_env(origin, entry.get("env")), environ or {})),
        health=parse_health(origin, entry.get("health")),
        autostart=autostart,
        sha256=sha256.lower() if sha256 else None,
        keep=parse_keep(origin, entry["keep"]) if "keep" in entry else ("data",),
        allow_hosts=tuple(parse_host(origin, h) for h in str_list(origin, "allow_hosts", entry["allow_hosts"]))
        if "allow_hosts" in entry else (),
        limits=parse_limits(origin, entry),
        policy=parse_policy(origin, entry),
        allow_system_path=allow_system_path,
        **task_fields(origin, entry),
        release=(entry.get("release") or "").strip() or None,
        processes=_processes(origin, entry.get("processes")),
    )


_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}\Z")


def _processes(origin: str, raw: Any) -> dict[str, str]:
    """``processes: {worker: "celery ...", clock: "..."}``: extra programs ``<service>-<type>``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(origin, "processes", f"must be a mapping of type: command, got {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _TYPE_RE.match(key) or key in ("web", "release"):
            raise SpecError(origin, "processes", f"{str(key)[:40]!r} is not a process type "
                                                 "(lower-case letters, digits, _; not web or release)")
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise SpecError(origin, f"processes.{key}", "must be a non-empty command")
        out[key] = value.strip()
    return out


def parse_services_yaml(text: str, source: str, environ: Mapping[str, str] | None = None) -> ParseResult:
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
            result.specs.append(parse_yaml_entry(f"{source}#{index}", entry, environ, Path(source).parent))
        except SpecError as err:
            err.hint = err.hint or (name_hint(entry) if isinstance(entry, Mapping) else "")
            result.errors.append(err)
    return result
