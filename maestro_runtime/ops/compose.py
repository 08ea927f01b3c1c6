"""``maestro export --target compose``: one compose file (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maestro_runtime.ops import manifests as mf
from maestro_runtime.spec import ServiceSpec
from maestro_runtime.spec.sizes import format_size

# ---------------------------------------------------------------- compose


def depends_on(spec: ServiceSpec) -> tuple[str, ...]:
    """The services this one needs first (``depends_on``; a mapping name -> condition)."""
    return tuple(getattr(spec, "depends_on", ()) or ())


# "completed" too is mf.READY turning healthy: a runtime stays up after its task, never completing itself.
COMPOSE_CONDITIONS = {"started": "service_started", "healthy": "service_healthy", "completed": "service_healthy"}


# mf.READY every 10 s, failures uncounted for an hour (a long build); no start_interval: Docker
# Compose refuses it below Engine 25, podman-compose passes a flag podman 4.3 does not have.
READY_HEALTHCHECK = {"test": ["CMD", *mf.READY], "interval": "10s", "timeout": "10s", "start_period": "1h",
                     "retries": 3}


def compose_condition(spec: ServiceSpec, name: str) -> str:
    conditions = getattr(spec, "depends_on", None)
    condition = conditions.get(name, "healthy") if isinstance(conditions, Mapping) else "healthy"
    return COMPOSE_CONDITIONS.get(condition, "service_healthy")


def services_mount(file_name: str) -> dict[str, Any]:
    """The services file, written beside compose.yaml, mounted read-only. Not a compose `config`:
    Docker Compose refuses inline content in a read_only service, podman-compose mounts no configs.
    A missing file is an error rather than an empty folder mounted in its place."""
    return {"type": "bind", "source": f"./{file_name}", "target": mf.SERVICES_FILE, "read_only": True,
            "bind": {"create_host_path": False}}


def compose_runtime(options: mf.Options, units: Sequence[mf.Unit], res: mf.Resources, services_file: str,
                    volume_prefix: str) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": options.image,
        "restart": "unless-stopped",
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": list(mf.IDENTITY_CAPS),
        "security_opt": ["no-new-privileges:true"],
        "tmpfs": [f"{path}:{opts}" for _, path, _, opts in mf.TMPFS],
        "volumes": [*(f"{volume_prefix}{n}:{p}" for n, p, _ in mf.VOLUMES), services_mount(services_file)],
        "ports": [f"{u.spec.port}:{u.spec.port}" for u in units if u.spec.port is not None],
        "healthcheck": {"test": ["CMD", *mf.HEALTHCHECK], "interval": "30s", "timeout": "5s",
                        "start_period": "20s", "retries": 3},
        "stop_grace_period": "30s",
    }
    if res.memory is not None:
        service["mem_limit"] = format_size(res.memory).lower()
    if res.millicpu is not None:
        service["cpus"] = res.millicpu / 1000
    if res.pids is not None:
        service["pids_limit"] = res.pids
    return service


def compose(units: Sequence[mf.Unit], options: mf.Options) -> dict[str, str]:
    services: dict[str, Any] = {}
    files: dict[str, str] = {}  # the services files, beside compose.yaml
    volumes: dict[str, Any] = {}
    if not options.split:
        files[mf.COMPOSE_SERVICES_FILE] = mf.services_yaml(units)
        services[options.name] = compose_runtime(options, units, mf.runtime_resources(), mf.COMPOSE_SERVICES_FILE,
                                                 "")
        volumes.update({n: {} for n, _, _ in mf.VOLUMES})
    else:
        ids = {u.id for u in units}
        awaited = {d for u in units for d in depends_on(u.spec)
                   if compose_condition(u.spec, d) == "service_healthy"}
        for unit in units:
            file_name = f"{unit.id}.{mf.COMPOSE_SERVICES_FILE}"
            files[file_name] = mf.services_yaml([unit])
            service = compose_runtime(options, [unit], mf.service_resources(unit.spec), file_name, f"{unit.id}-")
            if unit.spec.role == "task" or unit.id in awaited:
                service["healthcheck"] = dict(READY_HEALTHCHECK)
            needs = [d for d in depends_on(unit.spec) if d in ids]
            if needs:
                service["depends_on"] = {d: {"condition": compose_condition(unit.spec, d)} for d in needs}
            services[unit.id] = service
            volumes.update({f"{unit.id}-{n}": {} for n, _, _ in mf.VOLUMES})
    document = {"name": options.name, "services": services, "volumes": volumes}
    return {"compose.yaml": mf.HEADER.format(args=options.args) + mf.dump(document), **files}
