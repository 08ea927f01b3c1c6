"""A project whose commands come from render.yaml gets what Render sets for every build and
process, where constant (issue 12 re-run: render-examples/django's build.sh ran collectstatic,
whose settings set STATIC_ROOT only when RENDER is set, and the build failed here)."""

from __future__ import annotations

import json

from maestro_runtime.sources.declared import platform_env, service_env

RENDER_YAML = """\
services:
  - type: worker
    name: q
    startCommand: celery worker
    envVars:
      - key: WORKER_ONLY
        value: "1"
  - type: web
    name: mysite
    env: python
    buildCommand: ./build.sh
    startCommand: gunicorn mysite.wsgi
    envVars:
      - key: WEB_CONCURRENCY
        value: 4
      - key: DEBUG_OFF
        value: false
      - key: SECRET_KEY
        generateValue: true
      - key: DATABASE_URL
        fromDatabase: {name: db, property: connectionString}
      - key: API_TOKEN
        sync: false
      - key: PORT
        value: 10000
      - key: "BAD KEY"
        value: x
"""


def test_render_markers_and_literal_env_vars_of_the_web_service(tmp_path):
    (tmp_path / "render.yaml").write_text(RENDER_YAML)
    assert platform_env(tmp_path) == {
        "RENDER": "true", "IS_PULL_REQUEST": "false", "RENDER_SERVICE_TYPE": "web",
        "RENDER_SERVICE_NAME": "mysite", "WEB_CONCURRENCY": "4", "DEBUG_OFF": "false",
    }  # no secrets (generateValue, sync: false, fromDatabase), no PORT, no other service's


def test_the_operator_and_the_runtime_win(tmp_path):
    (tmp_path / "render.yaml").write_text(RENDER_YAML)
    env = service_env(tmp_path, {"WEB_CONCURRENCY": "2", "RENDER": "no"}, "web")
    assert env["WEB_CONCURRENCY"] == "2" and env["RENDER"] == "no" and env["RENDER_SERVICE_NAME"] == "mysite"
    assert "PORT" not in env


def test_only_when_the_commands_come_from_render_yaml(tmp_path):
    (tmp_path / "render.yaml").write_text(RENDER_YAML.replace("    buildCommand: ./build.sh\n", ""))
    (tmp_path / "Procfile").write_text("web: gunicorn mysite.wsgi\n")
    assert platform_env(tmp_path) == {}  # Procfile's start, no render.yaml build: not a Render run
    (tmp_path / "railway.json").write_text(json.dumps({"deploy": {"startCommand": "python app.py"}}))
    assert platform_env(tmp_path) == {}
    (tmp_path / "Procfile").unlink()
    (tmp_path / "railway.json").unlink()
    assert platform_env(tmp_path)["RENDER"] == "true"  # render.yaml's startCommand


def test_a_hostile_render_yaml_gives_nothing_odd(tmp_path):
    (tmp_path / "render.yaml").write_text("services:\n  - type: web\n    startCommand: x\n"
                                          "    envVars: {key: A, value: b}\n")
    assert platform_env(tmp_path) == {"RENDER": "true", "IS_PULL_REQUEST": "false", "RENDER_SERVICE_TYPE": "web"}
    (tmp_path / "render.yaml").write_text("services:\n  - type: web\n    startCommand: x\n    envVars:\n"
                                          "      - {key: A, value: [1, 2]}\n      - {key: B, value: {c: d}}\n"
                                          "      - {key: C, value: null}\n      - [1]\n")
    assert set(platform_env(tmp_path)) == {"RENDER", "IS_PULL_REQUEST", "RENDER_SERVICE_TYPE"}
