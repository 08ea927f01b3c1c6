"""Build planning, stamps and the skip-when-unchanged rule (with a fake interpreter: no network)."""

from __future__ import annotations

import os
import pwd
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from maestro_runtime.ops.accounts import Account
from maestro_runtime.settings import Settings
from maestro_runtime.sources import builds
from maestro_runtime.sources.builds import BuildError, BuildOptions, compute_stamp, node_plan, python_plan

OPTS = BuildOptions(python="/usr/bin/python3")


def test_python_plan_prefers_requirements():
    plan = python_plan({"requirements.txt", "pyproject.toml"}, Path("/h/venv"), OPTS, fresh_venv=True)
    assert plan.steps[0] == ("/usr/bin/python3", "-m", "venv", "--clear", "/h/venv")
    assert plan.steps[1][-2:] == ("-r", "requirements.txt")
    assert plan.steps[-1][:2] == ("/h/venv/bin/python", "-c")  # pkg_resources for old pins (pkgresources.py)
    assert plan.inputs == ("requirements.txt", "pyproject.toml")
    assert plan.stamp_path == Path("/h/venv/.maestro-build-stamp")


def test_python_plan_pyproject_is_editable_and_options_honoured():
    opts = BuildOptions(pip_options=("--no-index", "--find-links", "/w"))
    plan = python_plan({"pyproject.toml"}, Path("/v"), opts, fresh_venv=False)
    assert len(plan.steps) == 2
    assert plan.steps[0][-5:] == ("--no-index", "--find-links", "/w", "-e", ".")
    assert plan.steps[1][-3:] == ("--no-index", "--find-links", "/w"), "setuptools<81 comes the same way"
    assert python_plan({"main.py"}, Path("/v"), OPTS, fresh_venv=True) is None


@pytest.mark.parametrize(
    "files, package, expected",
    [
        ({"package.json", "package-lock.json"}, {}, ("npm", "ci", "--omit=dev")),
        ({"package.json", "pnpm-lock.yaml"}, {}, ("corepack", "pnpm", "install", "--frozen-lockfile", "--prod")),
        ({"package.json", "yarn.lock"}, {}, ("corepack", "yarn", "install", "--frozen-lockfile", "--production")),
        ({"package.json", "yarn.lock"}, {"packageManager": "yarn@4.1.0"}, ("corepack", "yarn", "install",
                                                                            "--immutable")),
        ({"package.json"}, {}, ("npm", "install", "--no-package-lock", "--omit=dev")),
    ],
)
def test_node_plan(files, package, expected):
    plan = node_plan(files, package, OPTS, Path("/p/node_modules"))
    assert plan.steps[0][: len(expected)] == expected
    assert plan.stamp_path == Path("/p/node_modules/.maestro-build-stamp")


def test_node_plan_dev_and_options():
    opts = BuildOptions(include_dev=True, npm_options=("--registry", "http://127.0.0.1:1"))
    plan = node_plan({"package.json", "package-lock.json"}, {}, opts, Path("/n"))
    assert "--omit=dev" not in plan.steps[0]
    assert plan.steps[0][-2:] == ("--registry", "http://127.0.0.1:1")
    assert node_plan({"index.js"}, {}, opts, Path("/n")) is None


def test_stamp_changes_with_inputs_and_interpreter():
    plan = python_plan({"requirements.txt"}, Path("/v"), OPTS, fresh_venv=False)
    base = compute_stamp(plan, {"requirements.txt": b"flask\n"}, "Python 3.11.2", Path("/p"))
    assert base == compute_stamp(plan, {"requirements.txt": b"flask\n"}, "Python 3.11.2", Path("/p"))
    assert base != compute_stamp(plan, {"requirements.txt": b"flask==3\n"}, "Python 3.11.2", Path("/p"))
    assert base != compute_stamp(plan, {"requirements.txt": b"flask\n"}, "Python 3.12.0", Path("/p"))
    fresh = python_plan({"requirements.txt"}, Path("/v"), OPTS, fresh_venv=True)
    assert base == compute_stamp(fresh, {"requirements.txt": b"flask\n"}, "Python 3.11.2", Path("/p"))


def test_options_from_settings(tmp_path):
    env = {"PIP_INSTALL_OPTIONS": "--no-index --find-links '/a b'", "NPM_INSTALL_OPTIONS": "--loglevel=warn",
           "PIP_INDEX_URL": "http://127.0.0.1/simple", "COREPACK_NPM_REGISTRY": "http://127.0.0.1/npm",
           "MAESTRO_GIT_TOKEN": "secret"}
    opts = BuildOptions.from_settings(Settings.from_env({**env, "MAESTRO_STATE_DIR": str(tmp_path)}))
    assert opts.pip_options == ("--no-index", "--find-links", "/a b")
    assert opts.npm_options == ("--loglevel=warn",)
    assert dict(opts.passthrough) == {"PIP_INDEX_URL": "http://127.0.0.1/simple",
                                      "COREPACK_NPM_REGISTRY": "http://127.0.0.1/npm"}
    assert opts.log_dir == tmp_path / "builds"


def test_build_wrapper_is_used_when_the_policy_has_one():
    account = Account("nobody", 65534, 65534, Path("/nonexistent"))
    policy = SimpleNamespace(build_wrapper=lambda acc, d: ["bwrap", "--", ])
    assert builds.command_prefix(account, Path("/p"), policy) == ["bwrap", "--"]  # it drops privileges itself
    plain = builds.command_prefix(account, Path("/p"), object())
    if os.geteuid() == 0:
        assert plain[0] == "/usr/bin/setpriv" and "--reuid=65534" in plain


def test_behind_the_sandbox_wrapper_proxy_variables_go_to_the_wrapper():
    """The step's last exec (after the wrapper's environment) must not set a proxy variable: it
    would override the sandbox's proxy, the only way out of the build's network namespace.
    They go to the wrapper as --env, which keeps them only when it does not proxy."""
    env = {"HOME": "/h", "https_proxy": "http://corp:8080", "NO_PROXY": "x", "PIP_INDEX_URL": "http://i/"}
    argv, _ = builds.wrap(["python3", "-m", "maestro_runtime.sandbox.cli", "--config", "c", "--"],
                          ["corepack", "pnpm", "install"], env, BuildOptions())
    cut = argv.index("--")
    assert argv[:cut] == ["python3", "-m", "maestro_runtime.sandbox.cli", "--config", "c",
                          "--env=https_proxy=http://corp:8080", "--env=NO_PROXY=x"]
    assert argv[cut + 1:] == ["/usr/bin/env", "HOME=/h", "PIP_INDEX_URL=http://i/", "corepack", "pnpm", "install"]
    if os.geteuid() == 0:  # without a wrapper (setpriv) the build's proxy variables are its own
        plain, _ = builds.wrap(["/usr/bin/setpriv", "--reuid=1"], ["true"], env, BuildOptions())
        assert "https_proxy=http://corp:8080" in plain


FAKE_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    # fake interpreter: --version, -m venv DIR (makes a venv whose python logs pip calls)
    if [ "$1" = "--version" ]; then echo "Python 3.11.99"; exit 0; fi
    if [ "$1 $2" = "-m venv" ]; then
      dir="$4"; mkdir -p "$dir/bin"
      printf 'home = /x\\nversion = 3.11.99\\n' > "$dir/pyvenv.cfg"
      cat > "$dir/bin/python" <<'EOS'
    #!/bin/sh
    echo "pip $*" >> "$PIP_LOG"
    grep -q FAIL requirements.txt 2>/dev/null && { echo "ERROR: No matching distribution for FAIL"; exit 1; }
    grep -q OOM requirements.txt 2>/dev/null && kill -9 $$
    exit 0
    EOS
      chmod +x "$dir/bin/python"; echo "venv $dir" >> "$PIP_LOG"; exit 0
    fi
    exit 2
""")


@pytest.fixture
def fake(tmp_path):
    python = tmp_path / "fakepython"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    entry = pwd.getpwuid(os.getuid())
    home = tmp_path / "home"
    (home / ".maestro" / "tmp").mkdir(parents=True)
    account = Account(entry.pw_name, os.getuid(), os.getgid(), home)
    project = tmp_path / "proj"
    project.mkdir()
    pip_log = tmp_path / "pip.log"
    opts = BuildOptions(python=str(python), log_dir=tmp_path / "logs", passthrough=(("PIP_LOG", str(pip_log)),))
    return SimpleNamespace(account=account, project=project, opts=opts, pip_log=pip_log)


def run(f):
    return builds.build(f.project, f.account, settings=None, policy=None, service_id="web", options=f.opts)


def test_second_build_runs_no_pip(fake):
    (fake.project / "requirements.txt").write_text("flask\n")
    assert run(fake) == ["python"]
    calls = fake.pip_log.read_text().splitlines()
    assert calls[0].startswith("venv ") and calls[1].startswith("pip -m pip install")
    stamp = fake.account.venv_dir / builds.STAMP_NAME
    mtime = stamp.stat().st_mtime_ns
    assert run(fake) == []
    assert fake.pip_log.read_text().splitlines() == calls  # not a single extra pip call
    assert stamp.stat().st_mtime_ns == mtime
    (fake.project / "requirements.txt").write_text("flask\nhttpx\n")
    assert run(fake) == ["python"]
    new = fake.pip_log.read_text().splitlines()[len(calls):]
    installs = [line for line in new if line.startswith(("venv ", "pip -m"))]
    assert installs == [new[0]] and new[0].startswith("pip -m pip install")  # same interpreter: venv reused


def test_failed_build_raises_with_log_tail_and_no_stamp(fake):
    (fake.project / "requirements.txt").write_text("FAIL\n")
    with pytest.raises(BuildError, match="No matching distribution for FAIL") as info:
        run(fake)
    assert "exit 1" in str(info.value)
    assert not (fake.account.venv_dir / builds.STAMP_NAME).exists()
    with pytest.raises(BuildError):  # still failing: no stamp was written, so it is retried
        run(fake)


def test_a_build_killed_by_the_kernel_says_it_was_killed(fake):
    """SIGKILL is what the kernel's OOM killer sends when a build outgrows the container's memory."""
    (fake.project / "requirements.txt").write_text("OOM\n")
    with pytest.raises(BuildError, match=r"python build was killed \(exit -9: out of memory\?\)"):
        run(fake)


def test_project_without_manifest_builds_nothing(fake):
    (fake.project / "main.py").write_text("print(1)\n")
    assert run(fake) == []
    assert not fake.account.venv_dir.exists()


def test_invalid_package_json(fake):
    (fake.project / "package.json").write_text("{nope")
    with pytest.raises(BuildError, match=r"package\.json"):
        run(fake)


def test_node_build_with_real_npm_and_no_dependencies(fake):
    (fake.project / "package.json").write_text('{"name": "x", "version": "1.0.0"}')
    assert run(fake) == ["node"]
    stamp = fake.project / "node_modules" / builds.STAMP_NAME
    assert stamp.is_file()
    assert not (fake.project / "package-lock.json").exists()  # the inputs did not change
    log = (fake.opts.log_dir / "web.build.log").read_text()
    assert run(fake) == []
    assert (fake.opts.log_dir / "web.build.log").read_text() == log


def test_build_seconds_sums_only_root_exit_lines(tmp_path):
    """A build's duration is the sum of the steps file's ``# exit N after Xs`` lines; lines that are
    no duration (nan, negative, absurd, cut by the 4 KiB read) count for nothing."""
    from maestro_runtime.sources.buildplan import build_seconds

    steps = tmp_path / "s.build.steps"
    assert build_seconds(steps) is None  # no file: no build
    steps.write_bytes(b"# maestro: python\n$ uv pip install\n# exit 0 after 1.5s\n# exit 1 after nans\n"
                      b"# exit 0 after -3s\n# exit 0 after 1e12s\n# exit 0 after " + b"9" * 5000 + b"s\n"
                      b"# maestro: node\n# exit 0 after 2.0s\n")
    assert build_seconds(steps) == 3.5
    steps.write_bytes(b"# maestro: python\n")
    assert build_seconds(steps) is None
