"""accounts.seal: a deleted account's kept folder becomes root's, never through a link."""

import os

import pytest

from maestro_runtime.ops import accounts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def test_a_kept_folder_becomes_roots_0700(tmp_path):
    kept = tmp_path / "svc_gone"
    kept.mkdir(mode=0o750)
    os.chown(kept, 29999, 29999)
    (kept / "data").write_text("x")
    accounts.seal(kept)
    st = kept.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o700)
    assert (kept / "data").read_text() == "x"  # what is inside stays as it is


def test_a_link_in_its_place_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    os.chown(target, 29999, 29999)
    (tmp_path / "svc_gone").symlink_to(target)
    with pytest.raises(accounts.AccountError):
        accounts.seal(tmp_path / "svc_gone")
    st = target.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (29999, 0o755)


def test_a_folder_already_gone_is_nothing_to_do(tmp_path):
    accounts.seal(tmp_path / "never-there")
