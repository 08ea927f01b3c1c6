"""What the user asked for: service specs and their parsers (pure: a mapping, a YAML text or folders in, specs out).

Sources, in the order their specs are gathered (and program ids assigned): pre-seeded
folders, the YAML file, ``SERVICES``, then ``SERVICES_COUNT`` + ``SVC_<i>_*``. Every parser
returns the specs it could read plus one :class:`SpecError` per bad entry, so one bad
service never stops the others.

Modules: ``model`` (the value objects), ``fields`` (one check per field), ``parsers``
(environment forms and the YAML file), ``preseeded`` (folders and ``.maestro-*`` files),
``naming`` (names, ids, user names), ``gather`` (all of the above, in order).
"""

from maestro_runtime.spec.fields import MAX_FIELD, make_spec, parse_env, parse_host, parse_port, parse_ref
from maestro_runtime.spec.model import DEFAULT_REF, Health, Limits, ParseResult, ServiceSpec, SpecError
from maestro_runtime.spec.parsers import (
    SERVICE_FIELDS,
    YAML_FIELDS,
    legacy_variables,
    parse_services_string,
    parse_services_yaml,
    parse_svc_vars,
    parse_yaml_entry,
)
from maestro_runtime.spec.preseeded import parse_preseeded, parse_preseeded_folder

__all__ = [
    "DEFAULT_REF", "MAX_FIELD", "SERVICE_FIELDS", "YAML_FIELDS", "Health", "Limits", "ParseResult",
    "ServiceSpec", "SpecError", "legacy_variables", "make_spec", "parse_env", "parse_host",
    "parse_port", "parse_preseeded", "parse_preseeded_folder", "parse_ref", "parse_services_string",
    "parse_services_yaml", "parse_svc_vars", "parse_yaml_entry",
]
