"""The build step a project declares for other platforms: which file, which command, which parts."""

import json
import os
from pathlib import Path

import pytest

from maestro_runtime.sources.builds import BuildOptions, node_plan
from maestro_runtime.sources.buildstep import fingerprint, stamp_of
from maestro_runtime.sources.declared import build_parts, declared_build, declared_web


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(("files", "command", "reason"), [
    ({"railway.json": json.dumps({"build": {"buildCommand": "npm run build"}})}, "npm run build",
     "railway.json build.buildCommand"),
    ({"railway.toml": '[build]\nbuildCommand = "make"\n'}, "make", "railway.toml build.buildCommand"),
    ({"render.yaml": "services:\n- type: worker\n  buildCommand: no\n- type: web\n  buildCommand: ./build.sh\n"
                     "  startCommand: gunicorn app:app\n"}, "./build.sh", "render.yaml buildCommand"),
    ({"nixpacks.toml": '[phases.build]\ncmds = ["a", "b"]\n'}, "a && b", "nixpacks.toml [phases.build] cmds"),
    ({"nixpacks.toml": '[phases.build]\ncmd = "c"\n'}, "c", "nixpacks.toml [phases.build] cmds"),
])
def test_declared_build_command(tmp_path, files, command, reason):
    found = declared_build(write(tmp_path, files))
    assert (found.command, found.reason) == (command, f"detected: {reason}")


@pytest.mark.parametrize("files", [
    {}, {"railway.json": "{not json"}, {"railway.json": '["list"]'}, {"render.yaml": "services: [1, 2]"},
    {"render.yaml": ": : :"}, {"nixpacks.toml": "[phases]\nbuild = 3\n"}, {"nixpacks.toml": "[[x"},
    {"railway.toml": '[build]\nbuildCommand = ""\n'},
])
def test_no_or_unreadable_declaration_is_no_build(tmp_path, files):
    assert declared_build(write(tmp_path, files)) is None


def test_render_start_and_build_come_from_the_same_web_service(tmp_path):
    write(tmp_path, {"render.yaml": "services:\n- type: web\n  buildCommand: first\n"
                                    "- type: web\n  buildCommand: second\n  startCommand: serve\n"})
    assert declared_web(tmp_path).command == "serve" and declared_build(tmp_path).command == "second"


def test_install_only_parts_are_left_out():
    assert build_parts("pip install --upgrade pip && pip install -r requirements.txt && python manage.py migrate") \
        == ("python manage.py migrate", ("pip install --upgrade pip", "pip install -r requirements.txt"))
    assert build_parts("npm install; npm run build") == ("npm run build", ("npm install",))
    assert build_parts("yarn && yarn build") == ("yarn build", ("yarn",))
    assert build_parts("uv sync --frozen") == (None, ("uv sync --frozen",))
    # what installs something else, or is not a plain list, runs as it is
    assert build_parts("pip install gunicorn") == ("pip install gunicorn", ())
    assert build_parts('npm ci && echo "x && y"') == ('npm ci && echo "x && y"', ())
    assert build_parts("npm ci | tee log") == ("npm ci | tee log", ())


def test_a_declared_build_replaces_scripts_build_and_needs_dev_dependencies():
    package = {"scripts": {"build": "vite build"}}
    opts = BuildOptions(npm_options=())
    plain = node_plan({"package.json", "package-lock.json"}, {}, opts, Path("/n"))
    assert "--omit=dev" in plain.steps[0]
    own = node_plan({"package.json", "package-lock.json"}, package, opts, Path("/n"))
    assert own.steps[-1] == ("npm", "run", "build")
    declared = node_plan({"package.json", "package-lock.json"}, package, opts, Path("/n"), declared_build=True)
    assert len(declared.steps) == 1 and "--omit=dev" not in declared.steps[0]


def test_fingerprint_sees_changes_but_not_dependencies_or_caches(tmp_path):
    write(tmp_path, {"app.py": "x"})
    (tmp_path / "node_modules").mkdir()
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    (tmp_path / "node_modules" / "dep.js").write_text("y")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.pyc").write_text("z")
    changed_dirs = fingerprint(tmp_path)
    (tmp_path / "node_modules" / "dep2.js").write_text("y")
    assert fingerprint(tmp_path) == changed_dirs, "what is inside node_modules does not count"
    os.utime(tmp_path / "app.py", ns=(1, 1))
    assert fingerprint(tmp_path) != changed_dirs
    (tmp_path / "link").symlink_to("/etc")
    assert fingerprint(tmp_path) is not None  # a link is an entry, never followed
    assert stamp_of("cmd", tmp_path, None) is None and stamp_of("a", tmp_path, "t") != stamp_of("b", tmp_path, "t")
