"""Environment for every spec form: interpolation, env_file, SVC_<i>_ENV_*, MAESTRO_ENV_<SVC>_*, .env."""

import pytest

from maestro_runtime.settings import Settings
from maestro_runtime.sources.declared import service_env
from maestro_runtime.spec import SpecError, parse_services_yaml, parse_svc_vars
from maestro_runtime.spec.envvars import interpolate, parse_dotenv
from maestro_runtime.spec.gather import gather_specs

ENV = {"DB": "postgres://db", "EMPTY": "", "SECRET": "s3cr3t"}


@pytest.mark.parametrize("value, expected", [
    ("${DB}/x", "postgres://db/x"), ("$DB", "postgres://db"), ("${NOPE}", ""), ("$$HOME", "$HOME"),
    ("${NOPE:-fallback}", "fallback"), ("${EMPTY:-fallback}", "fallback"), ("${EMPTY-fallback}", ""),
    ("${NOPE:-${DB}}", "postgres://db"), ("plain", "plain"), ("${EMPTY?x}", ""),
])
def test_compose_interpolation(value, expected):
    assert interpolate("f#1", "K", value, ENV) == expected


def test_required_variable_names_origin_and_key_never_a_value():
    with pytest.raises(SpecError) as info:
        interpolate("services.yml#2", "DATABASE_URL", "${PGURL:?set the database}", ENV)
    assert str(info.value) == "services.yml#2: env.DATABASE_URL: ${PGURL} is required: set the database"
    with pytest.raises(SpecError, match="not set"):
        interpolate("f", "K", "${EMPTY:?}", ENV)


def test_dotenv():
    text = ("# c\nexport A=1\nB='two # x'\nC=\"3\\n4\"\nD=five # comment\nnot a line\n 9X=bad\nE=\n")
    assert parse_dotenv(text) == {"A": "1", "B": "two # x", "C": "3\n4", "D": "five", "E": ""}


def test_yaml_env_file_then_env_interpolated(tmp_path):
    (tmp_path / "app.env").write_text("A=from-file\nB=file\n")
    text = "- repo: /src/a\n  env_file: app.env\n  env:\n    B: ${DB}\n    C: ${NOPE:-dflt}\n"
    result = parse_services_yaml(text, str(tmp_path / "services.yml"), ENV)
    assert not result.errors
    assert dict(result.specs[0].env) == {"A": "from-file", "B": "postgres://db", "C": "dflt"}
    bad = parse_services_yaml("- repo: /src/a\n  env_file: missing.env\n", str(tmp_path / "s.yml"), ENV)
    assert "env_file" in str(bad.errors[0]) and "missing.env" in str(bad.errors[0])


def test_svc_vars_and_named_env(tmp_path):
    env = {"SERVICES_COUNT": "1", "SVC_1_REPO": "/src/shop-api", "SVC_1_ENV_DEBUG": "1",
           "SVC_1_ENV_SECRET_KEY": "k", "SERVICES": "/src/web||||", "MAESTRO_ENV_WEB_GREETING": "hi",
           "MAESTRO_ENV_SHOP_API_DEBUG": "0", "MAESTRO_SERVICES_FILE": str(tmp_path / "none.yml")}
    assert dict(parse_svc_vars(env).specs[0].env) == {"DEBUG": "1", "SECRET_KEY": "k"}
    specs = {s.repo: s for s in gather_specs(Settings.from_env(env), preseeded=False).specs}
    assert dict(specs["/src/web"].env) == {"GREETING": "hi"}
    assert dict(specs["/src/shop-api"].env) == {"DEBUG": "0", "SECRET_KEY": "k"}, "named wins over SVC_<i>"


def test_project_dotenv_under_the_spec_and_fixed_keys_dropped(tmp_path, caplog):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / ".env").write_text("ENVIRONMENT=development\nTIMES=2\nPORT=1\n")
    env = service_env(tmp_path / "app", {"TIMES": "3", "HOME": "/x"}, "web")
    assert env == {"ENVIRONMENT": "development", "TIMES": "3"}
    assert "HOME, PORT" in caplog.text and "/x" not in caplog.text


def test_yaml_release_and_processes():
    text = ("- repo: /src/a\n  release: python manage.py migrate\n"
            "  processes:\n    worker: celery -A app worker\n    clock: python clock.py\n")
    spec = parse_services_yaml(text, "s.yml", {}).specs[0]
    assert spec.release == "python manage.py migrate"
    assert dict(spec.processes) == {"worker": "celery -A app worker", "clock": "python clock.py"}
    bad = parse_services_yaml("- repo: /src/a\n  processes:\n    web: x\n", "s.yml", {})
    assert str(bad.errors[0]).startswith("s.yml#1: processes: 'web' is not a process type")


def test_the_projects_dotenv_is_read_unless_the_operator_leaves_it_out(tmp_path):
    from maestro_runtime.settings import Settings
    from maestro_runtime.sources.declared import service_env

    (tmp_path / ".env").write_text("DEBUG=True\nSHARED=from-dotenv\n")
    spec_env = {"SHARED": "from-spec"}
    assert service_env(tmp_path, spec_env, "web") == {"DEBUG": "True", "SHARED": "from-spec"}
    assert service_env(tmp_path, spec_env, "web", dotenv=False) == {"SHARED": "from-spec"}
    for value, expected in (("", True), ("1", True), ("0", False), ("off", False), ("no", False)):
        env = {"MAESTRO_PROJECT_DOTENV": value} if value else {}
        assert Settings.from_env(env).build.project_dotenv is expected


def test_check_size_refuses_what_no_process_could_start_with():
    import pytest

    from maestro_runtime.spec import SpecError
    from maestro_runtime.spec.envvars import MAX_ENVIRONMENT, MAX_VARIABLE, check_size

    assert check_size("o", {"A": "1", "B": "x" * 1000}) == {"A": "1", "B": "x" * 1000}
    with pytest.raises(SpecError) as one:
        check_size("o", {"BIG": "x" * MAX_VARIABLE})
    assert one.value.field == "env.BIG" and "x" * 10 not in str(one.value)  # never the value
    shared = "y" * 100_000  # YAML aliases: one string, many keys
    with pytest.raises(SpecError) as many:
        check_size("o", {f"K{i}": shared for i in range(MAX_ENVIRONMENT // 100_000 + 1)})
    assert many.value.field == "env" and "21 variables" in str(many.value)
