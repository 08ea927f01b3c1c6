"""ops/leftovers.py: the guard that keeps root's (degraded mode's) processes out of reach."""

import pytest

from maestro_runtime.ops import leftovers


@pytest.mark.parametrize("uid", [0, -1])
def test_never_ends_every_process_of_root(uid):
    with pytest.raises(ValueError):
        leftovers.end_all(uid, 0)


def test_an_unused_uid_has_nothing_to_end():
    assert leftovers.end_all(2_000_000_000, 2_000_000_000, wait=0) == []
