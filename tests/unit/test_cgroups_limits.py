"""Limit parsing, mechanism choice and cgroup files (on a fake tree)."""

from pathlib import Path

import pytest

from maestro_runtime.sandbox import cgroups
from maestro_runtime.sandbox.cgroups import Layout, Limits


@pytest.mark.parametrize(("text", "value"), [("512M", 512 << 20), ("1G", 1 << 30), ("256m", 256 << 20),
                                             ("1024", 1024), ("2GiB", 2 << 30), ("max", None)])
def test_parse_size(text, value):
    assert cgroups.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "12X", "-1M", "0", "1.5G", "M"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        cgroups.parse_size(text)


def test_resolve_overrides():
    base = Limits()
    got = cgroups.resolve_limits(base, {"memory": "256M", "pids_max": 10, "cpu_quota_us": 20000})
    assert got == Limits(memory=256 << 20, cpu_quota_us=20000, cpu_period_us=100_000, pids_max=10)
    assert cgroups.resolve_limits(base, {"memory": "max"}).memory is None
    with pytest.raises(ValueError):
        cgroups.resolve_limits(base, {"pids_max": True})


def test_choose_prefers_v2_then_v1_then_rlimit():
    limits = Limits(memory=1, cpu_quota_us=1, pids_max=1)
    v2 = Layout(v2=Path("/x"), v2_controllers=frozenset({"memory", "pids", "cpu"}))
    assert cgroups.choose(v2, limits) == {"memory": "cgroup-v2", "cpu": "cgroup-v2", "pids": "cgroup-v2"}
    v1 = Layout(v1={"memory": Path("/m"), "cpu": Path("/c")})
    assert cgroups.choose(v1, limits) == {"memory": "cgroup-v1", "cpu": "cgroup-v1", "pids": "rlimit-nproc"}
    none = cgroups.choose(Layout(), limits)
    assert none == {"memory": "rlimit-data", "cpu": None, "pids": "rlimit-nproc"}
    assert cgroups.prlimit_argv(limits, none) == ("/usr/bin/prlimit", "--data=2", "--nproc=1", "--")
    # A build step or maestro-sandbox command: no memory rlimit (it failed ordinary Node builds).
    assert cgroups.choose(Layout(), limits, one_shot=True)["memory"] is None
    assert cgroups.prlimit_argv(limits, cgroups.choose(Layout(), limits, one_shot=True)) == \
        ("/usr/bin/prlimit", "--nproc=1", "--")
    assert cgroups.prlimit_argv(limits, cgroups.choose(v2, limits)) == ()
    assert cgroups.choose(Layout(), Limits(memory=None, pids_max=None))["memory"] == "unlimited"


def test_limit_files():
    limits = Limits(memory=100, cpu_quota_us=5, cpu_period_us=10, pids_max=7)
    assert cgroups.limit_files("memory", 2, limits, has_swap=True) == [("memory.max", "100"),
                                                                       ("memory.swap.max", "0")]
    assert cgroups.limit_files("cpu", 2, limits) == [("cpu.max", "5 10")]
    assert cgroups.limit_files("memory", 1, limits, has_swap=True)[-1] == ("memory.memsw.limit_in_bytes", "100")
    assert cgroups.limit_files("cpu", 1, limits) == [("cpu.cfs_period_us", "10"), ("cpu.cfs_quota_us", "5")]


def test_prepare_on_fake_tree(tmp_path):
    mem, pids = tmp_path / "memory" / "maestro", tmp_path / "pids" / "maestro"
    mem.mkdir(parents=True)
    pids.mkdir(parents=True)
    layout = Layout(v1={"memory": mem, "pids": pids})
    got = cgroups.prepare(layout, "web", Limits(memory=256 << 20, cpu_quota_us=1000, pids_max=9))
    assert (mem / "web" / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (pids / "web" / "pids.max").read_text() == "9"
    assert got.procs == (str(mem / "web" / "cgroup.procs"), str(pids / "web" / "cgroup.procs"))
    assert got.enforced == {"memory": "cgroup-v1", "cpu": None, "pids": "cgroup-v1"}
    cgroups.remove(layout, "web")  # fake tree: the files keep the folders; nothing raises


def test_detect_reads_mounts(tmp_path):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    mem = tmp_path / "cg" / "memory"
    mem.mkdir(parents=True)
    (proc / "self" / "mounts").write_text(f"cgroup {mem} cgroup rw,memory 0 0\n")
    (proc / "self" / "cgroup").write_text("4:memory:/\n")
    layout = cgroups.detect(proc=proc)
    # A plain folder has no cgroup.procs: not counted as writable, and said so.
    assert layout.v1 == {} and any("not writable" in n for n in layout.notes)


def _fake_proc(tmp_path, mounts: str, cgroup: str):
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "mounts").write_text(mounts)
    (proc / "cgroup").write_text(cgroup)
    return tmp_path / "proc"


def test_the_containers_memory_limit_is_read_from_its_own_cgroup(tmp_path):
    from maestro_runtime.sandbox.cgroups import memory_limit

    v2 = tmp_path / "v2"
    (v2 / "ctr").mkdir(parents=True)
    (v2 / "ctr" / "memory.max").write_text("1073741824\n")
    (v2 / "memory.max").write_text("max\n")
    proc = _fake_proc(tmp_path / "a", f"cgroup2 {v2} cgroup2 rw 0 0\n", "0::/ctr\n")
    assert memory_limit(proc=proc) == 1 << 30
    (v2 / "ctr" / "memory.max").write_text("max\n")
    assert memory_limit(proc=proc) is None
    # v1 without a cgroup namespace: the own path does not exist here, the mount's root is ours
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text("536870912\n")
    proc = _fake_proc(tmp_path / "b", f"cgroup {v1} cgroup rw,nosuid,memory 0 0\n", "5:memory:/docker/abc\n")
    assert memory_limit(proc=proc) == 512 << 20
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert memory_limit(proc=proc) is None
    assert memory_limit(proc=tmp_path / "nowhere") is None


def test_a_limit_above_our_own_folder_counts(tmp_path):
    """cgroups.detect moves us into ``init`` below the container's folder: its limit still holds,
    the smallest on the way up wins, and odd files (garbage, huge, missing) are no limit."""
    from maestro_runtime.sandbox.cgroups import memory_limit

    v2 = tmp_path / "v2"
    (v2 / "init").mkdir(parents=True)
    (v2 / "init" / "memory.max").write_text("max\n")
    (v2 / "memory.max").write_text("1073741824\n")
    proc = _fake_proc(tmp_path / "a", f"cgroup2 {v2} cgroup2 rw 0 0\n", "0::/init\n")
    assert memory_limit(proc=proc) == 1 << 30
    (v2 / "init" / "memory.max").write_text("536870912\n")
    assert memory_limit(proc=proc) == 512 << 20
    (v2 / "init" / "memory.max").write_text("lots\n")
    (v2 / "memory.max").write_text(f"{1 << 70}\n")
    assert memory_limit(proc=proc) is None
    (v2 / "memory.max").unlink()
    assert memory_limit(proc=proc) is None


def test_builds_at_once_follow_the_cores_and_the_memory_limit():
    from maestro_runtime.settings.parts import default_build_jobs

    # (builds, Node builds): one per core; Node's at most one per GiB of --memory
    assert default_build_jobs(2, None) == (2, 2)
    assert default_build_jobs(8, 1 << 30) == (8, 1)  # the README's hardened run: one Node build at a time
    assert default_build_jobs(8, 3 << 30) == (8, 3) and default_build_jobs(2, 16 << 30) == (2, 2)
    assert default_build_jobs(4, 256 << 20) == (4, 1)
