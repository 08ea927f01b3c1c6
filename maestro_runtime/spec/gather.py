"""Collect every spec the environment asks for, in documented order:
pre-seeded folders, the YAML file, ``SERVICES``, ``SERVICES_COUNT`` + ``SVC_<i>_*``
(with ``MAESTRO_ENV_<SVC>_<KEY>`` for the last two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from maestro_runtime.settings import PRESEEDED_MODES, Settings
from maestro_runtime.spec import (
    ParseResult,
    ServiceSpec,
    SpecError,
    legacy_variables,
    parse_preseeded,
    parse_services_string,
    parse_services_yaml,
    parse_svc_vars,
)
from maestro_runtime.spec.envvars import env_var_name, prefixed
from maestro_runtime.spec.fields import parse_env
from maestro_runtime.spec.naming import name_from_repo


def gather_specs(settings: Settings, *, preseeded: bool = True) -> ParseResult:
    env = settings.environ
    result = ParseResult()
    legacy = legacy_variables(env)
    if legacy:
        result.errors.append(SpecError(
            "environment", "SERVICE_A_*/SERVICE_B_*",
            f"{', '.join(legacy)} are retired and ignored; use SERVICES=\"repo|port|ref|name|user|cmd;...\" "
            "or SERVICES_COUNT with SVC_<i>_REPO/PORT/REF/NAME/USER/CMD",
        ))
    if settings.preseeded_mode_raw not in PRESEEDED_MODES:
        result.warnings.append(
            f"MAESTRO_PRESEEDED_MODE={settings.preseeded_mode_raw!r} is not one of "
            f"{'|'.join(PRESEEDED_MODES)}; using auto"
        )
    if preseeded:
        result.extend(parse_preseeded(settings.preseeded_roots, env, settings.preseeded_mode))
    path = settings.services_file
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            result.errors.append(SpecError(str(path), "file", f"cannot be read: {exc}"))
        else:
            result.extend(parse_services_yaml(text, str(path), env))
    elif settings.services_file_explicit:
        result.errors.append(SpecError(str(path), "MAESTRO_SERVICES_FILE", "file does not exist"))
    from_env = ParseResult()
    from_env.extend(parse_services_string(env.get("SERVICES", "")))
    from_env.extend(parse_svc_vars(env))
    from_env.specs = [with_named_env(spec, env) for spec in from_env.specs]
    result.extend(from_env)
    from maestro_runtime.spec.tasks import check_dependencies
    from maestro_runtime.state.records import RecordStore

    check_dependencies(result, [r.id for r in RecordStore(settings.records_dir).all() if r.kind == "deploy"])
    return result


def with_named_env(spec: ServiceSpec, env: Mapping[str, str]) -> ServiceSpec:
    """``MAESTRO_ENV_<SVC>_<KEY>`` for a service of the environment forms (SVC: its name, upper case,
    ``-`` as ``_``); over ``SVC_<i>_ENV_<KEY>``."""
    name = spec.name or (name_from_repo(spec.repo) if spec.repo else "")
    named = prefixed(env, f"MAESTRO_ENV_{env_var_name(name)}_") if name else {}
    return replace(spec, env={**spec.env, **parse_env(spec.origin, named)}) if named else spec
