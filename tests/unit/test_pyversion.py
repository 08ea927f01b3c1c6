"""Which Python a project gets: the pin when it is here, else the newest that fits, else a clear error."""

import pytest

from maestro_runtime.sources import pyversion
from maestro_runtime.sources.pybuild import collectstatic_step, uv_steps
from maestro_runtime.sources.pyversion import Interpreter, NoInterpreter, Request, choose, read_request

HERE = [Interpreter("/usr/bin/python3.11", "3.11.2"), Interpreter("/usr/bin/python3.13", "3.13.5"),
        Interpreter("/usr/local/bin/python3.12", "3.12.7")]


def test_read_request_from_every_file():
    r = read_request({".python-version": "# c\n3.14\n", "runtime.txt": "python-3.11.4",
                      "pyproject.toml": '[project]\nrequires-python = ">=3.12"\n',
                      "uv.lock": 'version = 1\nrequires-python = ">=3.12, <4"\n'})
    assert (r.pin, r.pin_source) == ("3.14", ".python-version")
    assert r.constraints == ((">=3.12", "pyproject.toml requires-python"), (">=3.12, <4", "uv.lock requires-python"))
    assert read_request({"runtime.txt": "python-3.11.4\n"}).pin == "3.11.4"
    assert read_request({"pyproject.toml": "not [toml"}).empty


def test_exact_pin_when_here():
    assert choose(Request("3.12", ".python-version"), HERE).interpreter.version == "3.12.7"
    assert choose(Request("3.11.2", "runtime.txt"), HERE).warning is None


def test_newest_fitting_with_a_warning_naming_both():
    c = choose(Request("3.14", ".python-version", ((">=3.12", "pyproject.toml requires-python"),)), HERE)
    assert c.interpreter.version == "3.13.5"
    assert "3.14 (.python-version)" in c.warning and "3.13.5" in c.warning and ">=3.12" in c.warning
    c = choose(Request("3.12.1", ".python-version"), HERE)
    assert c.interpreter.version == "3.12.7" and "3.12.1" in c.warning, "same minor first"


def test_a_fallback_that_misses_the_pin_says_so():
    """Issue 12 re-run: with only 3.11 here a 3.14 pin got "using 3.11.2, the newest available that
    fits", although 3.11 fits nothing the project asked for."""
    c = choose(Request("3.14", ".python-version"), [Interpreter("/usr/bin/python3.11", "3.11.2")])
    assert c.interpreter.version == "3.11.2"
    assert "fits" not in c.warning
    assert "3.11.2 does not satisfy the pin 3.14 (.python-version)" in c.warning and "older" in c.warning
    assert "MAESTRO_PYTHON_INSTALL_MIRROR" in c.warning  # how to get the pinned one
    newer = choose(Request("3.10", "runtime.txt"), HERE)
    assert "3.13.5 does not satisfy the pin 3.10 (runtime.txt)" in newer.warning and "newer" in newer.warning
    same = choose(Request("3.12.1", ".python-version"), HERE)
    assert "same minor version" in same.warning and "does not satisfy" not in same.warning


def test_constraints_alone_pick_the_newest_that_fits():
    assert choose(Request(None, "", (("<3.13", "pyproject.toml requires-python"),)), HERE).interpreter.version \
        == "3.12.7"
    assert choose(Request(), HERE).interpreter.version == "3.13.5"


def test_none_fits_is_a_clear_error():
    with pytest.raises(NoInterpreter) as info:
        choose(Request(None, "", ((">=3.14", "pyproject.toml requires-python"),)), HERE)
    assert ">=3.14 (pyproject.toml requires-python)" in str(info.value) and "3.11.2" in str(info.value)


def test_uv_steps(tmp_path):
    venv = tmp_path / "venv"
    assert uv_steps({"pyproject.toml", "uv.lock"}, venv, "/usr/bin/python3.13", "/uv", fresh_venv=True) == (
        ("/uv", "sync", "--frozen", "--no-dev", "--python", "/usr/bin/python3.13"),)
    steps = uv_steps({"requirements.txt"}, venv, "/usr/bin/python3.13", "/uv", fresh_venv=True)
    assert steps[0][:2] == ("/uv", "venv") and steps[1][-2:] == ("-r", "requirements.txt")
    assert uv_steps({"requirements.txt"}, venv, "/p", "/uv", fresh_venv=False)[0][1:3] == ("pip", "install")


def test_collectstatic_only_with_static_root(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    proj = tmp_path / "p"
    (proj / "site").mkdir(parents=True)
    (proj / "manage.py").write_text("")
    (proj / "site" / "settings.py").write_text("STATIC_URL = '/static/'\n")
    assert collectstatic_step(proj, venv, {}) is None
    (proj / "site" / "settings.py").write_text("STATIC_ROOT = BASE_DIR / 'staticfiles'\n")
    assert collectstatic_step(proj, venv, {})[-2:] == ("collectstatic", "--noinput")
    assert collectstatic_step(proj, venv, {"DISABLE_COLLECTSTATIC": "1"}) is None


def test_install_target_only_when_nothing_here_serves_the_request():
    from maestro_runtime.sources.pyversion import install_target

    constraint = ((">=3.12", "pyproject.toml requires-python"),)
    assert install_target(Request("3.12", ".python-version"), HERE) is None
    assert install_target(Request("3.14", ".python-version", constraint), HERE) == "3.14"
    assert install_target(Request("3.12.4", ".python-version"), HERE) == "3.12.4"
    # a pin the constraints exclude is not installed; the constraints are, when nothing fits them
    assert install_target(Request("3.10", ".python-version", constraint), HERE) is None
    assert install_target(Request(None, "", ((">=3.14", "uv.lock requires-python"),)), HERE) == ">=3.14"
    assert install_target(Request(None, "", constraint), HERE) is None
    assert install_target(Request(), HERE) is None
    both = ((">= 3.14", "pyproject.toml requires-python"), ("<4", "uv.lock requires-python"))
    assert install_target(Request(None, "", both), HERE) == "<4,>=3.14"
    # a project's text never reaches root's installer as an option
    hostile = (("--install-dir=/etc", "pyproject.toml requires-python"),)
    assert install_target(Request(None, "", hostile), HERE) is None


def test_no_install_source_means_no_install_attempt(tmp_path, monkeypatch):
    """Without MAESTRO_PYTHON_INSTALL_MIRROR/_DOWNLOADS_JSON_URL nothing is installed (no outside
    name is ever looked up): the pin falls back at once, with the warning."""
    from maestro_runtime.sources import pybuild, pyinstall
    from maestro_runtime.sources.builds import BuildOptions

    def refuse(*_a, **_k):
        raise AssertionError("install attempted")

    monkeypatch.setattr(pyinstall, "install", refuse)  # a spy: the assertion is that it is never called
    (tmp_path / ".python-version").write_text("3.99\n")
    opts = BuildOptions(python_explicit=False, python_install_dir=str(tmp_path / "none"))
    choice = pybuild.choose_interpreter(tmp_path, opts)
    assert "3.99 (.python-version), which is not here" in choice.warning and "installing" not in choice.warning


def test_install_folder_must_be_roots_alone(tmp_path):
    import os

    from maestro_runtime.sources.pyinstall import first_and_cause, unsafe_folder

    safe = tmp_path / "py"
    safe.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    if os.geteuid() == 0:
        assert unsafe_folder(safe) is None
        assert unsafe_folder(safe / "not-yet") is None
        open_dir = tmp_path / "open"
        open_dir.mkdir()
        open_dir.chmod(0o777)
        assert "may be changed by others" in unsafe_folder(open_dir / "py")
        os.chown(safe, 1000, 1000)
        assert "is not root's" in unsafe_folder(safe)
        link = tmp_path / "link"
        link.symlink_to(open_dir)
        assert "may be changed by others" in unsafe_folder(link / "py"), "a link is judged by its target"
    text = ("error: Failed to install cpython-3.12.8-linux-x86_64-gnu\n  cause: Failed to download "
            "`http://u:secret@m/x`\n  cause: Connection refused (os error 111)\n")
    assert first_and_cause(text, 1) == ("error: Failed to install cpython-3.12.8-linux-x86_64-gnu: "
                                        "Connection refused (os error 111)")
    assert first_and_cause("", 2) == "exit 2"


def test_a_failed_install_names_the_older_interpreters_that_fit():
    here = [Interpreter("/usr/bin/python3.13", "3.13.5"), Interpreter("/usr/bin/python3.11", "3.11.2")]
    hint = pyversion.others_hint(read_request({}), here, "3.13.5")
    assert hint == ("Python 3.11.2 is also here and fits the project: a .python-version file saying 3.11 builds "
                    "with it (dependencies pinned before Python 3.13 often have no wheel for it)")
    # Nothing older fits the constraints, or the project pinned its version itself: nothing to add.
    assert pyversion.others_hint(read_request({"pyproject.toml": '[project]\nrequires-python = ">=3.12"\n'}),
                                 here, "3.13.5") is None
    assert pyversion.others_hint(read_request({".python-version": "3.13\n"}), here, "3.13.5") is None
    assert pyversion.others_hint(read_request({}), here, "3.11.2") is None
