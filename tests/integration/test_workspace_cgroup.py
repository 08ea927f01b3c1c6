"""git reading a branch workspace runs what the checkout's config names (a clean filter during
``git status``): that must count against the service's own cgroup limits, not run beside root
in the caller's cgroup (the operator's CLI, the controller). Real boot: real supervisord, real
git, real users, real cgroups (skipped where no memory controller is writable).

The service (memory: 64M) plants a clean filter on its own files and changes their stat, so
git status must look inside them. On index.html the filter hands back other content (so
``changed`` counts 1: the filter ran); on VERSION it writes down its cgroups and tries to
allocate 128 MiB: in the service's cgroup the kernel kills it (git then hashes the file as it
is: unchanged); outside, the allocation succeeds and the filter says so through the content it
hands back (``changed`` 2). That channel works inside the read-only jail too."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures.gitrepos import git, make_repo

from maestro_runtime.sandbox import cgroups

from .conftest import wait_for
from .workspace_fixtures import checkout, plant_clean_filter, reachable_place, system_user

pytestmark = pytest.mark.integration

PLANT = r"""#!/bin/sh
# As the agent: a clean filter on its files, in its own checkout's config.
set -eu
cat > .git/probe.sh <<'END'
#!/bin/sh
content=$(cat)
if [ "$1" != VERSION ]; then echo "the filter ran"; exit 0; fi
cat /proc/self/cgroup > .git/probe-cgroup 2>/dev/null || true
if python3 -c 'b = b"x" * (128 << 20)' 2>/dev/null; then
  echo allocated > .git/probe-allocated 2>/dev/null || true
  echo escaped
else
  printf '%s\n' "$content"
fi
END
chmod +x .git/probe.sh
git config filter.probe.clean "$PWD/.git/probe.sh %f"
mkdir -p .git/info
printf 'VERSION filter=probe\nindex.html filter=probe\n' > .git/info/attributes
touch -d @1000000000 VERSION index.html
touch .git/planted
exec sleep 600
"""


def _memory_cgroup_writable() -> bool:
    return cgroups.detect().mechanism("memory") in ("cgroup-v1", "cgroup-v2")


needs_memory_cgroup = pytest.mark.skipif(not _memory_cgroup_writable(), reason="no writable memory cgroup controller")


def _repo(root: Path):
    repo = make_repo(root / "git")
    work = root / "git" / "work"
    git("checkout", "--quiet", "-b", "agent", "main", cwd=work)
    (work / "plant.sh").write_text(PLANT)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "plant", cwd=work)
    git("push", "--quiet", str(repo.bare), "agent", cwd=work)
    return repo


def _boot(maestro, **env: str) -> tuple[dict, Path]:
    repo = _repo(maestro.root)
    services = maestro.root / "services.yaml"
    services.write_text(f"""
- {{name: agent, repo: {repo.bare}, ref: agent, workspace: true, memory: 64M, cmd: "sh plant.sh", port: 0}}
""")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services), **env)
    entry = wait_for(lambda: (s := maestro.services().get("agent")) and s.get("pid") and s, 60,
                     what="agent running")
    checkout = Path(entry["directory"])
    wait_for(lambda: (checkout / ".git" / "planted").exists(), 30, what="the filter planted")
    return entry, checkout


def _git_info(maestro) -> dict:
    return {s["name"]: s for s in json.loads(maestro.run("list-services", "--json").stdout)}["agent"]["git"]


@needs_memory_cgroup
def test_a_filter_run_by_list_services_counts_against_the_services_cgroup(maestro):
    entry, checkout = _boot(maestro)
    info = _git_info(maestro)
    seen = checkout / ".git" / "probe-cgroup"
    assert seen.exists(), f"git status never ran the filter on VERSION (the test proves nothing): {info}"
    own = Path(f"/proc/{entry['pid']}/cgroup").read_text()
    assert seen.read_text() == own, f"the filter ran in\n{seen.read_text()}\nthe service runs in\n{own}"
    assert not (checkout / ".git" / "probe-allocated").exists(), "128 MiB allocated past the service's 64M"
    assert info["changed"] == 1, info


@needs_memory_cgroup
@pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap")
def test_in_the_sandbox_a_filter_still_counts_against_the_services_memory(maestro):
    """Sandboxed, git reads in a bubblewrap jail with the checkout read-only (the filter cannot
    write): whether it escaped the limit shows in the content it hands back."""
    _boot(maestro, MAESTRO_SANDBOX_MODE="require")
    info = _git_info(maestro)
    assert info is not None and "error" not in info, info
    assert info["changed"] == 1, f"the filter allocated 128 MiB past the service's 64M (2), or never ran (0): {info}"
    # remove-service --purge asks first, naming the checkout's unsaved work: read the same way.
    asked = maestro.run("remove-service", "agent", "--purge", input="n\n", check=False)
    assert "1 changed file(s) not committed" in asked.stdout + asked.stderr, asked


FILTER = """#!/bin/sh
content=$(cat)
cat /proc/self/cgroup > {out}/cgroup
if python3 -c 'b = b"x" * (128 << 20)'; then echo allocated > {out}/allocated; fi
printf '%s\\n' "$content"
"""


@pytest.fixture
def planted():
    """A workspace (as the runtime makes it) whose user planted a filter; its user; the filter's out folder."""
    with reachable_place("mtcg") as place, system_user(place, "mtcg") as user:
        folder = checkout(place)
        out = place / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        plant_clean_filter(folder, FILTER.format(out=out), "VERSION", user.pw_uid, user.pw_gid)
        yield folder, user, out


def _groups_of(cgroup_text: str) -> set[str]:
    return {line.split(":", 2)[2] for line in cgroup_text.splitlines() if line.split(":", 2)[2] != "/"}


@needs_memory_cgroup
def test_where_the_services_groups_are_gone_a_read_gets_a_group_of_its_own_with_its_limits(planted):
    """A service whose groups are not there (removed with it, or never made): its checkout is
    read in a group made for that read, with the service's limits, and removed after it."""
    from maestro_runtime.settings import Settings
    from maestro_runtime.state.records import RecordStore, ServiceRecord
    from maestro_runtime.tasks import workspace as ws

    checkout, user, out = planted
    state = checkout.parent.parent / "state"
    settings = Settings.from_env({"MAESTRO_RUNTIME_DIR": str(state.parent / "run"), "MAESTRO_STATE_DIR": str(state),
                                  "MAESTRO_FIREWALL_DISABLE": "1", "MAESTRO_SANDBOX_MODE": "off"})
    record = ServiceRecord(id=f"gone-{user.pw_name}", name="agent", kind="file", origin="test", source="test",
                           directory=str(checkout), user=user.pw_name, port=0, uid=user.pw_uid, gid=user.pw_gid,
                           limits={"memory": "64M"})
    RecordStore(settings.records_dir).save(record)
    layout = cgroups.detect()
    assert not any(folder.exists() for folder in cgroups.service_dirs(layout, record.id))

    status = ws.status(user.pw_uid, user.pw_gid, "/nonexistent", str(checkout), None, jail=ws.sandbox_jail(settings))
    assert status is not None and status.changed == 0, status
    groups = _groups_of((out / "cgroup").read_text())
    assert groups and all(g.startswith("/maestro/git-") for g in groups), groups
    assert not (out / "allocated").exists(), "128 MiB allocated past the service's 64M"
    read_group = {g.rsplit("/", 1)[1] for g in groups}
    assert not any(folder.exists() for name in read_group for folder in cgroups.service_dirs(layout, name)), \
        "the read's group outlived it"
    assert not any(folder.exists() for folder in cgroups.service_dirs(layout, record.id)), "the service's group remade"


@needs_memory_cgroup
def test_a_checkout_no_service_owns_is_read_in_a_group_of_its_own(planted):
    from maestro_runtime.settings import Settings
    from maestro_runtime.tasks import workspace as ws

    checkout, user, out = planted
    state = checkout.parent.parent / "state"
    settings = Settings.from_env({"MAESTRO_RUNTIME_DIR": str(state.parent / "run"), "MAESTRO_STATE_DIR": str(state),
                                  "MAESTRO_FIREWALL_DISABLE": "1", "MAESTRO_SANDBOX_MODE": "off"})
    assert ws.git_as(user.pw_uid, user.pw_gid, "/nonexistent", str(checkout), ["status", "--porcelain"],
                     ws.sandbox_jail(settings)) is not None
    groups = _groups_of((out / "cgroup").read_text())
    assert groups and all(g.startswith("/maestro/git-") for g in groups), groups
