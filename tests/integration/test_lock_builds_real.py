"""Pipenv and Poetry projects built for real as a throwaway system user with uv from PyPI (trial 15),
and a venv left by another interpreter replaced, not refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from fixtures.locks import POETRY_LOCK, POETRY_PYPROJECT
from fixtures.projects import write
from integration import test_builds_real as real
from integration.test_builds_real import PY_MAIN, build, own, start

from maestro_runtime.sources import builds

world = real.world  # the throwaway user, projects and state folders of the real-build tests

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates a system user"),
]

def _site(world):
    return next(world.account.venv_dir.glob("lib/python*/site-packages"))


def _uv(world):
    """The build installs with uv (a copy every project user can run), whatever the host has."""
    world.settings.environ["MAESTRO_PYTHON_INSTALLER"] = "uv"
    world.settings.environ["MAESTRO_UV"] = str(paas.uv_binary(world.base / "uvbin"))


def test_poetry_app_without_a_package_gets_its_locked_dependencies_only(world):
    _uv(world)
    write(world.project, {"pyproject.toml": POETRY_PYPROJECT, "poetry.lock": POETRY_LOCK, "main.py": PY_MAIN})
    own(world)
    assert build(world) == ["python"]  # before: poetry-core "No file/folder found for package lock-demo"
    assert (_site(world) / "six.py").is_file() and not list(_site(world).glob("iniconfig*"))
    assert start(world, ["python", "main.py"]) == f"six 1.16.0 as {world.account.uid}"
    assert build(world) == [], "up to date"
    write(world.project, {"poetry.lock": POETRY_LOCK.replace("1.16.0", "1.17.0")})
    own(world)
    assert build(world) == ["python"], "a changed lock is a rebuild"
    assert start(world, ["python", "main.py"]) == f"six 1.17.0 as {world.account.uid}"


def test_pipenv_project_from_its_lock(world):
    _uv(world)
    lock = {"_meta": {"requires": {}}, "default": {"six": {"version": "==1.16.0"}},
            "develop": {"iniconfig": {"version": "==2.0.0"}}}
    write(world.project, {"Pipfile": '[packages]\nsix = "*"\n', "Pipfile.lock": json.dumps(lock), "main.py": PY_MAIN})
    own(world)
    assert build(world) == ["python"]  # before: nothing built, no Pipfile support
    assert not list(_site(world).glob("iniconfig*"))
    assert start(world, ["python", "main.py"]) == f"six 1.16.0 as {world.account.uid}"


def test_a_venv_of_another_interpreter_is_replaced(world):
    """What a fallback to an older Python meets: the venv the failed build made. uv (>= 0.8)
    refused it ("A virtual environment already exists") without --clear."""
    _uv(world)
    venv = world.account.venv_dir
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.9.0\n")
    (venv / "bin" / "python").symlink_to(sys.executable)
    for path in (venv, venv / "bin", venv / "pyvenv.cfg"):
        os.lchown(path, world.account.uid, world.account.gid)
    write(world.project, {"requirements.txt": "six==1.16.0\n", "main.py": PY_MAIN})
    own(world)
    assert build(world) == ["python"]
    assert "uv venv" in (world.base / "state" / "builds" / "web.build.log").read_text()
    assert "version = 3.9.0" not in (venv / "pyvenv.cfg").read_text()
    assert (venv / builds.STAMP_NAME).is_file()


def _dist(site: Path, name: str, requires: list[str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))


@pytest.mark.parametrize("requires, installs", [
    (["setuptools (>=3.0)"], True),  # gunicorn 20.1.0's own line
    (["setuptools>=81"], False),  # asks for a setuptools without pkg_resources: its choice
    (["setuptools ; extra == 'dev'"], False),
    (["packaging"], False),
])
def test_pkg_resources_for_a_dependency_that_requires_setuptools(tmp_path, requires, installs):
    """Trial 15: gunicorn 20.1.0 (digitalocean/sample-django, fly-apps/python-hellofly-flask)
    requires setuptools and imports pkg_resources, which setuptools 81 removed. A real venv
    (uv, no seed: no setuptools) with a distribution declaring that requirement, the step run
    as the build runs it, installing from PyPI."""
    from maestro_runtime.sources import pkgresources

    uv = paas.uv_binary(tmp_path / "uvbin")
    venv = tmp_path / "venv"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    _dist(site, "oldserver", requires)
    step = pkgresources.step(venv, (str(uv), "pip", "install", "--python", str(venv / "bin" / "python")))
    proc = subprocess.run(step, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import pkg_resources"], capture_output=True)
    assert (found.returncode == 0) is installs
    assert ("oldserver require setuptools" in proc.stdout) is installs
