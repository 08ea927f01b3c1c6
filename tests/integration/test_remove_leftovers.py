"""remove-service and what a hostile service left running.

Unsandboxed (the README's `docker run` flags: no CAP_SYS_ADMIN, so bubblewrap cannot work), a
service's process can leave supervisord's process group (``setsid``) and outlive the stop. With
accounts in MAESTRO_USERADD_PREFIX (the image's default) ``userdel --prefix`` does not look for
running processes, and the next account made gets the freed uid: the leftover would then run as
the next service. Real supervisord, real useradd --prefix, a real escaped process.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd)")]

# The service forks a process into its own session, out of supervisord's reach, then serves.
ESCAPE = "setsid sleep 977 </dev/null >/dev/null 2>&1 & exec python3 -m http.server $PORT"


def _prefix(maestro) -> Path:
    """The prefix's account files, holding one placeholder account at a random id: the accounts
    the test makes then get ids other test runs on this machine (other /etc copies, one kernel)
    are unlikely to use, since removing a service ends every process of its uid."""
    prefix = maestro.root / "nss"
    (prefix / "etc").mkdir(parents=True)
    uid = random.randrange(21000, 29000)
    for name, line in (("passwd", f"mtplace:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin"),
                       ("group", f"mtplace:x:{uid}:"), ("shadow", "mtplace:!:19000::::::"), ("gshadow", "mtplace:!::")):
        (prefix / "etc" / name).write_text(line + "\n")
    return prefix


def _uids(prefix: Path) -> dict[str, int]:
    lines = (prefix / "etc" / "passwd").read_text().splitlines()
    return {f[0]: int(f[2]) for f in (line.split(":") for line in lines) if len(f) > 2}


def _as(uid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        uids = proc.info["uids"]
        if uids and uid in uids and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_remove_service_ends_what_escaped_and_the_uid_goes_to_no_leftover(maestro):
    prefix = _prefix(maestro)
    maestro.preseed("bystander")
    maestro.boot(MAESTRO_USERADD_PREFIX=str(prefix))
    source = maestro.source("escaper")
    maestro.run("deploy", "--repo", str(source), "--name", "escaper", "--cmd", ESCAPE, "--yes")
    before = maestro.wait_running(["escaper", "bystander"])["bystander"]["pid"]
    uid = _uids(prefix)["svc_escaper"]
    assert uid < _uids(prefix)["mtplace"] < 29000  # below the placeholder, away from other runs' ids
    wait_for(lambda: any("977" in " ".join(p.cmdline()) for p in _as(uid)), 10, what="the escaped process")

    maestro.run("remove-service", "escaper", "--purge", "--delete-user", "--yes")
    wait_for(lambda: not _as(uid), 10, what=f"no process left running as uid {uid} (the removed service's)")
    assert maestro.services()["bystander"]["pid"] == before  # only the removed service's uid was hit

    # The freed uid goes to the next account: nothing of the removed service runs as it.
    victim = maestro.source("heir")
    maestro.run("deploy", "--repo", str(victim), "--name", "heir", "--yes")
    maestro.wait_running(["heir"])
    mine = {p.pid for p in _as(_uids(prefix)["svc_heir"])}
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.pid in mine and "977" in " ".join(p.cmdline())]


# The removed service's data, which the operator kept (no --purge).
KEEP = ("mkdir -p data && echo s3cret > data/secret.txt && chmod 600 data/secret.txt "
        "&& exec python3 -m http.server $PORT")


def test_kept_files_of_a_deleted_user_are_not_the_next_account_s(maestro):
    prefix = _prefix(maestro)
    maestro.boot(MAESTRO_USERADD_PREFIX=str(prefix))
    old = maestro.source("departed")
    maestro.run("deploy", "--repo", str(old), "--name", "departed", "--cmd", KEEP, "--yes")
    directory = maestro.wait_running(["departed"])["departed"]["directory"]
    wait_for(lambda: (Path(directory) / "data" / "secret.txt").exists(), 10, what="old's data")
    uid = _uids(prefix)["svc_departed"]
    maestro.run("remove-service", "departed", "--delete-user", "--yes")  # files kept
    assert (Path(directory) / "data" / "secret.txt").read_text() == "s3cret\n"

    new = maestro.source("successor")
    peek = f"cat {directory}/data/secret.txt > seen.txt 2>&1; exec python3 -m http.server $PORT"
    maestro.run("deploy", "--repo", str(new), "--name", "successor", "--cmd", peek, "--yes")
    mine = maestro.wait_running(["successor"])["successor"]["directory"]
    assert _uids(prefix)["svc_successor"] == uid  # the freed uid is the next account's...
    seen = wait_for(lambda: (Path(mine) / "seen.txt").read_text(), 10, what="new's try")
    assert "s3cret" not in seen, "a new service read the kept files of a removed one (its uid was reused)"
