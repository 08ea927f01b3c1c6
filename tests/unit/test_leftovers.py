"""ops/leftovers.py: the guard that keeps root's (degraded mode's) processes out of reach."""

import pytest

from maestro_runtime.ops import leftovers


@pytest.mark.parametrize("uid", [0, -1])
def test_never_ends_every_process_of_root(uid):
    with pytest.raises(ValueError):
        leftovers.end_all(uid, 0)


def test_an_unused_uid_has_nothing_to_end():
    assert leftovers.end_all(2_000_000_000, 2_000_000_000, wait=0) == []


def test_sole_account_is_made_by_the_runtime_and_used_by_no_other_service():
    from types import SimpleNamespace

    from maestro_runtime.ops.leftovers import sole_account

    made = SimpleNamespace(created=lambda user: user != "operator")
    rec = lambda i, user: SimpleNamespace(id=i, user=user)  # noqa: E731
    assert sole_account(made, [rec("web", "svc_web")], "svc_web", "web")
    assert sole_account(made, [], "svc_web", "web")  # its record already removed (remove-service)
    assert not sole_account(made, [rec("web", "shared"), rec("api", "shared")], "shared", "web")
    assert not sole_account(made, [rec("web", "operator")], "operator", "web")  # allow-listed, not made
