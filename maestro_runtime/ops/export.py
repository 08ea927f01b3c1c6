"""``maestro export``: Kubernetes and compose manifests from the service specs (pure rendering).

The input is what :func:`gather.gather_specs` reads (the YAML file, ``SERVICES``,
``SVC_*``), so a setup that outgrows one host moves without rewriting anything:

* default: one runtime (a StatefulSet, or one compose service) running every service,
  with the services file as a ConfigMap (compose: a config);
* ``split``: one runtime per service, each pod running the same image with a
  one-service file, sized from the spec's limits.

Everything here returns data or text; only :func:`write_files` touches the disk.
What a move cannot carry over is said in the notes (NOTES.md), never silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from maestro_runtime.ops.compose import compose
from maestro_runtime.ops.kubernetes import kubernetes
from maestro_runtime.ops.manifests import (
    DEFAULT_IMAGE,
    HEALTHCHECK,
    IDENTITY_CAPS,
    SERVICES_FILE,
    TARGETS,
    Export,
    ExportError,
    Options,
    Resources,
    Unit,
    check_options,
    dns_name,
    notes_for,
    notes_markdown,
    service_entry,
    service_resources,
    services_yaml,
    units_of,
)
from maestro_runtime.spec import ParseResult

__all__ = [
    "DEFAULT_IMAGE", "HEALTHCHECK", "IDENTITY_CAPS", "SERVICES_FILE", "TARGETS", "Export", "ExportError", "Options",
    "Resources", "Unit", "compose", "dns_name", "kubernetes", "render", "service_entry", "service_resources",
    "services_yaml", "units_of", "write_files",
]


# ---------------------------------------------------------------- entry points


def render(parsed: ParseResult, options: Options) -> Export:
    check_options(options)
    units = units_of(parsed, options.name)
    files = kubernetes(units, options) if options.target == "kubernetes" else compose(units, options)
    notes = notes_for(units, options, parsed.warnings)
    return Export({**files, "NOTES.md": notes_markdown(options, notes)}, notes)


def write_files(export: Export, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in export.files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
