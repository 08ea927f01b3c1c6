"""Root reads a branch workspace's status with git as the entry's user: the commands the
service's own git config names must not run outside its sandbox (real git, useradd, bubblewrap)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from maestro_runtime.settings import Settings
from maestro_runtime.tasks import workspace as ws

from .workspace_fixtures import checkout, plant_clean_filter

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")]

EVIL = """#!/bin/sh
# Runs as the entry's user whenever git cleans a file or lazily fetches an object.
echo "$(id -u) $1" >> {out}/ran
( sleep 30 & echo $! > {out}/left ) </dev/null >/dev/null 2>&1
cat
"""


def _hostile_checkout(tmp_path: Path, user) -> tuple[Path, Path]:
    folder = checkout(tmp_path)
    out = tmp_path / "out"  # a folder the user may write, outside its sandbox
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    # What the service writes in its own checkout while it runs: a clean filter on every file.
    plant_clean_filter(folder, EVIL.format(out=out), "*", user.pw_uid, user.pw_gid)
    return folder, out


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"MAESTRO_RUNTIME_DIR": str(tmp_path / "run"),
                              "MAESTRO_STATE_DIR": str(tmp_path / "state"),
                              "MAESTRO_FIREWALL_DISABLE": "1", "MAESTRO_SANDBOX_MODE": "require"})


def _gone(out: Path) -> None:
    left = out / "left"
    if left.exists():  # the jail failed: do not leave the sleeper behind
        subprocess.run(["kill", left.read_text().strip()], check=False)


def test_a_clean_filter_in_the_workspace_config_never_runs_outside_the_sandbox(place, user):
    checkout, out = _hostile_checkout(place, user)
    jail = ws.sandbox_jail(_settings(place))
    try:
        status = ws.status(user.pw_uid, user.pw_gid, str(place / "home"), str(checkout), None, jail=jail)
        time.sleep(0.2)
        # The filter may run (it is the service's own code) but only in the jail: the host's
        # folder never sees it, and nothing it started outlives the status read.
        assert not (out / "ran").exists(), (out / "ran").read_text()
        assert status is not None and (status.branch, status.changed) == ("main", 0)
    finally:
        _gone(out)


def test_a_promisor_remote_is_never_fetched_from_while_reading_status(place, user):
    checkout, out = _hostile_checkout(place, user)
    git_dir = checkout / ".git"
    config = (git_dir / "config").read_text().replace("repositoryformatversion = 0", "repositoryformatversion = 1")
    config += (f"[extensions]\n\tpartialClone = lazy\n[remote \"lazy\"]\n\turl = {place / 'src' / 'project.git'}\n"
               f"\tpromisor = true\n\tuploadpack = {git_dir / 'filter.sh'} upload\n[protocol]\n\tallow = always\n")
    (git_dir / "config").write_text(config)
    (git_dir / "refs" / "heads" / "main").write_text("1" * 40 + "\n")  # a commit it does not have
    try:
        # Unjailed on purpose: the transport must be refused whatever the sandbox mode.
        assert ws.commits_since(user.pw_uid, user.pw_gid, "/nonexistent", str(checkout), "HEAD~1") is None
        assert not (out / "ran").exists(), (out / "ran").read_text()
    finally:
        _gone(out)


def test_in_degraded_mode_the_filter_never_gets_the_runtimes_capabilities(place):
    """Degraded identity: the entry runs as root without any capability. Reading its checkout,
    root must not lend it the runtime's own (NET_ADMIN would flush the egress firewall)."""
    folder = checkout(place)
    out = place / "caps"
    plant_clean_filter(folder, f"#!/bin/sh\ngrep CapEff /proc/self/status >> {out}\ncat\n", "*", 0, 0)
    assert ws.status(0, 0, "/root", str(folder), None) is not None  # no jail: only the drop is tested
    effective = {int(line.split()[1], 16) for line in out.read_text().splitlines()}
    assert effective == {0}, out.read_text()
