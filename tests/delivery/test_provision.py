"""iac/provision.sh, run for real with stub `terraform` and `docker` first on PATH.

The stubs only record their arguments: a test cannot reach a Docker daemon or the
provider registry that `terraform init` needs. What is real: the script, the file it
writes, and (when the terraform CLI is installed) terraform reading that file back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .hclread import REPO, TERRAFORM, TF_ENV, load, terraform_console, terraform_string, unescape_all

SCRIPT = REPO / "iac" / "provision.sh"
TOOLS = ("bash", "dirname", "mktemp", "chmod", "mv", "sed")  # what the script runs besides the stubs
STUB = '#!/bin/sh\n{{ printf "%s" "${{0##*/}}"; for a; do printf " %s" "$a"; done; printf "\\n"; }} >> "{calls}"\n'
HEADER = "# Written by iac/provision.sh; run it again to change these (they win over terraform.tfvars).\n"


class Run:
    def __init__(self, root: Path, done: subprocess.CompletedProcess, calls: Path):
        self.root, self.done = root, done
        self.tf_dir = root / "iac" / "terraform"
        self.tfvars = self.tf_dir / "generated.auto.tfvars"
        self.calls = calls.read_text().splitlines() if calls.exists() else []

    def tf(self, *args: str) -> str:
        return " ".join(("terraform", f"-chdir={self.tf_dir}", *args))


def provision(tmp_path: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None,
              stubs: tuple[str, ...] = ("terraform", "docker")) -> Run:
    """Copy iac/ into tmp_path (the script writes next to itself) and run it there."""
    shutil.copytree(REPO / "iac", tmp_path / "iac", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".terraform", ".generated", "*.tfstate*", "generated.auto.tfvars"))
    stub_bin, tools = tmp_path / "stubs", tmp_path / "tools"
    stub_bin.mkdir(exist_ok=True)
    tools.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    for name in stubs:
        (stub_bin / name).write_text(STUB.format(calls=calls))
        (stub_bin / name).chmod(0o755)
    for name in TOOLS:  # only these on PATH, so a terraform installed on this machine stays out of sight
        if not (tools / name).exists():
            (tools / name).symlink_to(shutil.which(name))
    run_env = {"PATH": f"{stub_bin}:{tools}", "HOME": str(tmp_path), "LANG": "C.UTF-8", **(env or {})}
    done = subprocess.run([str(tmp_path / "iac" / "provision.sh"), *args], input=stdin, env=run_env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return Run(tmp_path, done, calls)


def read_back(path: Path) -> dict:
    """The tfvars as Terraform reads it (python-hcl2 + HCL's template-escape rule)."""
    return unescape_all(load(path))


# ---------------------------------------------------------------- non-interactive


def test_non_interactive_flags_write_the_tfvars_and_apply(tmp_path):
    run = provision(tmp_path, "--non-interactive", "--name", "web", "--image", "maestro-runtime:1.0",
                    "--repo", "https://github.com/acme/api", "--port", "9000",
                    "--repo", "https://example.com/site.tar.gz")
    assert run.done.returncode == 0, run.done.stderr
    assert run.tfvars.read_text() == HEADER + (
        'name  = "web"\n'
        'image = "maestro-runtime:1.0"\n'
        "ports = [9000, 8001]\n"
        "\n"
        "services = [\n"
        '  { repo = "https://github.com/acme/api", port = 9000 },\n'
        '  { repo = "https://example.com/site.tar.gz", port = 8001 },\n'
        "]\n")
    assert run.calls == ["docker info", run.tf("init", "-input=false"),
                         run.tf("apply", "-auto-approve", "-input=false"), run.tf("output")]


def test_non_interactive_from_the_environment(tmp_path):
    env = {"PROVISION_NON_INTERACTIVE": "1", "PROVISION_NAME": "m2",
           "PROVISION_REPOS": "https://a.example/x.git /srv/y", "PROVISION_PORTS": "8100,8101"}
    run = provision(tmp_path, env=env)
    assert run.done.returncode == 0, run.done.stderr
    assert read_back(run.tfvars) == {"name": "m2", "ports": [8100, 8101], "services": [
        {"repo": "https://a.example/x.git", "port": 8100}, {"repo": "/srv/y", "port": 8101}]}
    assert run.tf("apply", "-auto-approve", "-input=false") in run.calls


def test_environment_lists_are_not_globbed(tmp_path):
    (tmp_path / "x").touch()  # what `?` would expand to in the script's folder, were it globbed
    env = {"PROVISION_NON_INTERACTIVE": "1", "PROVISION_REPOS": "iac/* ?", "PROVISION_PORTS": ""}
    run = provision(tmp_path, env=env)
    assert run.done.returncode == 0, run.done.stderr
    assert [s["repo"] for s in read_back(run.tfvars)["services"]] == ["iac/*", "?"]


def test_non_interactive_with_nothing_given_uses_the_defaults(tmp_path):
    run = provision(tmp_path, "--non-interactive")
    assert run.done.returncode == 0, run.done.stderr
    assert run.tfvars.read_text() == HEADER + 'name  = "maestro"\nports = []\n\nservices = []\n'
    assert "no repositories" in run.done.stderr


# ---------------------------------------------------------------- interactive


def test_interactive_answers_piped_in(tmp_path):
    answers = "demo\nhttps://github.com/acme/api\n/srv/site\n\n\n8005\n"  # name, 2 repos, end, ports (default, 8005)
    run = provision(tmp_path, stdin=answers)
    assert run.done.returncode == 0, run.done.stderr
    assert run.tfvars.read_text() == HEADER + (
        'name  = "demo"\n'
        "ports = [8000, 8005]\n"
        "\n"
        "services = [\n"
        '  { repo = "https://github.com/acme/api", port = 8000 },\n'
        '  { repo = "/srv/site", port = 8005 },\n'
        "]\n")
    # Interactive: terraform itself asks before it applies.
    assert run.calls == ["docker info", run.tf("init", "-input=false"), run.tf("apply"), run.tf("output")]
    for prompt in ("Container name [maestro]", "Repository 1", "Port for /srv/site [8001]"):
        assert prompt in run.done.stderr


def test_interactive_asks_only_what_flags_left_out(tmp_path):
    run = provision(tmp_path, "--name", "given", "--repo", "/srv/a", stdin="7000\n")
    assert run.done.returncode == 0, run.done.stderr
    assert "Container name" not in run.done.stderr and "Repository 1" not in run.done.stderr
    assert read_back(run.tfvars) == {"name": "given", "ports": [7000], "services": [{"repo": "/srv/a", "port": 7000}]}


def test_interactive_end_of_input_takes_the_defaults(tmp_path):
    run = provision(tmp_path, "--repo", "/srv/a", stdin="")
    assert run.done.returncode == 0, run.done.stderr
    assert read_back(run.tfvars) == {"name": "maestro", "ports": [8000], "services": [{"repo": "/srv/a", "port": 8000}]}


# ---------------------------------------------------------------- destroy


def test_destroy(tmp_path):
    run = provision(tmp_path, "destroy", "--non-interactive")
    assert run.done.returncode == 0, run.done.stderr
    assert run.calls == ["docker info", run.tf("init", "-input=false"),
                         run.tf("destroy", "-auto-approve", "-input=false")]
    assert not run.tfvars.exists()
    run = provision(tmp_path / "again", "destroy")
    assert run.calls[-1] == run.tf("destroy")


# ---------------------------------------------------------------- hostile values

HOSTILE = [
    'https://example.com/a"b.git',
    "C:\\path\\to\\repo",
    "/srv/trailing\\",
    "https://example.com/${HOME}/x",
    "https://example.com/%{if true}x%{endif}",
    "$${already} %%{doubled} $ { % {",
    "line one\nline two\r\n\ttabbed",
    'all: "\\ ${a} %{b} \n',
    "unicode: näive ☃ 𝄞",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_round_trip_through_hcl(tmp_path, value):
    run = provision(tmp_path, "--non-interactive", "--repo", value, "--image", value)
    assert run.done.returncode == 0, run.done.stderr
    data = read_back(run.tfvars)
    assert data["services"][0]["repo"] == value
    assert data["image"] == value
    if TERRAFORM is not None:  # the real reader, too
        work = tmp_path / "tf"
        work.mkdir()
        shutil.copy(REPO / "iac" / "terraform" / "variables.tf", work)
        out = terraform_console("jsonencode([var.image, var.services[0].repo])", work, run.tfvars).strip()
        assert json.loads(json.loads(out)) == [value, value]


def test_template_escape_helper_is_hcl_rule():
    assert terraform_string("$${a} %%{b} $a %b $$ %%") == "${a} %{b} $a %b $$ %%"


@pytest.mark.parametrize(("args", "field"), [
    (("--name", 'x"; rm -rf /'), "name"),
    (("--name", "a${b}"), "name"),
    (("--name", "two\nlines"), "name"),
    (("--repo", "/srv/a", "--port", "80; echo"), "port"),
    (("--repo", "/srv/a", "--port", "70000"), "port"),
    (("--repo", "/srv/a", "--repo", "/srv/b", "--port", "8000", "--port", "8000"), "port"),
    (("--repo", "bell\a"), "repo"),
    (("--repo", "/srv/a", "--image", "esc\x1b[31m"), "image"),
])
def test_values_that_cannot_be_written_are_rejected(tmp_path, args, field):
    run = provision(tmp_path, "--non-interactive", *args)
    assert run.done.returncode == 1
    lines = run.done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"provision.sh: {field}: "), run.done.stderr
    assert not run.tfvars.exists()
    assert not any(c.startswith("terraform") and " init" in c for c in run.calls)


# ---------------------------------------------------------------- tools


def test_missing_terraform(tmp_path):
    run = provision(tmp_path, "--non-interactive", stubs=("docker",))
    assert run.done.returncode == 1
    assert run.done.stderr.strip() == (
        "provision.sh: terraform is not installed: install terraform 1.3 or newer (see iac/README.md) and run again")
    assert not run.tfvars.exists()


def test_missing_docker_and_podman(tmp_path):
    run = provision(tmp_path, "--non-interactive", stubs=("terraform",))
    assert run.done.returncode == 1
    assert "neither docker nor podman is installed" in run.done.stderr


def test_podman_without_docker_host_is_told_how(tmp_path):
    run = provision(tmp_path, "--non-interactive", stubs=("terraform", "podman"))
    assert run.done.returncode == 0, run.done.stderr
    assert "DOCKER_HOST=unix:///run/podman/podman.sock" in run.done.stderr


def test_a_docker_cli_without_its_daemon_falls_back_to_podman(tmp_path):
    # The Makefile's rule; the script died with "docker is installed but does not answer" instead.
    (tmp_path / "stubs").mkdir()
    (tmp_path / "stubs" / "docker").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "stubs" / "docker").chmod(0o755)
    run = provision(tmp_path, "--non-interactive", stubs=("terraform", "podman"))
    assert run.done.returncode == 0, run.done.stderr
    assert "DOCKER_HOST=unix:///run/podman/podman.sock" in run.done.stderr
    alone = tmp_path / "alone"
    (alone / "stubs").mkdir(parents=True)
    (tmp_path / "stubs" / "docker").rename(alone / "stubs" / "docker")
    run = provision(alone, "--non-interactive", stubs=("terraform",))
    assert run.done.returncode == 1 and "docker is installed but does not answer" in run.done.stderr


def test_unknown_argument(tmp_path):
    run = provision(tmp_path, "--colour")
    assert run.done.returncode == 1 and "unknown argument: --colour" in run.done.stderr


@pytest.mark.skipif(TERRAFORM is None, reason="terraform CLI not installed: fmt check of the written file skipped")
def test_written_file_is_fmt_clean(tmp_path):
    run = provision(tmp_path, "--non-interactive", "--image", "img", "--repo", "/srv/a", "--repo", "/srv/b")
    done = subprocess.run([TERRAFORM, "fmt", "-check", "-diff", str(run.tfvars)], env=TF_ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert os.access(SCRIPT, os.X_OK)
