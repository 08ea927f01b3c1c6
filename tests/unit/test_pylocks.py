"""Pipenv and Poetry projects: their locks become installer arguments (issue 12, trial 15).

Trial 15 found a Pipfile project (Flask in lab.py, Pipfile + Pipfile.lock) failing with "Python
sources but no way to start them" (nothing was installed: no Pipfile support), and a Poetry app
(``app.py``, no package folder) failing its build: ``uv pip install -e .`` asks poetry-core to
build a package that does not exist. The fixtures below are hand-written in those shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

from maestro_runtime.sources import pylocks, pyversion
from maestro_runtime.sources.detect import declared_packages, detect_command
from maestro_runtime.sources.pybuild import lock_requirements, python_plan, uv_steps

PIPFILE = """[[source]]
url = "https://pypi.org/simple"
verify_ssl = true
name = "pypi"

[packages]
flask = "*"
requests = {version = ">=2.31", extras = ["socks"]}

[dev-packages]
pytest = "*"

[requires]
python_version = "3.8"
"""

PIPFILE_LOCK = json.dumps({
    "_meta": {"requires": {"python_version": "3.12"}, "sources": []},
    "default": {
        "flask": {"hashes": ["sha256:x"], "markers": "python_version >= '3.8'", "version": "==3.0.3"},
        "colorama": {"markers": "platform_system == 'Windows'", "version": "==0.4.6"},
        "requests": {"extras": ["socks"], "version": "==2.32.3"},
        "mylib": {"git": "https://example.org/acme/mylib.git", "ref": "0123abcd"},
        "local": {"path": ".", "editable": True},
        "--index-url=http://evil": {"version": "==1"},
        "bad": {"version": "==1 --extra-index-url http://evil"},
    },
    "develop": {"pytest": {"version": "==8.0.0"}},
})

POETRY_PYPROJECT = """[tool.poetry]
name = "demo-app"
version = "0.1.0"

[tool.poetry.dependencies]
python = "^3.10"
web = {version = "^1.0", extras = ["fast"]}
tiny = "^2.0"

[tool.poetry.group.dev.dependencies]
checker = "^8.0"
"""

# Poetry 1.8's lock (lock-version 2.0): no category, no groups; the walk from the main
# dependencies tells main from dev. "web" asks "helper" on Windows only, "fast" is an extra
# whose list names no marker (the optional entry carries it), "loop" is a cycle.
POETRY_LOCK = """
[[package]]
name = "web"
version = "1.2.0"
optional = false

[package.dependencies]
helper = {version = "*", markers = "platform_system == \\"Windows\\""}
loop = ">=1"
speedups = {version = ">=0.1", optional = true, markers = "sys_platform != \\"win32\\" and extra == \\"fast\\""}

[package.extras]
fast = ["speedups (>=0.1)"]

[[package]]
name = "helper"
version = "0.4.6"

[[package]]
name = "loop"
version = "1.0.0"

[package.dependencies]
web = "*"

[[package]]
name = "speedups"
version = "0.19.0"

[[package]]
name = "tiny"
version = "2.1.0"

[[package]]
name = "checker"
version = "8.0.0"

[package.dependencies]
helper = "*"

[metadata]
lock-version = "2.0"
"""


def test_pipfile_lock_default_section_with_markers_extras_and_git():
    locked = pylocks.pipenv(PIPFILE_LOCK, PIPFILE)
    assert locked.source == "Pipfile.lock"
    assert set(locked.requirements) == {
        "flask==3.0.3 ; python_version >= '3.8'",
        "colorama==0.4.6 ; platform_system == 'Windows'",
        "requests[socks]==2.32.3",
        "mylib @ git+https://example.org/acme/mylib.git@0123abcd",
    }
    # the develop section, the project's own path and option-looking names or versions stay out
    assert not any(r.startswith("-") or "evil" in r or "pytest" in r for r in locked.requirements)


def test_pipfile_without_a_lock_gives_its_packages_unpinned():
    assert pylocks.pipenv(None, PIPFILE).requirements == ("flask", "requests[socks]>=2.31")
    assert pylocks.pipenv("not json", "not [toml") is None


def test_pipfile_python_version_is_a_pin_the_lock_first():
    assert pylocks.pipfile_python(PIPFILE_LOCK, PIPFILE) == "3.12"
    request = pyversion.read_request({"Pipfile": PIPFILE})
    assert (request.pin, request.pin_source) == ("3.8", "Pipfile")
    assert pyversion.read_request({"Pipfile": PIPFILE, ".python-version": "3.11\n"}).pin == "3.11"


def test_poetry_main_closure_markers_extras_and_no_dev_group():
    locked = pylocks.poetry(POETRY_PYPROJECT, POETRY_LOCK)
    assert locked.source == "poetry.lock"
    by_name = {r.split("==")[0]: r for r in locked.requirements}
    assert set(by_name) == {"web", "helper", "loop", "speedups", "tiny"}, "checker is a dev dependency"
    assert by_name["web"] == "web==1.2.0" and by_name["tiny"] == "tiny==2.1.0"
    assert by_name["helper"] == 'helper==0.4.6 ; (platform_system == "Windows")'
    assert by_name["speedups"] == 'speedups==0.19.0 ; (sys_platform != "win32")', "the extra's clause is dropped"
    assert by_name["loop"] == "loop==1.0.0"


def test_poetry_marker_alternatives_and_unconditional_paths():
    lock = POETRY_LOCK.replace('tiny"\nversion = "2.1.0"', 'tiny"\nversion = "2.1.0"\n\n[package.dependencies]\n'
                               'helper = {version = "*", markers = "sys_platform == \\"win32\\""}')
    helper = next(r for r in pylocks.poetry(POETRY_PYPROJECT, lock).requirements if r.startswith("helper"))
    assert helper == 'helper==0.4.6 ; (platform_system == "Windows") or (sys_platform == "win32")'
    always = POETRY_PYPROJECT.replace('tiny = "^2.0"', 'tiny = "^2.0"\nhelper = "*"')
    assert "helper==0.4.6" in pylocks.poetry(always, POETRY_LOCK).requirements


def test_poetry_project_itself_only_when_poetry_would_find_its_package():
    assert not pylocks.poetry_root_installable(POETRY_PYPROJECT, {"app.py", "pyproject.toml"})
    assert pylocks.poetry_root_installable(POETRY_PYPROJECT, {"demo_app", "pyproject.toml"})
    assert pylocks.poetry_root_installable(POETRY_PYPROJECT, {"src/demo_app"})
    declared = POETRY_PYPROJECT.replace('version = "0.1.0"', 'version = "0.1.0"\npackages = [{include = "x"}]')
    assert pylocks.poetry_root_installable(declared, set())
    off = POETRY_PYPROJECT.replace('version = "0.1.0"', 'version = "0.1.0"\npackage-mode = false')
    assert not pylocks.poetry_root_installable(off, {"demo_app"})


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_plans_install_the_lock_and_the_project_only_when_it_is_a_package(tmp_path):
    venv = tmp_path / "venv"
    app = _write(tmp_path / "poetry", {"pyproject.toml": POETRY_PYPROJECT, "poetry.lock": POETRY_LOCK,
                                       "app.py": ""})
    files = {"pyproject.toml", "poetry.lock", "app.py"}
    locked, root = lock_requirements(app, files)
    assert not root
    steps = uv_steps(files, venv, "/py", "/uv", fresh_venv=True, locked=locked, root=root)
    assert steps[0][:2] == ("/uv", "venv") and "--clear" in steps[0], "a venv of another interpreter is replaced"
    assert steps[1][:5] == ("/uv", "pip", "install", "--python", str(venv / "bin" / "python"))
    assert "web==1.2.0" in steps[1] and "-e" not in steps[1] and len(steps) == 3
    assert steps[2][:2] == (str(venv / "bin" / "python"), "-c"), "then pkg_resources for old pins"
    (app / "demo_app").mkdir()
    locked, root = lock_requirements(app, files | {"demo_app"})
    steps = uv_steps(files, venv, "/py", "/uv", fresh_venv=False, locked=locked, root=root)
    assert steps[-2][-3:] == ("--no-deps", "-e", "."), "the package itself, its dependencies from the lock"
    pip = python_plan(files, venv, type("O", (), {"pip_options": (), "python": "/py"})(), fresh_venv=False,
                      locked=locked, root=root)
    assert "tiny==2.1.0" in pip.steps[0] and pip.steps[-2][-3:] == ("--no-deps", "-e", ".")
    assert "poetry.lock" in pip.inputs, "a changed lock is a rebuild"

    pipenv = _write(tmp_path / "pipenv", {"Pipfile": PIPFILE, "Pipfile.lock": PIPFILE_LOCK})
    locked, root = lock_requirements(pipenv, {"Pipfile", "Pipfile.lock"})
    assert locked.source == "Pipfile.lock" and not root
    # requirements.txt wins, as on every platform
    assert lock_requirements(pipenv, {"Pipfile", "Pipfile.lock", "requirements.txt"}) == (None, True)
    empty = uv_steps({"Pipfile"}, venv, "/py", "/uv", fresh_venv=False, locked=pylocks.Locked((), "Pipfile"),
                     root=False)
    assert empty == (("/uv", "venv", "--quiet", "--seed", "--allow-existing", "--python", "/py", str(venv)),)


def test_flask_declared_in_a_pipfile_is_detected_before_any_install(tmp_path):
    project = _write(tmp_path / "p", {"Pipfile": PIPFILE, "lab.py": "from flask import Flask\napp = Flask(__name__)\n"})
    assert {"flask", "requests"} <= declared_packages(project)
    detection = detect_command(project)
    assert detection.command == "flask --app lab:app run --host 0.0.0.0 --port $PORT"
    poetry = _write(tmp_path / "q", {"pyproject.toml": POETRY_PYPROJECT.replace("tiny", "uvicorn"),
                                     "api.py": "from fastapi import FastAPI\napp = FastAPI()\n"})
    assert detect_command(poetry).command == "uvicorn api:app --host 0.0.0.0 --port $PORT"


# ---------------------------------------------------------------- an older Python after a failed source build
# Trial 15: psycopg2-binary 2.9.3 (a Django sample) and httptools 0.6.1 (a Poetry sample's lock)
# have no wheel for the image's newest Python and no longer compile there; 3.11 is beside it.

UV_FAILED = "error: Failed to build `httptools==0.6.1`\n  Caused by: Build backend failed\n"
PIP_FAILED = "ERROR: Failed building wheel for psycopg2-binary\n"


def test_older_fits_only_without_a_pin():
    here = [pyversion.Interpreter("/a", "3.11.2"), pyversion.Interpreter("/b", "3.13.5"),
            pyversion.Interpreter("/c", "3.12.7")]
    assert [i.version for i in pyversion.older_fits(pyversion.Request(), here, "3.13.5")] == ["3.12.7", "3.11.2"]
    capped = pyversion.Request(None, "", ((">=3.12", "pyproject.toml requires-python"),))
    assert [i.version for i in pyversion.older_fits(capped, here, "3.13.5")] == ["3.12.7"]
    assert pyversion.older_fits(pyversion.Request("3.13", ".python-version"), here, "3.13.5") == []


def _newest_python(tmp_path: Path) -> str:
    """A stand-in for an interpreter newer than any here: only its ``--version`` is asked
    (mock: the host has one Python, and fallback() runs nothing else of it)."""
    fake = tmp_path / "bin" / "python3.99"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho Python 3.99.0\n")
    fake.chmod(0o755)
    return str(fake)


def test_fallback_only_after_a_source_build_failure_and_never_over_a_choice(tmp_path):
    from maestro_runtime.sources.builds import BuildOptions
    from maestro_runtime.sources.pybuild import fallback, interpreters

    opts = BuildOptions(python_explicit=False, extra_pythons=(_newest_python(tmp_path),), installer="pip")
    project = _write(tmp_path / "p", {"requirements.txt": "httptools==0.6.1\n"})
    files, venv = {"requirements.txt"}, tmp_path / "venv"
    older = [i for i in interpreters(opts) if i.version != "3.99.0"]
    for log in (UV_FAILED, PIP_FAILED, None):  # None: is there one built with before? (the stamp check)
        found = fallback(project, files, venv, opts, tmp_path, "3.99.0", failed_log=log)
        assert found is not None and found[1] != "Python 3.99.0"
        assert found[0].steps[-2][-2:] == ("-r", "requirements.txt") and found[0].tool[0] != opts.extra_pythons[0]
        assert older and found[1].endswith(max(older, key=lambda i: pyversion.Version(i.version)).version)
    assert fallback(project, files, venv, opts, tmp_path, "3.99.0", failed_log="No matching distribution") is None
    assert fallback(project, files, venv, BuildOptions(python_explicit=True, python=opts.extra_pythons[0]),
                    tmp_path, "3.99.0", failed_log=UV_FAILED) is None, "the operator's interpreter is final"
    (project / ".python-version").write_text("3.99\n")
    assert fallback(project, files, venv, opts, tmp_path, "3.99.0", failed_log=UV_FAILED) is None, "the project's pin"
