"""Which Python a project gets: the pin when it is here, else the newest that fits, else a clear error."""

import pytest

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
