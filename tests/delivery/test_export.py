"""`maestro export`: the rendered manifests validate offline (Kubernetes schemas from
kubernetes-validate, the compose specification schema vendored by check-jsonschema),
carry the specs unchanged, size split pods from the specs' limits, say what cannot move,
and the committed deploy/ is what examples/services.yml renders to today."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from maestro_runtime.cli import maestro
from maestro_runtime.ops import export as ex
from maestro_runtime.ops.manifests import READY
from maestro_runtime.settings import Settings
from maestro_runtime.spec import ParseResult, ServiceSpec, parse_services_string, parse_services_yaml
from maestro_runtime.spec.gather import gather_specs

from .hclread import REPO

K8S_VERSION = "1.36.0"  # a current release; kubernetes-validate ships its schemas
EXAMPLES = REPO / "examples" / "services.yml"
DEPLOY = REPO / "deploy"
VARIANTS = [("kubernetes", False), ("kubernetes", True), ("compose", False), ("compose", True)]
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]

HOSTILE_YAML = r'''
services:
  - repo: https://example.com/a.git
    name: Web_App
    port: 8080
    ref: v1.0
    cmd: |
      echo "quoted" 'single' $HOME ${HOME} %{x} \back
      exec python -m http.server $PORT
    env: {A: "line1\nline2", B: "--- not a document", C: "key: value", D: "#comment", E: "yes"}
    health: tcp
    autostart: false
    keep: [data, "uploads/files"]
    allow_hosts: [pypi.org, "*.npmjs.org"]
    memory: 1G
    cpu_quota_us: 25000
    cpu_period_us: 50000
    pids_max: 40
  - repo: /srv/shared/worktree
    name: web-app
  - repo: file:///srv/other
'''


def parsed_from(text: str) -> ParseResult:
    result = parse_services_yaml(text, "test.yml")
    assert not result.errors, [str(e) for e in result.errors]
    return result


def examples() -> ParseResult:
    settings = Settings.from_env({"MAESTRO_SERVICES_FILE": str(EXAMPLES)})
    return gather_specs(settings, preseeded=False)


def documents(export: ex.Export) -> list[dict]:
    return [d for name, text in export.files.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text)]


def validate_kubernetes(docs: list[dict]) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def validate_compose(path: Path) -> None:
    done = subprocess.run([*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def same_spec(a: ServiceSpec, b: ServiceSpec) -> bool:
    """Equal in everything the runtime uses (origin and kind say where a spec was read)."""
    keep = {"origin": "", "kind": "", "name": None}
    return replace(a, **keep) == replace(b, **keep)


# ---------------------------------------------------------------- deploy/ is up to date


@pytest.mark.parametrize(("target", "split"), VARIANTS)
def test_committed_deploy_is_up_to_date(target, split):
    export = ex.render(examples(), ex.Options(target, split=split))
    folder = DEPLOY / (target + ("-split" if split else ""))
    committed = {p.name: p.read_text() for p in folder.iterdir()}
    stale = sorted(n for n in export.files if committed.get(n) != export.files[n])
    extra = sorted(set(committed) - set(export.files))
    assert not stale and not extra, (
        f"deploy/ is out of date (stale {stale}, extra {extra}): run scripts/render-deploy.sh")


def test_committed_kubernetes_manifests_validate():
    files = sorted(DEPLOY.glob("kubernetes*/*.yaml"))
    assert len(files) == 4
    for path in files:
        validate_kubernetes(list(yaml.safe_load_all(path.read_text())))


def test_committed_compose_files_validate():
    files = sorted(DEPLOY.glob("compose*/compose.yaml"))
    assert len(files) == 2
    for path in files:
        validate_compose(path)


def test_examples_file_names_the_three_examples():
    specs = examples().specs
    assert [(s.name, s.port) for s in specs] == [("python-api", 8001), ("node-app", 8002), ("static-site", 8003)]
    for spec in specs:
        assert (REPO / "examples" / Path(spec.repo).name).is_dir()


def test_the_validators_do_reject(tmp_path):
    """Negative controls: a wrong field fails both validators, so a pass means something."""
    doc = documents(ex.render(examples(), ex.Options("kubernetes")))[-1]
    doc["spec"]["replicass"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    compose = yaml.safe_load(ex.render(examples(), ex.Options("compose")).files["compose.yaml"])
    compose["services"]["maestro"]["colour"] = "red"
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(compose))
    done = subprocess.run([*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec",
                           str(tmp_path / "compose.yaml")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


# ---------------------------------------------------------------- hostile specs, every variant


@pytest.mark.parametrize(("target", "split"), VARIANTS)
def test_hostile_specs_validate_and_round_trip(tmp_path, target, split):
    parsed = parsed_from(HOSTILE_YAML)
    export = ex.render(parsed, ex.Options(target, split=split))
    docs = documents(export)
    if target == "kubernetes":
        validate_kubernetes(docs)
        texts = [d["data"]["services.yml"] for d in docs if d["kind"] == "ConfigMap"]
    else:
        (tmp_path / "compose.yaml").write_text(export.files["compose.yaml"])
        validate_compose(tmp_path / "compose.yaml")
        texts = list(compose_services_files(export).values())
    back = [s for text in texts for s in parsed_from(text).specs]
    assert len(back) == 3
    for original, again in zip(parsed.specs, back, strict=True):
        assert same_spec(original, again)
    assert [s.name for s in back] == ["web_app", "web-app", "other"], "named by their program ids"
    if target == "kubernetes" and split:
        names = ["NOTES.md", "maestro-other.yaml", "maestro-web-app-1.yaml", "maestro-web-app.yaml"]
        assert sorted(export.files) == names, "web_app and web-app: two objects, not one overwritten"


def test_services_file_round_trip_from_the_environment():
    parsed = parse_services_string("https://example.com/x.git|9000|dev|api||gunicorn app:app | tee log;"
                                   "/srv/y|0")
    text = ex.services_yaml(ex.units_of(parsed))
    back = parsed_from(text).specs
    assert [same_spec(a, b) for a, b in zip(parsed.specs, back, strict=True)] == [True, True]


def test_values_with_unicode_line_breaks_round_trip():
    """NEL, LINE and PARAGRAPH SEPARATOR are line breaks to YAML 1.1 readers: PyYAML wrote them raw,
    so a command `echo one<NEL>echo two` came back as `echo one echo two` (or, in a block, as two
    lines: two commands), and an env value (a password) changed without a word."""
    parsed = parse_services_yaml(
        '{"services": [{"repo": "/srv/a", "port": 8000, "name": "a", "cmd": "echo one\\u0085echo two\\nx",'
        ' "env": {"PASSWORD": "p\\u2028q\\u2029r\\u0085"}}]}', "services.yml")
    text = ex.services_yaml(ex.units_of(parsed))
    (again,) = parsed_from(text).specs
    assert again.cmd == "echo one\x85echo two\nx" and dict(again.env) == {"PASSWORD": "p\u2028q\u2029r\x85"}


# ---------------------------------------------------------------- what the manifests say


def test_all_in_one_statefulset():
    docs = documents(ex.render(examples(), ex.Options("kubernetes")))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [("ConfigMap", "maestro-services"), ("Service", "maestro"), ("Service", "maestro-python-api"),
                     ("Service", "maestro-node-app"), ("Service", "maestro-static-site"), ("StatefulSet", "maestro")]
    sts = docs[-1]["spec"]
    assert sts["replicas"] == 1
    assert [c["metadata"]["name"] for c in sts["volumeClaimTemplates"]] == ["state", "home", "projects"]
    pod = sts["template"]["spec"]
    (main,) = pod["containers"]
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False  # no-new-privileges
    assert security["capabilities"] == {"drop": ["ALL"], "add": list(ex.IDENTITY_CAPS)}
    # One pod holds every service: no probe judges the pod by one service (a failed build would
    # restart, or take out of their Services, all the others).
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert main[name]["exec"]["command"] == [*ex.HEALTHCHECK, "--live"]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert set(mounts) == {"/var/lib/maestro", "/home", "/opt/projects", "/tmp", "/run", ex.SERVICES_FILE}
    assert mounts[ex.SERVICES_FILE]["readOnly"] is True
    assert main["resources"]["limits"] == {"memory": "1Gi", "cpu": "1"}
    assert [p["containerPort"] for p in main["ports"]] == [8001, 8002, 8003]


def test_split_sizes_each_pod_from_the_spec():
    docs = documents(ex.render(examples(), ex.Options("kubernetes", split=True)))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert list(deployments) == ["maestro-python-api", "maestro-node-app", "maestro-static-site"]
    limits = {n: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] for n, d in deployments.items()}
    # the spec's sandbox limit + 128Mi / 100m for the runtime beside the service
    assert limits["maestro-python-api"] == {"memory": "256Mi"}
    assert limits["maestro-node-app"] == {"memory": "384Mi", "cpu": "600m"}
    assert limits["maestro-static-site"] == {"memory": "192Mi"}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]
        config = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
        text = next(d["data"]["services.yml"] for d in docs if d["metadata"]["name"] == config)
        assert len(parsed_from(text).specs) == 1, "a one-service spec per pod"
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == ex.DEFAULT_IMAGE
        probes = {k: v["exec"]["command"] for k, v in pod["containers"][0].items() if k.endswith("Probe")}
        # The pod is its one service: readiness is its own probe verdict (READY: the HEALTHCHECK
        # passes while it starts); restarts only when the runtime is stuck.
        assert probes == {"readinessProbe": list(READY), "livenessProbe": [*ex.HEALTHCHECK, "--live"],
                          "startupProbe": [*ex.HEALTHCHECK, "--live"]}


def test_split_without_limits_uses_the_runtime_defaults():
    resources = ex.service_resources(parse_services_string("/srv/a|8000").specs[0])
    assert resources == ex.Resources(memory=(512 + 128) << 20, millicpu=None, pids=128 + 64)


def test_notes_say_what_cannot_move():
    export = ex.render(parsed_from(HOSTILE_YAML), ex.Options("kubernetes", split=True))
    text = export.files["NOTES.md"]
    assert "web_app: egress allowlist by host name (pypi.org, *.npmjs.org)" in text
    assert "NetworkPolicy" in text
    assert "web-app: its source /srv/shared/worktree is a folder" in text and "shared worktree" in text
    assert "other: its source file:///srv/other" in text
    assert "other: no fixed port" in text
    assert "pids_max" in text


def test_notes_ask_no_port_of_a_task():
    parsed = parse_services_yaml("services:\n  - {name: migrate, kind: task, repo: https://git.example.com/a.git,"
                                 " cmd: ./migrate}\n  - {name: web, repo: https://git.example.com/a.git}\n", "s.yml")
    text = ex.render(parsed, ex.Options("compose")).files["NOTES.md"]
    assert "web: no fixed port" in text and "migrate: no fixed port" not in text


def test_compose_depends_on_waits_for_health():
    """depends_on {db: healthy} becomes condition: service_healthy; names outside the export are dropped."""
    db, api = parse_services_string("/srv/db|5432||db;/srv/api|8000||api").specs
    api = replace(api, depends_on={"db": "healthy", "missing": "started"})
    export = ex.render(ParseResult(specs=[db, api]), ex.Options("compose", split=True))
    services = yaml.safe_load(export.files["compose.yaml"])["services"]
    assert services["api"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "depends_on" not in services["db"]
    # db is waited for: its healthcheck is its service's own probe verdict (READY), not the
    # HEALTHCHECK, which passes while the service is still starting (tests/image/test_export_image.py)
    assert services["db"]["healthcheck"]["test"] == ["CMD", *READY]
    assert services["api"]["healthcheck"]["test"] == ["CMD", *ex.HEALTHCHECK]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("parsed", "options", "message"), [
    (parse_services_string("/a|70000"), ex.Options("kubernetes"), "fix the specs first: SERVICES[1]: port"),
    (ParseResult(), ex.Options("kubernetes"), "no services to export"),
    (parse_services_string("/a|8000;/b|8000"), ex.Options("compose"), "port: 8000 is also a's"),
    (parse_services_string("/a|8000"), ex.Options("kubernetes", name="Bad_Name"), "name: 'Bad_Name'"),
    (parse_services_string("/a|8000"), ex.Options("kubernetes", image="a b"), "image:"),
    (parse_services_string("/a|8000"), ex.Options("helm"), "target:"),
])
def test_export_errors(parsed, options, message):
    with pytest.raises(ex.ExportError, match=re.escape(message)):
        ex.render(parsed, options)


def test_long_names_stay_valid_and_distinct():
    a = ex.dns_name("maestro", "x" * 80 + "-a")
    b = ex.dns_name("maestro", "x" * 80 + "-b")
    assert len(a) <= 63 and len(b) <= 63 and a != b


# ---------------------------------------------------------------- the command


@pytest.fixture(autouse=True)
def keep_logging():
    """The command sets up the "maestro" logger (no propagation): undo it, so later tests'
    caplog still sees maestro.* records."""
    logger = logging.getLogger("maestro")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def run_cli(tmp_path: Path, *args: str, env: dict[str, str]) -> object:
    runner = CliRunner()
    (tmp_path / "empty.yml").write_text("")  # not /etc/maestro/services.yml of the machine
    base = {"MAESTRO_SERVICES_FILE": str(tmp_path / "empty.yml"), "SERVICES": "", "SERVICES_COUNT": "",
            "MAESTRO_RUNTIME_DIR": str(tmp_path / "run"), "MAESTRO_STATE_DIR": str(tmp_path / "state")}
    return runner.invoke(maestro, ["export", *args], env={**base, **env})


def test_cli_prints_manifests_from_services(tmp_path):
    result = run_cli(tmp_path, "kubernetes", env={"SERVICES": "https://example.com/a.git|8000||api"})
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    validate_kubernetes(docs)
    assert docs[-1]["kind"] == "StatefulSet"


def test_cli_writes_a_folder_from_svc_vars(tmp_path):
    env = {"SERVICES_COUNT": "1", "SVC_1_REPO": "https://example.com/b.git", "SVC_1_PORT": "8100"}
    result = run_cli(tmp_path, "compose", "--split", "--output", str(tmp_path / "out"), "--image", "img:1",
                     "--name", "shop", env=env)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["NOTES.md", "b.services.yml", "compose.yaml"]
    compose = yaml.safe_load((tmp_path / "out" / "compose.yaml").read_text())
    assert compose["name"] == "shop" and compose["services"]["b"]["image"] == "img:1"
    validate_compose(tmp_path / "out" / "compose.yaml")


def test_cli_error_is_one_line(tmp_path):
    result = run_cli(tmp_path, "kubernetes", env={"SERVICES": "/a|port"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: fix the specs first: SERVICES[1]: port: must be a number from 1 to 65535 (or 0 for auto), got 'port'"]


def test_render_script_is_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    done = subprocess.run(["shellcheck", str(REPO / "scripts" / "render-deploy.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# The capabilities the *baseline* Pod Security Standard lets a container add.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


@pytest.mark.parametrize("split", [False, True])
def test_pods_meet_the_baseline_pod_security_standard(split):
    """What README says: baseline (root is allowed), the hardened run's flags otherwise."""
    docs = documents(ex.render(examples(), ex.Options("kubernetes", split=split)))
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    assert pods
    for pod in pods:
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
        assert not any("hostPath" in v for v in pod["volumes"])
        for container in pod["containers"]:
            security = container["securityContext"]
            assert not security.get("privileged")
            assert set(security["capabilities"]["add"]) <= BASELINE_CAPS
            assert security["seccompProfile"]["type"] == "RuntimeDefault"
            assert not any("hostPort" in p for p in container["ports"])


def test_every_spec_field_is_exported():
    """A field added to ServiceSpec must reach the exported services file, or be lost on export."""
    import dataclasses
    import inspect

    from maestro_runtime.ops import export
    from maestro_runtime.spec import ServiceSpec

    source = inspect.getsource(export.service_entry)
    # policy: exported key by key by spec.fields.policy_yaml, round-tripped in tests/unit/test_ops_spec.py
    not_exported = {"origin", "kind", "directory", "name", "repo", "health", "limits", "policy"}  # set apart above
    not_exported.add("role")  # written as the YAML key kind: (checked in the round trip below)
    missing = [f.name for f in dataclasses.fields(ServiceSpec)
               if f.name not in not_exported and f'"{f.name}"' not in source]
    assert missing == []


def test_tasks_and_dependencies_round_trip_and_map_to_compose_conditions():
    text = """
- {repo: /srv/db, name: db}
- {repo: /srv/m, name: migrate, kind: task, depends_on: {db: healthy}}
- {repo: /srv/api, name: api, depends_on: {migrate: completed, db: started}}
- {repo: /srv/n, name: nightly, kind: task, schedule: "0 3 * * *", catch_up: true}
"""
    parsed = parse_services_yaml(text, "s.yaml")
    export = ex.render(parsed, ex.Options("compose", split=True))
    services = yaml.safe_load(export.files["compose.yaml"])["services"]
    # A task's container outlives its task (the runtime stays up): "completed" is its healthcheck
    # (READY) turning healthy once the task succeeded (tests/image/test_export_image.py runs it),
    # not the container exiting, which service_completed_successfully would wait for forever.
    assert services["api"]["depends_on"] == {"migrate": {"condition": "service_healthy"},
                                             "db": {"condition": "service_started"}}
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["migrate"]["healthcheck"]["test"] == ["CMD", *READY]
    assert services["db"]["healthcheck"]["test"] == ["CMD", *READY]  # migrate waits for it: healthy
    assert services["nightly"]["healthcheck"]["test"] == ["CMD", *READY]  # a task: HEALTHCHECK fails it
    # no start_interval: podman 4.3 has no --health-startup-interval (podman-compose passes it), Docker
    # Compose refuses it below Engine 25; every key here is one both know
    assert set(services["migrate"]["healthcheck"]) == {"test", "interval", "timeout", "start_period", "retries"}
    assert any(n.startswith("migrate: a task: its container stays up") for n in export.notes)
    entries = {e["name"]: e for e in yaml.safe_load(ex.services_yaml(ex.units_of(parsed)))["services"]}
    assert entries["nightly"] == {"name": "nightly", "repo": "/srv/n", "kind": "task", "schedule": "0 3 * * *",
                                  "catch_up": True}
    again = parse_services_yaml(ex.services_yaml(ex.units_of(parsed)), "again.yaml")
    assert [(s.role, dict(s.depends_on), s.schedule) for s in again.specs] == [
        (s.role, dict(s.depends_on), s.schedule) for s in parsed.specs]


def compose_services_files(export: ex.Export) -> dict[str, str]:
    """compose service -> the services file it mounts (a file of the export, beside compose.yaml)."""
    out = {}
    for name, service in yaml.safe_load(export.files["compose.yaml"])["services"].items():
        mount = next(v for v in service["volumes"] if isinstance(v, dict) and v["target"] == ex.SERVICES_FILE)
        assert mount["source"].startswith("./"), mount
        out[name] = export.files[mount["source"][2:]]
    return out


def services_files(export: ex.Export) -> dict[str, str]:
    """Each runtime's services file: the file each compose service mounts or the ConfigMaps' data."""
    if "compose.yaml" in export.files:
        return compose_services_files(export)
    return {d["metadata"]["name"]: d["data"]["services.yml"] for d in documents(export) if d["kind"] == "ConfigMap"}


@pytest.mark.parametrize("split", [False, True])
def test_compose_mounts_the_services_file_from_beside_compose_yaml(split):
    """Docker Compose refuses a config with inline content in a read_only service ("cannot create
    config ... in read-only service ...: `file` is the sole supported option", pkg/compose/secrets.go;
    before 2.30: "container rootfs is marked read-only", docker/compose#12031), and podman-compose
    1.6 mounts no configs at all: the runtime booted with no services. The file is written beside
    compose.yaml and bind-mounted read-only; a missing file is an error, never an empty folder."""
    export = ex.render(examples(), ex.Options("compose", split=split))
    document = yaml.safe_load(export.files["compose.yaml"])
    assert "configs" not in document
    for service in document["services"].values():
        assert service["read_only"] is True
        assert "configs" not in service
        mount = next(v for v in service["volumes"] if isinstance(v, dict))
        assert mount == {"type": "bind", "source": mount["source"], "target": ex.SERVICES_FILE,
                         "read_only": True, "bind": {"create_host_path": False}}
    files = compose_services_files(export)
    assert [s.name for text in files.values() for s in parsed_from(text).specs] == [
        "python-api", "node-app", "static-site"]
    assert export.text() == export.files["compose.yaml"]  # printed alone: the notes say to use --output
    assert any("--output" in n and "services" in n for n in export.notes)


@pytest.mark.parametrize("target", ["compose", "kubernetes"])
def test_split_services_files_boot_without_the_other_pods_services(tmp_path, target):
    """A one-service file read back as the runtime reads it at boot (gather_specs, which rejects a
    depends_on naming a service it does not hold) keeps its service: the wait on a service in
    another container is compose's depends_on, not the file's (seen live: node-app FAILED with
    "depends_on: unknown service 'python-api'" under podman-compose)."""
    parsed = parse_services_yaml("""
- {repo: /srv/db, name: db, port: 5432}
- {repo: /srv/api, name: api, port: 8000, depends_on: {db: healthy}}
""", "s.yaml")
    export = ex.render(parsed, ex.Options(target, split=True))
    for name, text in services_files(export).items():
        path = tmp_path / f"{name}.yml"
        path.write_text(text)
        settings = Settings.from_env({"MAESTRO_SERVICES_FILE": str(path), "MAESTRO_STATE_DIR": str(tmp_path)})
        booted = gather_specs(settings, preseeded=False)
        assert not booted.errors, (name, [str(e) for e in booted.errors])
        assert len(booted.specs) == 1
    assert any("api: its one-service file drops depends_on (db)" in n for n in export.notes)
    # all in one: the runtime orders them itself, so the file keeps the wait
    whole = services_files(ex.render(parsed, ex.Options(target)))
    assert [yaml.safe_load(t)["services"][1]["depends_on"] for t in whole.values()] == [{"db": "healthy"}]
