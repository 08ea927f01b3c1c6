"""The one size grammar: YAML limits, MAESTRO_SANDBOX_MEMORY and export agree."""

import pytest

from maestro_runtime.settings import Settings
from maestro_runtime.spec import SpecError
from maestro_runtime.spec.fields import parse_limits
from maestro_runtime.spec.sizes import format_size, parse_size


@pytest.mark.parametrize("raw, size", [("512M", 512 << 20), ("1G", 1 << 30), ("1GiB", 1 << 30), ("1gb", 1 << 30),
                                       ("2T", 2 << 40), ("4096", 4096), ("max", None)])
def test_sizes_users_write(raw, size):
    assert parse_size(raw) == size


@pytest.mark.parametrize("raw", ["", "1.5G", "-1M", "0", "lots", "1X"])
def test_bad_sizes_are_refused(raw):
    with pytest.raises(ValueError):
        parse_size(raw)


@pytest.mark.parametrize("raw", ["512M", "1GiB", "2T", "max", "1048576"])
def test_yaml_and_environment_accept_the_same_sizes(raw):
    spec_limits = parse_limits("test", {"memory": raw})
    assert parse_size(spec_limits.memory) == parse_size(raw)  # canonical, same value
    sandbox = Settings.from_env({"MAESTRO_SANDBOX_MEMORY": raw}).sandbox
    assert sandbox.limits.memory == parse_size(raw) and not sandbox.problems


def test_canonical_form_in_the_record():
    assert parse_limits("t", {"memory": "1GiB"}).overrides() == {"memory": "1G"}
    assert format_size(parse_size("1536M")) == "1536M"
    with pytest.raises(SpecError, match="512M, 1G, 1GiB or max"):
        parse_limits("t", {"memory": "1.5G"})
