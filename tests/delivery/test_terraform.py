"""The Terraform module under iac/terraform: parses, its variables add up, the example
matches them, it is fmt-clean, and the services it renders are what the runtime reads.
Offline: no provider is installed (terraform init needs a registry), so nothing here
plans or applies; `terraform console` evaluates the provider-free parts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from maestro_runtime.spec import YAML_FIELDS, parse_services_yaml

from .hclread import TERRAFORM, TF_DIR, TF_ENV, declared_variables, load, terraform_console

TF_FILES = sorted(TF_DIR.glob("*.tf"))
EXAMPLE = TF_DIR / "terraform.tfvars.example"
VAR_RE = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")


def test_every_tf_file_parses():
    assert {f.name for f in TF_FILES} >= {"versions.tf", "variables.tf", "main.tf", "outputs.tf", "services.tf"}
    for path in TF_FILES:
        assert isinstance(load(path), dict), path
    assert not list(TF_DIR.parent.glob("*.tf")), "the module lives in iac/terraform/ only"


def _references(path: Path) -> set[str]:
    # From the parsed form, so a comment that mentions var.x is not a use.
    return set(VAR_RE.findall(json.dumps(load(path))))


def test_variables_used_are_declared_and_declared_are_used():
    declared = set(declared_variables())
    used_anywhere = set().union(*(_references(p) for p in TF_FILES))
    # A variable's own validation does not count as a use of it.
    used = set().union(*(_references(p) for p in TF_FILES if p.name != "variables.tf"))
    assert used_anywhere <= declared, f"used but not declared: {sorted(used_anywhere - declared)}"
    assert declared <= used, f"declared but never used: {sorted(declared - used)}"


def test_provider_pinned_to_a_range():
    providers = load(TF_DIR / "versions.tf")["terraform"][0]["required_providers"][0]
    docker = providers["docker"]
    assert docker["source"] == "kreuzwerker/docker"
    assert re.fullmatch(r">= 3\.\d+\.\d+, < 4\.0\.0", docker["version"])
    assert all("<" in p["version"] for p in providers.values()), "every provider has an upper bound"


def test_example_tfvars_matches_the_variables():
    example = load(EXAMPLE)
    variables = declared_variables()
    assert set(example) == set(variables), (
        f"missing from the example: {sorted(set(variables) - set(example))}; "
        f"not variables: {sorted(set(example) - set(variables))}")
    service_fields = set(re.findall(r"(\w+) = ", variables["services"]["type"]))
    for service in example["services"]:
        assert set(service) <= service_fields


def test_service_fields_are_fields_the_runtime_reads():
    """The services object renders 1:1 to YAML keys; parse_yaml_entry rejects unknown keys."""
    fields = set(re.findall(r"(\w+) = ", declared_variables()["services"]["type"]))
    assert "repo" in fields
    assert fields <= YAML_FIELDS, f"the runtime would reject: {sorted(fields - YAML_FIELDS)}"


def test_outputs():
    outputs = {name for block in load(TF_DIR / "outputs.tf")["output"] for name in block}
    assert outputs >= {"container_id", "container_name", "published_ports", "service_urls"}


def test_container_carries_the_hardening_and_the_services_file():
    container = load(TF_DIR / "main.tf")["resource"]
    body = next(r["docker_container"]["maestro"] for r in container if "docker_container" in r)
    for key in ("read_only", "memory", "cpus", "pids_limit", "security_opts", "tmpfs", "restart", "capabilities",
                "env", "mounts", "volumes", "dynamic"):
        assert key in body, key
    assert body["mounts"][0]["target"] == "/etc/maestro/services.yml"
    assert body["mounts"][0]["read_only"] is True
    targets = {v["container_path"] for v in body["volumes"]}
    assert targets == {"/var/lib/maestro", "/home", "/opt/projects"}


@pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not installed: fmt and console checks skipped")
def test_terraform_fmt_clean(tmp_path):
    done = subprocess.run([TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
                          capture_output=True, text=True, env=TF_ENV, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # fmt only reads *.tf / *.tfvars: check the example under that name.
    shutil.copy(EXAMPLE, tmp_path / "example.tfvars")
    done = subprocess.run([TERRAFORM, "fmt", "-check", "-diff", "example.tfvars"], cwd=tmp_path,
                          capture_output=True, text=True, env=TF_ENV, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _rendered_services(tmp_path: Path, tfvars: Path) -> str:
    # variables.tf + services.tf need no provider: terraform evaluates them without init.
    for name in ("variables.tf", "services.tf"):
        shutil.copy(TF_DIR / name, tmp_path / name)
    out = terraform_console("jsonencode(local.services_yaml)", tmp_path, tfvars).strip()
    return json.loads(json.loads(out))  # console prints the JSON string as an HCL string


@pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not installed: fmt and console checks skipped")
def test_rendered_services_file_is_read_by_the_runtime(tmp_path):
    text = _rendered_services(tmp_path, EXAMPLE)
    result = parse_services_yaml(text, "services.yml")
    assert not result.errors, [str(e) for e in result.errors]
    api, site = result.specs
    assert (api.repo, api.ref, api.port, api.name, api.health.path, dict(api.env)) == (
        "https://github.com/acme/api", "v1.2.0", 8000, "api", "/healthz", {"GREETING": "hello"})
    assert api.cmd == "gunicorn -b 0.0.0.0:$PORT app:app"
    assert (site.limits.memory, site.limits.pids_max, site.allow_hosts) == (
        "256M", 64, ("pypi.org", "files.pythonhosted.org"))
    assert site.ref == "", "an attribute left out is not written, so the runtime default applies"


@pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not installed: fmt and console checks skipped")
def test_rendered_services_quote_hostile_values(tmp_path):
    hostile = 'echo "a;b" | tr a b # ${HOME} %{x}: \\ \'q\''
    tfvars = tmp_path / "x.tfvars"
    quoted = json.dumps(hostile).replace("${", "$${").replace("%{", "%%{")  # JSON's escapes are HCL's too
    tfvars.write_text(f'services = [{{ repo = "/srv/a", cmd = {quoted}, env = {{ K = "v: [1]" }} }}]\n')
    result = parse_services_yaml(_rendered_services(tmp_path, tfvars), "services.yml")
    assert not result.errors
    assert result.specs[0].cmd == hostile
    assert dict(result.specs[0].env) == {"K": "v: [1]"}


@pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not installed: fmt and console checks skipped")
def test_rendered_tasks_and_dependencies_are_read_by_the_runtime(tmp_path):
    tfvars = tmp_path / "t.tfvars"
    tfvars.write_text(
        'services = [\n'
        '  { repo = "/srv/db", name = "db" },\n'
        '  { repo = "/srv/m.git", name = "migrate", kind = "task", schedule = "0 3 * * *", catch_up = true,\n'
        '    depends_on = { db = "healthy" }, workspace = true },\n'
        '  { repo = "/srv/api", name = "api", depends_on = { migrate = "completed", db = "started" } },\n'
        ']\n')
    result = parse_services_yaml(_rendered_services(tmp_path, tfvars), "services.yml")
    assert not result.errors, [str(e) for e in result.errors]
    _, migrate, api = result.specs
    assert (migrate.role, migrate.schedule, migrate.catch_up, migrate.workspace) == ("task", "0 3 * * *", True, True)
    assert dict(migrate.depends_on) == {"db": "healthy"}
    assert dict(api.depends_on) == {"migrate": "completed", "db": "started"}
