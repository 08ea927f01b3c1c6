"""Collect every spec the environment asks for, in documented order:
pre-seeded folders, the YAML file, ``SERVICES``, ``SERVICES_COUNT`` + ``SVC_<i>_*``.
"""

from __future__ import annotations

from maestro_runtime.settings import PRESEEDED_MODES, Settings
from maestro_runtime.spec import (
    ParseResult,
    SpecError,
    legacy_variables,
    parse_preseeded,
    parse_services_string,
    parse_services_yaml,
    parse_svc_vars,
)


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
            result.extend(parse_services_yaml(text, str(path)))
    elif settings.services_file_explicit:
        result.errors.append(SpecError(str(path), "MAESTRO_SERVICES_FILE", "file does not exist"))
    result.extend(parse_services_string(env.get("SERVICES", "")))
    result.extend(parse_svc_vars(env))
    from maestro_runtime.spec.tasks import check_dependencies
    from maestro_runtime.state.records import RecordStore

    check_dependencies(result, [r.id for r in RecordStore(settings.records_dir).all() if r.kind == "deploy"])
    return result
