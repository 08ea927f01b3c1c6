"""What ``maestro export`` renders from (pure): options, units, sizes, the services file, notes, YAML.

:mod:`.kubernetes` and :mod:`.compose` turn these into manifests; :mod:`.export` is the entry point.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from maestro_runtime.sandbox.cgroups import DEFAULT_PERIOD_US
from maestro_runtime.sandbox.cgroups import Limits as SandboxDefaults
from maestro_runtime.sources.fetch import local_path
from maestro_runtime.spec import DEFAULT_REF, ParseResult, ServiceSpec
from maestro_runtime.spec.fields import health_yaml, policy_yaml
from maestro_runtime.spec.naming import unique_id
from maestro_runtime.spec.sizes import format_size, parse_size

TARGETS = ("kubernetes", "compose")
DEFAULT_NAME = "maestro"
DEFAULT_IMAGE = "ghcr.io/maestro-runtime/maestro-runtime:latest"
# Under /etc/maestro on purpose: the sandbox hides that folder from the services
# (one service's spec may hold another's secrets).
SERVICES_FILE = "/etc/maestro/services.yml"
# compose: the services file's name beside compose.yaml (split: <id>.services.yml)
COMPOSE_SERVICES_FILE = "services.yml"
HEALTHCHECK = ("/usr/bin/python3", "-I", "-S", "/opt/maestro/healthcheck/healthcheck.py")
# Is a one-entry runtime's entry what the runtime's own depends_on waits for (tasks/gate.py):
# a task that succeeded, a service RUNNING whose probe passes (list-services)? The image's
# HEALTHCHECK says neither: it passes while services are still starting (a long build must not
# fail it) and ignores tasks (their phases are list-services'). Split exports use it: compose's
# healthcheck of a container others wait for, Kubernetes' readiness.
READY = ("/usr/local/bin/list-services", "--ready")
# What per-project users need (README "Accounts and capabilities"); everything else is dropped.
IDENTITY_CAPS = ("CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL")
TMPFS = (("tmp", "/tmp", "64Mi", "rw,noexec,nosuid,size=64m"), ("run", "/run", "16Mi", "rw,nosuid,size=16m"))
# name, mount path, size of the claim (state also holds the fetched projects).
VOLUMES = (("state", "/var/lib/maestro", "10Gi"), ("home", "/home", "5Gi"), ("projects", "/opt/projects", "1Gi"))
# The hardened run's size for the all-in-one runtime: --memory 1g --cpus 1.0 --pids-limit 512.
RUNTIME_MEMORY = 1 << 30
RUNTIME_MILLICPU = 1000
RUNTIME_PIDS = 512
# supervisord, the runtime and the log listener beside one service (split mode).
OVERHEAD_MEMORY = 128 << 20
OVERHEAD_MILLICPU = 100
OVERHEAD_PIDS = 64
_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$")
LABEL = "app.kubernetes.io"
HEADER = "# Rendered by `maestro export {args}` from the service specs: render again rather than edit.\n"


class ExportError(Exception):
    """A reason the specs cannot be exported; one line."""


@dataclass(frozen=True)
class Options:
    target: str
    name: str = DEFAULT_NAME
    image: str = DEFAULT_IMAGE
    split: bool = False

    @property
    def args(self) -> str:
        return " ".join([self.target, *(["--split"] if self.split else [])])


@dataclass(frozen=True)
class Unit:
    """One exported service: the program id the runtime gives it, its spec, and the name of
    its Kubernetes objects (unique too: ``web_app`` and ``web-app`` would both be ``web-app``)."""

    id: str
    spec: ServiceSpec
    dns: str


@dataclass(frozen=True)
class Resources:
    memory: int | None  # bytes; None: no limit
    millicpu: int | None  # None: no limit
    pids: int | None


@dataclass(frozen=True)
class Export:
    files: Mapping[str, str]  # file name -> text
    notes: tuple[str, ...]

    def text(self) -> str:
        """Every manifest as one stream (what is printed without --output)."""
        return "---\n".join(text for name, text in self.files.items() if name.endswith(".yaml"))


# ---------------------------------------------------------------- checks and names


def check_options(options: Options) -> Options:
    if options.target not in TARGETS:
        raise ExportError(f"target: {options.target!r} is not one of {', '.join(TARGETS)}")
    if not _NAME_RE.match(options.name):
        raise ExportError(f"name: {options.name!r} must be a DNS label: a-z, 0-9 and '-', "
                          "starting with a letter, at most 30 characters")
    if not options.image or any(c.isspace() or ord(c) < 32 for c in options.image):
        raise ExportError(f"image: {options.image!r} is not an image reference")
    return options


def units_of(parsed: ParseResult, name: str = DEFAULT_NAME) -> tuple[Unit, ...]:
    """Program ids as the runtime assigns them (reconcile.assign_ids): input order, web, web-1..."""
    if parsed.errors:
        raise ExportError("fix the specs first: " + "; ".join(str(e) for e in parsed.errors))
    specs = [s for s in parsed.specs if s.kind != "preseeded"]
    if not specs:
        raise ExportError("no services to export: MAESTRO_SERVICES_FILE, SERVICES and SVC_* name none "
                          "(pre-seeded folders are not exported: list them in the YAML file)")
    taken: set[str] = set()
    dns_taken: set[str] = {name}  # the headless Service of the all-in-one export
    units = []
    for spec in specs:
        program_id = unique_id(spec.base_name, taken)
        taken.add(program_id)
        dns = dns_name(unique_id(dns_name(name, program_id), dns_taken))
        dns_taken.add(dns)
        units.append(Unit(program_id, spec, dns))
    ports: dict[int, str] = {}
    for unit in units:
        if unit.spec.port is not None and unit.spec.port in ports:
            raise ExportError(f"{unit.spec.origin}: port: {unit.spec.port} is also {ports[unit.spec.port]}'s")
        if unit.spec.port is not None:
            ports[unit.spec.port] = unit.id
    return tuple(units)


def dns_name(*parts: str) -> str:
    """A Kubernetes object name (DNS-1035 label): '-' for '_', at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    if len(name) > 63:  # keep it unique: a hash of the whole in place of the tail
        name = name[:54].rstrip("-") + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


# ---------------------------------------------------------------- the services file


def service_entry(unit: Unit, known: Collection[str] | None = None) -> dict[str, Any]:
    """The YAML entry the runtime reads back as the same spec (named by its id, so ids stay).
    ``known``: the names in the same file; a wait on any other is dropped, since the runtime
    refuses a depends_on it cannot see (split: compose's depends_on orders the containers)."""
    spec, limits = unit.spec, unit.spec.limits
    waits = {k: v for k, v in spec.depends_on.items() if known is None or k in known}
    entry: dict[str, Any] = {"name": unit.id, "repo": spec.repo}
    optional: Iterable[tuple[str, Any, Any]] = (
        ("ref", spec.ref, DEFAULT_REF),
        ("port", spec.port, None),
        ("user", spec.user, None),
        ("cmd", spec.cmd, None),
        ("env", dict(spec.env), {}),
        ("health", health_yaml(spec.health), "/"),
        ("autostart", spec.autostart, True),
        ("sha256", spec.sha256, None),
        ("keep", list(spec.keep), ["data"]),
        ("allow_hosts", list(spec.allow_hosts), []),
        ("memory", limits.memory, None),
        ("cpu_quota_us", limits.cpu_quota_us, None),
        ("cpu_period_us", limits.cpu_period_us, None),
        ("pids_max", limits.pids_max, None),
        ("allow_system_path", spec.allow_system_path, False),
        ("kind", spec.role, "service"),
        ("schedule", spec.schedule, None),
        ("catch_up", spec.catch_up, False),
        ("depends_on", waits, {}),
        ("workspace", spec.workspace, None),
        ("release", spec.release, None),
        ("processes", dict(spec.processes), {}),
    )
    entry.update({key: value for key, value, default in optional if value != default})
    entry.update(policy_yaml(spec.policy))  # restart, backoff, max_restarts, restart_on_unhealthy, essential
    return entry


def services_yaml(units: Sequence[Unit]) -> str:
    known = {u.id for u in units} | {u.spec.base_name for u in units}
    return dump({"services": [service_entry(u, known) for u in units]})


# ---------------------------------------------------------------- sizes


def service_resources(spec: ServiceSpec) -> Resources:
    """One service's pod: its sandbox limits (the runtime's defaults where the spec has none)
    plus what the runtime beside it needs."""
    defaults = SandboxDefaults()
    memory = parse_size(spec.limits.memory) if spec.limits.memory else defaults.memory
    quota = spec.limits.cpu_quota_us or defaults.cpu_quota_us
    period = spec.limits.cpu_period_us or defaults.cpu_period_us or DEFAULT_PERIOD_US
    pids = spec.limits.pids_max or defaults.pids_max
    return Resources(
        memory=None if memory is None else memory + OVERHEAD_MEMORY,
        millicpu=None if quota is None else math.ceil(quota * 1000 / period) + OVERHEAD_MILLICPU,
        pids=None if pids is None else pids + OVERHEAD_PIDS,
    )


def quantity(size: int) -> str:
    """Bytes -> a Kubernetes quantity in binary units (512Mi)."""
    text = format_size(size)
    return text + "i" if text[-1] in "KMGT" else text


def cpu_quantity(millicpu: int) -> str:
    return str(millicpu // 1000) if millicpu % 1000 == 0 else f"{millicpu}m"


def runtime_resources() -> Resources:
    return Resources(RUNTIME_MEMORY, RUNTIME_MILLICPU, RUNTIME_PIDS)


# ---------------------------------------------------------------- notes: what does not move


def is_local_source(spec: ServiceSpec) -> bool:
    return bool(spec.repo) and local_path(spec.repo) is not None


def notes_for(units: Sequence[Unit], options: Options, warnings: Iterable[str] = ()) -> tuple[str, ...]:
    kube = options.target == "kubernetes"
    notes = [f"warning: {w}" for w in warnings]
    if options.split:
        notes.append("Each service runs in its own pod (compose: container) now: services that reached each "
                     "other on 127.0.0.1 must use the other's Service (compose: service) name instead.")
        if kube:
            notes.append("Kubernetes has no per-pod process limit: pids_max stays the sandbox's limit inside "
                         "the pod; the pod itself is limited by the node's pod pid limit.")
    else:
        notes.append("One runtime holds every service: it scales up, not out; `--split` gives one "
                     + ("Deployment" if kube else "compose service") + " per service.")
    if not kube:
        names = [f"{u.id}.{COMPOSE_SERVICES_FILE}" for u in units] if options.split else [COMPOSE_SERVICES_FILE]
        notes.append(f"compose.yaml mounts {', '.join(names)} from its own folder (Docker Compose refuses inline "
                     "configs in a read-only service): keep them together; `--output` writes them all, printing "
                     "gives compose.yaml alone.")
    if kube:
        notes.append("Startup and liveness probes run `maestro-healthcheck --live`: they restart the pod only "
                     "when the runtime itself stops working (supervisord or its controller), never for one "
                     "service; a service that gives up stops the pod only when it is `essential`. Readiness "
                     + ("is the service's own probe verdict (running and its probe passing; a task: succeeded), "
                        "not the HEALTHCHECK, which passes while the service is still starting." if options.split else
                        "is --live too: with every service in one pod, one failing service must not take the "
                        "others out of their Services (list-services and the metrics show each one)."))
    for unit in units:
        spec = unit.spec
        if spec.allow_hosts:
            notes.append(
                f"{unit.id}: egress allowlist by host name ({', '.join(spec.allow_hosts)}) cannot move out of "
                "the runtime: it is enforced inside the container (the sandbox's proxy for builds, iptables with "
                "NET_ADMIN for the service, which this export does not grant)"
                + ("; a NetworkPolicy matches addresses, not names." if kube else "."))
        if is_local_source(spec):
            notes.append(
                f"{unit.id}: its source {spec.repo} is a folder of the machine that runs the runtime "
                "(a shared worktree): it does not exist in a new "
                + ("pod" if kube else "container")
                + "; put it in a git repository or an archive, or on the projects volume.")
        if options.split and spec.depends_on:
            notes.append(f"{unit.id}: its one-service file drops depends_on ({', '.join(spec.depends_on)}): the "
                         "runtime cannot wait on services of other " + ("pods; Kubernetes starts the pod without "
                         "waiting, so it must retry until they answer." if kube else "containers; compose's "
                         "depends_on orders the containers instead."))
        if options.split and not kube and spec.role == "task":
            notes.append(f"{unit.id}: a task: its container stays up after the task (the runtime does); its "
                         "healthcheck turns healthy once the task has succeeded, and containers waiting for it "
                         "to complete wait for that (service_healthy).")
        if spec.port is None and spec.role != "task":  # a task serves nothing: no port to publish
            notes.append(f"{unit.id}: no fixed port, so it gets one at boot and is not published; give it a port.")
    return tuple(notes)


def notes_markdown(options: Options, notes: Sequence[str]) -> str:
    lines = [f"# What `maestro export {options.args}` could not carry over", ""]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    """Block style, and multi-line strings (the services file, commands) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:  # a repeated label map is written out, not as &id001
        return True


# Line breaks to a YAML reader (1.1) that PyYAML's emitter writes as they are, in block and
# single-quoted scalars: read back as a newline or a space ("a\x85b" -> "a b"). Double quotes escape them.
_BREAKS = "\x85\u2028\u2029"


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if any(c in value for c in _BREAKS):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") and value == value.strip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=1000)


def dump_all(documents: Sequence[Any]) -> str:
    return "---\n".join(dump(d) for d in documents)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
