"""Settings are checked once, at startup: every bad value named with its accepted form, all
at once, exit 2 before anything starts, no traceback (for the entrypoint and every command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maestro_runtime.settings import RULES, Settings, SettingsError, check_environ

REPO = Path(__file__).resolve().parents[2]

# (variable, a bad value, words the message must show of the accepted form)
BAD = [
    ("MAESTRO_STARTSECS", "abc", "whole number >= 0"),
    ("MAESTRO_STARTRETRIES", "-1", "whole number >= 0"),
    ("MAESTRO_STOPWAITSECS", "-5", "whole number >= 0"),
    ("MAESTRO_PORT_RANGE", "9-1", "LOW-HIGH"),
    ("MAESTRO_PORT_RANGE", "8000", "LOW-HIGH"),
    ("MAESTRO_PORT_RANGE", "1-70000", "65535"),
    ("MAESTRO_BUILD_TIMEOUT", "abc", "seconds > 0"),
    ("MAESTRO_BUILD_TIMEOUT", "0", "seconds > 0"),
    ("MAESTRO_FETCH_RETRIES", "-2", "whole number >= 0"),
    ("MAESTRO_FETCH_MAX_BYTES", "1G", "whole number >= 1"),
    ("MAESTRO_FETCH_CONNECT_TIMEOUT", "nan", "seconds > 0"),
    ("MAESTRO_GIT_TIMEOUT", "-1", "seconds > 0"),
    ("MAESTRO_EXTRACT_MAX_FILES", "0", "whole number >= 1"),
    ("MAESTRO_SANDBOX_MODE", "sometimes", "auto, require or off"),
    ("MAESTRO_SANDBOX_MEMORY", "lots", "512M"),
    ("MAESTRO_SANDBOX_CPU_QUOTA_US", "0", "or max"),
    ("MAESTRO_SANDBOX_CPU_PERIOD_US", "fast", "whole number >= 1"),
    ("MAESTRO_SANDBOX_PIDS_MAX", "-3", "or max"),
    ("MAESTRO_SANDBOX_NET_POLICY", "open", "deny or allow"),
    ("MAESTRO_FIREWALL_DISABLE", "on", "1, 0, true, false, yes or no"),
    ("MAESTRO_NPM_INCLUDE_DEV", "sure", "1, 0, true, false, yes or no"),
    ("ENTRYPOINT_LOG_LEVEL", "loud", "debug, info, warn"),
    ("MAESTRO_PRESEEDED_MODE", "sometimes", "auto, always or never"),
    ("PIP_INSTALL_OPTIONS", "--index-url 'x", "balanced quotes"),
    ("MAESTRO_GITHUB_API_URL", "ftp://example", "http:// or https://"),
    ("MAESTRO_RUNTIME_DIR", "/run/my maestro", "absolute path of letters"),
    ("SUPERVISOR_CONF_DIR", "relative/dir", "absolute path"),
    ("MAESTRO_STATE_DIR", "state", "absolute path"),
    ("HEALTHCHECK_BUDGET", "soon", "seconds > 0"),
    ("HEALTHCHECK_PORTS", "80,http", "port numbers"),
    ("MAESTRO_ALLOW_SYSTEM_PATHS", "maybe", "1, 0, true, false, yes or no"),
    ("MAESTRO_LOCAL_SOURCE_ROOTS", "/srv/a, src", "absolute paths"),
    ("MAESTRO_PYTHON_INSTALL_MIRROR", "mirror.example/pbs", "file:/// URL"),
    ("MAESTRO_PYTHON_DOWNLOADS_JSON_URL", "downloads.json", "an absolute path"),
    ("MAESTRO_PYTHON_INSTALL_DIR", "pythons", "absolute path"),
    ("MAESTRO_PYTHON_INSTALL_TIMEOUT", "0", "seconds > 0"),
    # The controller's defaults: were checked only by the entrypoint, one at a time, in another form.
    ("MAESTRO_RESTART", "sometimes", "always, on-failure or never"),
    ("MAESTRO_BACKOFF_INITIAL", "1x", "duration like 10s"),
    ("MAESTRO_BACKOFF_FACTOR", "0.5", "from 1 to 100"),
    ("MAESTRO_BACKOFF_MAX", "soon", "duration like 10s"),
    ("MAESTRO_MAX_RESTARTS", "-2", "whole number >= 0"),
    ("MAESTRO_HEALTH_INTERVAL", "10 sec", "duration like 10s"),
    ("MAESTRO_HEALTH_TIMEOUT", "-1s", "duration like 10s"),
    ("MAESTRO_HEALTH_RETRIES", "0", "whole number >= 1"),
    ("MAESTRO_HEALTH_START_PERIOD", "later", "duration like 10s"),
    ("MAESTRO_LOG_MAX_BYTES", "10MB", ">= 1024"),
    ("MAESTRO_LOG_BACKUPS", "0", "whole number >= 1"),
    ("MAESTRO_ALERT_WEBHOOK", "ftp://hooks.example", "http:// or https://"),
    ("MAESTRO_METRICS_ADDR", "nonsense", "HOST:PORT"),
]


@pytest.mark.parametrize(("key", "value", "accepted"), BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_each_bad_value_is_named_with_its_accepted_form(key, value, accepted):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({key: value})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{key}={value!r} is not valid: expected ")
    assert accepted in problem
    assert "\n" not in problem


def test_all_bad_values_are_listed_together():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"MAESTRO_STARTSECS": "abc", "MAESTRO_PORT_RANGE": "9-1", "MAESTRO_STOPWAITSECS": "-1"})
    keys = sorted(p.split("=", 1)[0] for p in caught.value.problems)
    assert keys == ["MAESTRO_PORT_RANGE", "MAESTRO_STARTSECS", "MAESTRO_STOPWAITSECS"]


GOOD = {
    "MAESTRO_STARTSECS": "0", "MAESTRO_STARTRETRIES": "10", "MAESTRO_STOPWAITSECS": "3",
    "MAESTRO_PORT_RANGE": " 9000-9100 ", "MAESTRO_BUILD_TIMEOUT": "2.5", "MAESTRO_SANDBOX_MEMORY": "1G",
    "MAESTRO_SANDBOX_PIDS_MAX": "max", "MAESTRO_SANDBOX_CPU_QUOTA_US": "50000", "MAESTRO_SANDBOX_MODE": "OFF",
    "MAESTRO_FIREWALL_DISABLE": "yes", "ENTRYPOINT_LOG_LEVEL": "WARNING", "MAESTRO_PRESEEDED_MODE": "never",
    "PIP_INSTALL_OPTIONS": "--index-url 'https://mirror.example/simple'", "HEALTHCHECK_PORTS": "80, 81;82",
    "MAESTRO_STATE_DIR": "/srv/state", "MAESTRO_RUNTIME_DIR": "/srv/run", "MAESTRO_FETCH_BACKOFF": "0",
    "MAESTRO_PYTHON_INSTALL_MIRROR": "file:///srv/pbs/", "MAESTRO_PYTHON_DOWNLOADS_JSON_URL": "/srv/pbs.json",
}


def test_good_and_empty_values_are_accepted():
    settings = Settings.from_env(GOOD)
    assert (settings.startsecs, settings.startretries, settings.stopwaitsecs) == (0, 10, 3)
    assert settings.port_range == (9000, 9100) and settings.log_level == "warn"
    assert settings.preseeded_mode == "never"
    assert (settings.build.python_install_mirror, settings.build.python_install_dir) == (
        "file:///srv/pbs", "/usr/local/lib/maestro/python")
    # An empty value means the default, as it always did.
    empty = Settings.from_env({key: "" for key, _, _ in RULES})
    assert (empty.startsecs, empty.port_range, empty.log_level) == (1, (8000, 8999), "info")
    assert check_environ({key: " " for key, _, _ in RULES}) == []


def test_ops_settings_take_an_empty_value_as_the_default():
    # `-e MAESTRO_RESTART=` (a compose or Terraform template with the value unset) stopped the boot.
    from maestro_runtime.settings import OpsSettings

    keys = [key for key, _, _ in RULES if key.startswith(("MAESTRO_RESTART", "MAESTRO_BACKOFF_", "MAESTRO_HEALTH_",
                                                          "MAESTRO_LOG_MAX", "MAESTRO_LOG_BACKUPS", "MAESTRO_MAX_R"))]
    assert len(keys) == 11
    assert OpsSettings.from_env({**{key: "" for key in keys}, "MAESTRO_STARTRETRIES": " "}) == OpsSettings.from_env({})


def test_readme_documents_every_setting_checked():
    readme = (REPO / "README.md").read_text()
    missing = [key for key, _, _ in RULES if f"`{key}`" not in readme and key not in readme]
    assert not missing, f"README's configuration reference lacks {missing}"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MAESTRO_", "SERVICES", "SVC_", "ENTRYPOINT_", "HEALTHCHECK_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


COMMANDS = {
    "maestro-entrypoint": "from maestro_runtime.entrypoint import main; main()",
    "list-services": "from maestro_runtime.cli import list_services; list_services()",
    "remove-service": "from maestro_runtime.cli import remove_service; remove_service(['x', '--yes'])",
    "deploy": "from maestro_runtime.cli import deploy; deploy(['--repo', '/nope', '--yes'])",
    "deploy-from-env": "from maestro_runtime.cli import deploy_from_env; deploy_from_env(['--prepare-only'])",
    "allow-host": "from maestro_runtime.cli import maestro; maestro(['allow-host', 'x', 'example.org'])",
    "maestro-sandbox": "from maestro_runtime.sandbox.cli import main; main(['--', 'true'])",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_exits_2_before_anything_starts(command, tmp_path):
    state = tmp_path / "state"
    env = _clean_env(MAESTRO_STARTSECS="abc", MAESTRO_PORT_RANGE="9-1", MAESTRO_STOPWAITSECS="-1",
                     MAESTRO_BUILD_TIMEOUT="abc", MAESTRO_STATE_DIR=str(state),
                     MAESTRO_RUNTIME_DIR=str(tmp_path / "run"), SUPERVISOR_CONF_DIR=str(tmp_path / "conf"))
    proc = subprocess.run([sys.executable, "-c", COMMANDS[command]], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    for key, accepted in (("MAESTRO_STARTSECS", "whole number >= 0"), ("MAESTRO_PORT_RANGE", "LOW-HIGH"),
                          ("MAESTRO_STOPWAITSECS", "whole number >= 0"), ("MAESTRO_BUILD_TIMEOUT", "seconds > 0")):
        line = next((ln for ln in proc.stderr.splitlines() if key in ln), "")
        assert accepted in line, out
    assert not state.exists() and not (tmp_path / "run").exists()  # nothing started, nothing written
