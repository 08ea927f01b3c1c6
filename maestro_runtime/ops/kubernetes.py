"""``maestro export --target kubernetes``: StatefulSets, Services, ConfigMaps and claims (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maestro_runtime.ops.manifests import (
    HEADER,
    HEALTHCHECK,
    IDENTITY_CAPS,
    LABEL,
    OVERHEAD_MEMORY,
    OVERHEAD_MILLICPU,
    READY,
    SERVICES_FILE,
    TMPFS,
    VOLUMES,
    Options,
    Resources,
    Unit,
    cpu_quantity,
    dump_all,
    quantity,
    runtime_resources,
    service_resources,
    services_yaml,
    sha256,
)

# ---------------------------------------------------------------- Kubernetes


def labels(options: Options, unit: Unit | None = None) -> dict[str, str]:
    out = {f"{LABEL}/name": "maestro-runtime", f"{LABEL}/instance": options.name}
    if unit is not None:
        out[f"{LABEL}/component"] = unit.id
    return out


def k8s_resources(res: Resources) -> dict[str, Any]:
    """Requests = limits where there is a limit (the runtime's size is known, not guessed)."""
    limits: dict[str, str] = {}
    if res.memory is not None:
        limits["memory"] = quantity(res.memory)
    if res.millicpu is not None:
        limits["cpu"] = cpu_quantity(res.millicpu)
    requests = {"cpu": cpu_quantity(OVERHEAD_MILLICPU), "memory": quantity(OVERHEAD_MEMORY), **limits}
    return {"requests": requests, **({"limits": limits} if limits else {})}


def probe(period: int, failures: int, *, live: bool = False, command: Sequence[str] = ()) -> dict[str, Any]:
    command = list(command) or [*HEALTHCHECK, *(["--live"] if live else [])]
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures}


def container(options: Options, units: Sequence[Unit], res: Resources) -> dict[str, Any]:
    ports = [u.spec.port for u in units if u.spec.port is not None]
    mounts = [{"name": n, "mountPath": p} for n, p, _ in VOLUMES]
    mounts += [{"name": n, "mountPath": p} for n, p, _, _ in TMPFS]
    mounts.append({"name": "services", "mountPath": SERVICES_FILE, "subPath": "services.yml", "readOnly": True})
    return {
        "name": "maestro",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": p, "protocol": "TCP"} for p in ports],
        # The hardened run: read-only root, ALL dropped but the identity capabilities, no-new-privileges.
        # Root inside, because the runtime creates one user per service.
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": list(IDENTITY_CAPS)},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": k8s_resources(res),
        # Startup and liveness ask whether the runtime works (--live), never whether every service
        # does: a project whose build fails must not restart the pod, and every service with it.
        # Readiness is the service's own verdict where the pod holds one service (split: READY, as
        # the HEALTHCHECK passes while it starts); with all services in one pod, one failing
        # service must not take the others out of their Services.
        "startupProbe": probe(5, 60, live=True),
        "readinessProbe": probe(10, 3, command=READY) if options.split else probe(10, 3, live=True),
        "livenessProbe": probe(30, 3, live=True),
        "volumeMounts": mounts,
    }


def pod_template(options: Options, units: Sequence[Unit], res: Resources, services_text: str,
                 config_map: str, volumes: list[dict[str, Any]], unit: Unit | None) -> dict[str, Any]:
    volumes = [*volumes, *({"name": n, "emptyDir": {"medium": "Memory", "sizeLimit": size}} for n, _, size, _ in TMPFS)]
    volumes.append({"name": "services", "configMap": {"name": config_map}})
    return {
        "metadata": {
            "labels": labels(options, unit),
            # A changed services file rolls the pod: the runtime reads it at boot.
            "annotations": {"maestro-runtime.io/services-sha256": sha256(services_text)},
        },
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "enableServiceLinks": False,
            "containers": [container(options, units, res)],
            "volumes": volumes,
        },
    }


def config_map(name: str, options: Options, unit: Unit | None, text: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels(options, unit)}, "data": {"services.yml": text}}


def port_service(options: Options, unit: Unit, selector: Mapping[str, str]) -> dict[str, Any]:
    port = unit.spec.port
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": unit.dns, "labels": labels(options, unit)},
            "spec": {"selector": dict(selector),
                     "ports": [{"name": "tcp", "port": port, "targetPort": port, "protocol": "TCP"}]}}


def claim(name: str, size: str, options: Options, unit: Unit | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": labels(options, unit)},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def kubernetes_all_in_one(units: Sequence[Unit], options: Options) -> list[dict[str, Any]]:
    text = services_yaml(units)
    name = options.name
    selector = labels(options)
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": selector},
        "spec": {
            "serviceName": name,
            "replicas": 1,  # one runtime owns its volumes and its port ledger
            "selector": {"matchLabels": selector},
            "template": pod_template(options, units, runtime_resources(), text, f"{name}-services", [], None),
            "volumeClaimTemplates": [
                {"metadata": {"name": n}, "spec": claim(n, size, options, None)["spec"]} for n, _, size in VOLUMES
            ],
        },
    }
    headless = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "labels": selector},
                "spec": {"clusterIP": "None", "selector": selector}}
    published = [port_service(options, u, selector) for u in units if u.spec.port is not None]
    return [config_map(f"{name}-services", options, None, text), headless, *published, statefulset]


def kubernetes_one_service(unit: Unit, options: Options) -> list[dict[str, Any]]:
    base = unit.dns
    text = services_yaml([unit])
    selector = labels(options, unit)
    claims = [claim(f"{base}-{n}", size, options, unit) for n, _, size in VOLUMES if n != "projects"]
    volumes: list[dict[str, Any]] = [
        {"name": n, "persistentVolumeClaim": {"claimName": f"{base}-{n}"}} for n, _, _ in VOLUMES if n != "projects"]
    volumes.append({"name": "projects", "emptyDir": {}})  # no pre-seeded folders in a one-service pod
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": base, "labels": selector},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # its volumes are ReadWriteOnce
            "selector": {"matchLabels": selector},
            "template": pod_template(options, [unit], service_resources(unit.spec), text, f"{base}-services",
                                     volumes, unit),
        },
    }
    published = [port_service(options, unit, selector)] if unit.spec.port is not None else []
    return [config_map(f"{base}-services", options, unit, text), *claims, *published, deployment]


def kubernetes(units: Sequence[Unit], options: Options) -> dict[str, str]:
    header = HEADER.format(args=options.args)
    if not options.split:
        return {f"{options.name}.yaml": header + dump_all(kubernetes_all_in_one(units, options))}
    return {f"{u.dns}.yaml": header + dump_all(kubernetes_one_service(u, options))
            for u in units}
