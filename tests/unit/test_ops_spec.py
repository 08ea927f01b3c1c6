"""Spec fields of issue 13: health mappings, restart policy; their export round trip."""

from __future__ import annotations

import pytest
import yaml

from maestro_runtime.control.policy import resolve
from maestro_runtime.settings import OpsSettings
from maestro_runtime.spec.durations import parse_duration
from maestro_runtime.spec.fields import health_yaml, policy_yaml
from maestro_runtime.spec.model import SpecError
from maestro_runtime.spec.parsers import parse_yaml_entry
from maestro_runtime.state.records import ServiceRecord


def entry(**fields):
    return parse_yaml_entry("f.yml#1", {"repo": "/srv/x", **fields})


def test_string_forms_stay():
    assert entry(health="tcp").health.kind == "tcp"
    assert entry(health="/healthz").health.path == "/healthz"


def test_mapping_forms():
    h = entry(health={"http": "/ready", "expect": 204, "interval": "2s", "timeout": "500ms", "retries": 2,
                      "start_period": "1m"}).health
    assert (h.kind, h.path, h.expect, h.interval, h.timeout, h.retries, h.start_period) == (
        "http", "/ready", 204, 2.0, 0.5, 2, 60.0)
    assert entry(health={"exec": "pg_isready -q"}).health.command == "pg_isready -q"
    assert entry(health={"tcp": True}).health.kind == "tcp"


@pytest.mark.parametrize("health, field", [
    ({"http": "/a", "tcp": True}, "health"),
    ({"http": "no-slash"}, "health.http"),
    ({"tcp": "yes"}, "health.tcp"),
    ({"exec": ""}, "health.exec"),
    ({"exec": "x\ny"}, "health.exec"),
    ({"tcp": True, "expect": 200}, "health.expect"),
    ({"http": "/", "interval": "soon"}, "health.interval"),
    ({"http": "/", "retries": 0}, "health.retries"),
    ({"http": "/", "bogus": 1}, "health.bogus"),
    ("sometimes", "health"),
])
def test_bad_health_names_origin_and_field(health, field):
    with pytest.raises(SpecError) as info:
        entry(health=health)
    assert info.value.field == field and str(info.value).startswith(f"f.yml#1: {field}: ")


@pytest.mark.parametrize("fields, field", [
    ({"restart": "sometimes"}, "restart"),
    ({"max_restarts": -1}, "max_restarts"),
    ({"max_restarts": True}, "max_restarts"),
    ({"essential": "yes"}, "essential"),
    ({"restart_on_unhealthy": 1}, "restart_on_unhealthy"),
    ({"backoff": {"initial": "1s", "jitter": 2}}, "backoff"),
    ({"backoff": {"factor": 0.5}}, "backoff.factor"),
    ({"backoff": {"max": "forever"}}, "backoff.max"),
])
def test_bad_policy_names_field(fields, field):
    with pytest.raises(SpecError) as info:
        entry(**fields)
    assert info.value.field == field


def test_policy_and_health_round_trip_through_export_forms():
    spec = entry(restart="on-failure", backoff={"initial": "2s", "factor": 3, "max": "1m"}, max_restarts=0,
                 restart_on_unhealthy=True, essential=True,
                 health={"http": "/h", "expect": 200, "retries": 5})
    again = entry(health=yaml.safe_load(yaml.safe_dump(health_yaml(spec.health))),
                  **yaml.safe_load(yaml.safe_dump(policy_yaml(spec.policy))))
    assert again.health == spec.health and again.policy == spec.policy
    plain = entry()
    assert policy_yaml(plain.policy) == {} and health_yaml(plain.health) == "/"


def test_env_defaults_fill_what_the_spec_leaves_out():
    ops = OpsSettings.from_env({"MAESTRO_BACKOFF_INITIAL": "3s", "MAESTRO_MAX_RESTARTS": "7",
                                "MAESTRO_HEALTH_INTERVAL": "4s", "MAESTRO_EXIT_ON_FATAL": "db,api"})
    spec = entry(backoff={"factor": 5}, health={"tcp": True, "retries": 9})
    record = ServiceRecord(id="api", name="api", kind="file", origin="o", source="s", directory="/d", user="u",
                           port=8000, health=spec.health.as_record(), policy=spec.policy.as_record())
    policy = resolve(record, ops)
    assert (policy.backoff.initial, policy.backoff.factor, policy.max_restarts) == (3.0, 5.0, 7)
    assert policy.probe.interval == 4.0 and policy.probe.retries == 9 and policy.essential
    assert OpsSettings.from_env({}).max_restarts == 3  # MAESTRO_STARTRETRIES' default


@pytest.mark.parametrize("env", [
    {"MAESTRO_RESTART": "sometimes"}, {"MAESTRO_BACKOFF_MAX": "forever"}, {"MAESTRO_BACKOFF_FACTOR": "0"},
    {"MAESTRO_MAX_RESTARTS": "-1"}, {"MAESTRO_LOG_MAX_BYTES": "10"}, {"MAESTRO_METRICS_ADDR": "nowhere"},
    {"MAESTRO_ALERT_WEBHOOK": "ftp://x"},
])
def test_bad_env_is_one_line(env):
    with pytest.raises(ValueError) as info:
        OpsSettings.from_env(env)
    assert next(iter(env)) in str(info.value) and "\n" not in str(info.value)


def test_durations():
    assert [parse_duration(x) for x in ("1s", "500ms", "5m", "1h", "2", 3)] == [1, 0.5, 300, 3600, 2, 3]
    for bad in ("-1s", "1d", "", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
