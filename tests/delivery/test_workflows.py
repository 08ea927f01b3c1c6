"""The GitHub workflows: valid against the GitHub workflow schema (check-jsonschema's
vendored copy, offline), CI covers lint, tests and image tests on pull requests and
pushes, and publish has the triggers, permissions, namespace and tags it promises.
The namespace step's script is run here for real with bash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .hclread import REPO

WORKFLOWS = REPO / ".github" / "workflows"
CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_workflows_validate_against_the_github_schema(tmp_path):
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "publish.yml"}
    done = subprocess.run([*CHECK, *map(str, files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # Negative control: the schema does reject a broken workflow.
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert subprocess.run([*CHECK, str(broken)], capture_output=True, timeout=120).returncode != 0


def test_ci_runs_lint_tests_and_image_tests_on_pull_requests_and_pushes():
    ci = load("ci.yml")
    assert "pull_request" in ci["on"] and "push" in ci["on"]
    assert "workflow_call" in ci["on"], "publish runs it before pushing"
    assert ci["permissions"] == {"contents": "read"}
    runs = {name: "\n".join(s.get("run", "") for s in steps(job)) for name, job in ci["jobs"].items()}
    assert "make lint" in runs["lint"]
    assert "check-jsonschema --builtin-schema vendor.github-workflows" in runs["lint"]
    assert re.search(r"pytest tests --ignore=tests/image", runs["test"])
    assert "pytest tests/image" in runs["image"]
    assert ci["jobs"]["image"]["env"]["CI"] == "true", "image tests fail rather than skip in CI"
    lint = re.search(r"^lint:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    for tool in ("ruff check .", "hadolint Dockerfile", "shellcheck", "iac/provision.sh"):
        assert tool in lint, tool


def test_publish_triggers():
    on = load("publish.yml")["on"]
    assert on["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert "pull_request" not in on, "pull requests are ci.yml's; publish never runs for them"
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["version"]["type"] == "string" and inputs["version"]["required"] is False
    assert inputs["push"] == {**inputs["push"], "type": "boolean", "default": True}
    assert inputs["platforms"]["default"] == "linux/amd64,linux/arm64"


def test_publish_permissions():
    publish = load("publish.yml")
    assert publish["permissions"] == {"contents": "read"}
    assert publish["jobs"]["publish"]["permissions"] == {"contents": "read", "packages": "write"}
    assert publish["jobs"]["publish"]["needs"] == "ci"
    assert publish["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"


def _step(uses_or_id: str) -> dict:
    job = load("publish.yml")["jobs"]["publish"]
    return next(s for s in steps(job) if s.get("id") == uses_or_id or s.get("uses", "").startswith(uses_or_id))


def test_publish_tags_latest_sha_and_semver():
    meta = _step("meta")
    assert meta["uses"].startswith("docker/metadata-action@")
    assert meta["with"]["images"] == "${{ steps.image.outputs.image }}"
    tags = [t.strip() for t in meta["with"]["tags"].splitlines() if t.strip()]
    assert "type=raw,value=latest,enable={{is_default_branch}}" in tags
    assert "type=sha,format=long,prefix=" in tags  # the full commit SHA
    for pattern in ("{{version}}", "{{major}}.{{minor}}", "{{major}}"):
        assert f"type=semver,pattern={pattern}" in tags  # from a v1.2.3 tag
        assert any(t.startswith(f"type=semver,pattern={pattern},value=${{{{ steps.image.outputs.version }}}}")
                   for t in tags)  # from the version input
    assert "latest=false" in meta["with"]["flavor"], "latest only where the tags above say"
    build = _step("docker/build-push-action")
    assert build["with"]["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["with"]["push"] == "${{ github.event_name != 'workflow_dispatch' || inputs.push }}"


def test_no_expression_is_spliced_into_a_script():
    """Inputs and variables reach shells through env: `${{ }}` inside `run:` would be injection."""
    for name in ("ci.yml", "publish.yml"):
        for job in load(name)["jobs"].values():
            for step in steps(job):
                assert "${{" not in step.get("run", ""), (name, step.get("name"))


def run_namespace_step(tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    step = _step("image")
    assert step["env"]["GHCR_NAMESPACE"] == "${{ vars.GHCR_NAMESPACE }}"
    assert step["env"]["REPO_OWNER"] == "${{ github.repository_owner }}"
    output = tmp_path / "output"
    output.write_text("")
    base = {"GHCR_NAMESPACE": "", "REPO_OWNER": "Maestro-Runtime", "REPO_NAME": "Maestro-Runtime",
            "VERSION": "", "PLATFORMS": "linux/amd64,linux/arm64"}
    done = subprocess.run(["bash", "-e", "-c", step["run"]], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **base, **env})
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done.returncode, outputs, done.stdout + done.stderr


def test_namespace_defaults_to_the_lower_cased_owner(tmp_path):
    code, out, _ = run_namespace_step(tmp_path)
    assert code == 0
    assert out == {"image": "ghcr.io/maestro-runtime/maestro-runtime", "version": "",
                   "platforms": "linux/amd64,linux/arm64"}


def test_namespace_variable_wins(tmp_path):
    code, out, _ = run_namespace_step(tmp_path, GHCR_NAMESPACE="Acme-Org", VERSION="v1.4.0-rc.1")
    assert code == 0
    assert out["image"] == "ghcr.io/acme-org/maestro-runtime"
    assert out["version"] == "1.4.0-rc.1"


@pytest.mark.parametrize("env", [{"VERSION": "1.2"}, {"VERSION": "1.2.3; curl x | sh"},
                                 {"PLATFORMS": "linux/amd64 $(id)"}])
def test_bad_inputs_stop_the_publish(tmp_path, env):
    code, out, text = run_namespace_step(tmp_path, **env)
    assert code == 1 and out == {} and "::error::" in text
