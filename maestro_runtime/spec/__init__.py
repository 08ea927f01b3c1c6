"""What the user asked for: service specs and their parsers (pure: a mapping, a YAML text or folders in, specs out).

Sources, in the order their specs are gathered (and program ids assigned): pre-seeded
folders, the YAML file, ``SERVICES``, then ``SERVICES_COUNT`` + ``SVC_<i>_*``. Every parser
returns the specs it could read plus one :class:`SpecError` per bad entry, so one bad
service never stops the others.

Modules: ``model`` (the value objects), ``fields`` (one check per field), ``parsers``
(environment forms and the YAML file), ``preseeded`` (folders and ``.maestro-*`` files),
``naming`` (names, ids, user names), ``gather`` (all of the above, in order).
"""

from importlib import import_module

# Loaded on first use (PEP 562): a command that needs one light module of the package (naming,
# sizes) does not pay for the parsers and YAML (~10 ms of every list-services).
_HOMES = {
    "fields": ("MAX_FIELD", "make_spec", "parse_env", "parse_host", "parse_port", "parse_ref"),
    "model": ("DEFAULT_REF", "Health", "Limits", "ParseResult", "ServiceSpec", "SpecError"),
    "parsers": ("SERVICE_FIELDS", "YAML_FIELDS", "legacy_variables", "parse_services_string", "parse_services_yaml",
                "parse_svc_vars", "parse_yaml_entry"),
    "preseeded": ("parse_preseeded", "parse_preseeded_folder"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_REF", "MAX_FIELD", "SERVICE_FIELDS", "YAML_FIELDS", "Health", "Limits", "ParseResult",
    "ServiceSpec", "SpecError", "legacy_variables", "make_spec", "parse_env", "parse_host",
    "parse_port", "parse_preseeded", "parse_preseeded_folder", "parse_ref", "parse_services_string",
    "parse_services_yaml", "parse_svc_vars", "parse_yaml_entry",
]
