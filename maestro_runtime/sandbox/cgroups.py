"""Resource limits: cgroup v2 where writable, else cgroup v1 controllers, else rlimits.

Pure: limit resolution, the choice of mechanism per limit (:func:`choose`) and a
program's folders and values (:func:`plan_groups`). Imperative shell: :func:`detect`
looks at what this machine really lets us write, :func:`apply` creates the folders
and writes the values.
Nothing is assumed: a limit is reported as enforced only by the mechanism
that was actually written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.spec.sizes import format_size, parse_size

log = logging.getLogger("maestro.cgroups")

KINDS = ("memory", "cpu", "pids")
GROUP = "maestro"  # our subtree under each hierarchy
DEFAULT_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory: int | None = 512 << 20  # bytes; None: unlimited
    cpu_quota_us: int | None = None  # None: unlimited
    cpu_period_us: int = DEFAULT_PERIOD_US
    pids_max: int | None = 128

    def wanted(self) -> dict[str, bool]:
        return {"memory": self.memory is not None, "cpu": self.cpu_quota_us is not None,
                "pids": self.pids_max is not None}

    def describe(self) -> dict[str, str]:
        cpu = "max" if self.cpu_quota_us is None else f"{self.cpu_quota_us}/{self.cpu_period_us}us"
        return {"memory": format_size(self.memory), "cpu": cpu,
                "pids": "max" if self.pids_max is None else str(self.pids_max)}


def resolve_limits(defaults: Limits, overrides: Mapping[str, object]) -> Limits:
    """A service's limits: its YAML overrides (record.limits) on top of the global defaults."""
    memory = defaults.memory
    if overrides.get("memory") is not None:
        memory = parse_size(str(overrides["memory"]))
    def _int(key: str, fallback):
        value = overrides.get(key)
        if value is None:
            return fallback
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{key} must be a positive whole number, got {value!r}")
        return value
    return Limits(memory=memory, cpu_quota_us=_int("cpu_quota_us", defaults.cpu_quota_us),
                  cpu_period_us=_int("cpu_period_us", defaults.cpu_period_us),
                  pids_max=_int("pids_max", defaults.pids_max))


@dataclass(frozen=True)
class Layout:
    """What this machine lets us write. ``v2`` is the folder our groups go under."""

    v2: Path | None = None
    v2_controllers: frozenset[str] = frozenset()
    v1: Mapping[str, Path] = field(default_factory=dict)  # controller -> our folder in its hierarchy
    notes: tuple[str, ...] = ()

    def mechanism(self, kind: str) -> str | None:
        if kind in self.v2_controllers:
            return "cgroup-v2"
        if kind in self.v1:
            return "cgroup-v1"
        return None


# rlimits are per process (RLIMIT_DATA) or per UID (RLIMIT_NPROC: each service has its own user),
# so they stand in for memory and pids; nothing stands in for a CPU rate (RLIMIT_RSS is a no-op
# on Linux). RLIMIT_DATA, not RLIMIT_AS: V8 and the JVM reserve far more address space than they
# use. Even RLIMIT_DATA counts writable memory reserved, not resident: a vite build peaking at
# 382 MB RSS aborted under --data=512M (V8 worker isolates). So the memory rlimit is only a
# services' guard against one runaway process, at DATA_FACTOR times the limit; one-shot commands
# (builds, maestro-sandbox) get none: a per-process cap does not bound a build of many processes
# anyway, and it failed ordinary builds. Only a cgroup bounds their memory.
RLIMIT_FALLBACK = {"memory": "rlimit-data", "pids": "rlimit-nproc"}
DATA_FACTOR = 2


def fallback(kind: str, one_shot: bool = False) -> str | None:
    """The rlimit standing in for ``kind`` where no cgroup controller can (None: nothing does)."""
    if one_shot and kind == "memory":
        return None
    return RLIMIT_FALLBACK.get(kind)


def choose(layout: Layout, limits: Limits, *, one_shot: bool = False) -> dict[str, str | None]:
    """Per limit: the mechanism that will enforce it, 'unlimited', or None (cannot be enforced).
    ``one_shot``: for a build step or a ``maestro-sandbox`` command rather than a service."""
    out: dict[str, str | None] = {}
    for kind, wanted in limits.wanted().items():
        if not wanted:
            out[kind] = "unlimited"
        else:
            out[kind] = layout.mechanism(kind) or fallback(kind, one_shot)
    return out


def data_limit(limits: Limits) -> int | None:
    """RLIMIT_DATA for a service whose memory limit falls back to it."""
    return None if limits.memory is None else limits.memory * DATA_FACTOR


def fallback_note(kind: str, limits: Limits, mechanism: str) -> str:
    """The boot report's line for a limit left to an rlimit."""
    value = limits.describe()[kind]
    if kind == "memory":
        return (f"memory limit {value} is enforced only for services, by {mechanism} at {DATA_FACTOR}x "
                f"({format_size(data_limit(limits))} of writable memory per process, reserved or not; "
                "resident memory is not capped), and not for builds (no writable cgroup controller)")
    return f"{kind} limit {value} is enforced only by {mechanism} (no writable cgroup controller)"


def prlimit_argv(limits: Limits, chosen: Mapping[str, str | None]) -> tuple[str, ...]:
    """util-linux ``prlimit`` options for the limits left to rlimits (empty when none)."""
    opts = []
    if chosen.get("memory") == "rlimit-data" and limits.memory is not None:
        opts.append(f"--data={data_limit(limits)}")
    if chosen.get("pids") == "rlimit-nproc" and limits.pids_max is not None:
        opts.append(f"--nproc={limits.pids_max}")
    return ("/usr/bin/prlimit", *opts, "--") if opts else ()


def limit_files(kind: str, version: int, limits: Limits, has_swap: bool = False) -> list[tuple[str, str]]:
    """(file, value) pairs to write, in order, for one controller."""
    if version == 2:
        if kind == "memory":
            pairs = [("memory.max", str(limits.memory))]
            return [*pairs, ("memory.swap.max", "0")] if has_swap else pairs
        if kind == "pids":
            return [("pids.max", str(limits.pids_max))]
        return [("cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")]
    if kind == "memory":
        pairs = [("memory.limit_in_bytes", str(limits.memory))]
        # memsw must be >= the memory limit, so it is written second: no swapping past the limit.
        return [*pairs, ("memory.memsw.limit_in_bytes", str(limits.memory))] if has_swap else pairs
    if kind == "pids":
        return [("pids.max", str(limits.pids_max))]
    return [("cpu.cfs_period_us", str(limits.cpu_period_us)), ("cpu.cfs_quota_us", str(limits.cpu_quota_us))]


# ---------------------------------------------------------------- imperative shell


def _mounts(text: str) -> list[tuple[str, str, list[str]]]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[1].replace("\\040", " "), parts[2], parts[3].split(",")))
    return out


def _own_path(cgroup_text: str, v2: bool, controller: str = "") -> str:
    for line in cgroup_text.splitlines():
        _, names, path = line.split(":", 2)
        if (v2 and names == "") or (not v2 and controller in names.split(",")):
            return path
    return "/"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _writable_dir(folder: Path) -> bool:
    """Probe by creating our subtree: the only honest test of 'writable' for cgroupfs."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(folder / "cgroup.procs", os.W_OK)


def _setup_v2(root: Path, own: str) -> tuple[Path | None, frozenset[str], str | None]:
    available = set((root / "cgroup.controllers").read_text().split()) & set(KINDS)
    if not available:
        return None, frozenset(), f"cgroup v2 at {root} offers none of {', '.join(KINDS)}"
    ours = root / GROUP
    if not _writable_dir(ours):
        return None, frozenset(), f"cgroup v2 at {root} is not writable"
    enable = " ".join(f"+{c}" for c in sorted(available))
    try:
        _write(root / "cgroup.subtree_control", enable)
    except OSError as exc:
        if exc.errno != errno.EBUSY or own != "/":
            return None, frozenset(), f"cannot enable {enable} in {root}: {exc.strerror}"
        # "No internal processes": at our cgroup namespace root (a container), move the
        # processes already there (the entrypoint, supervisord) into a leaf, then retry.
        leaf = root / "init"
        leaf.mkdir(exist_ok=True)
        for pid in (root / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                _write(leaf / "cgroup.procs", pid)
        try:
            _write(root / "cgroup.subtree_control", enable)
        except OSError as exc2:
            return None, frozenset(), f"cannot enable {enable} in {root}: {exc2.strerror}"
    try:
        _write(ours / "cgroup.subtree_control", enable)
    except OSError as exc:
        return None, frozenset(), f"cannot enable {enable} in {ours}: {exc.strerror}"
    usable = set((ours / "cgroup.subtree_control").read_text().split()) & available
    return ours, frozenset(usable), None


def detect(cgroup_root: Path | None = None, *, proc: Path = Path("/proc")) -> Layout:
    """Find writable hierarchies. ``cgroup_root`` (MAESTRO_CGROUP_ROOT) names the v2 folder to use."""
    try:
        mounts = _mounts((proc / "self" / "mounts").read_text())
        own = (proc / "self" / "cgroup").read_text()
    except OSError as exc:
        return Layout(notes=(f"cannot read cgroup mounts: {exc}",))
    notes: list[str] = []
    v2: Path | None = None
    v2_ctl: frozenset[str] = frozenset()
    root = cgroup_root
    own_v2 = "/" if cgroup_root else _own_path(own, True)
    if root is None:
        root = next((Path(m) for m, fstype, _ in mounts if fstype == "cgroup2"), None)
    if root is not None and (root / "cgroup.controllers").is_file():
        try:
            v2, v2_ctl, note = _setup_v2(root, own_v2)
        except OSError as exc:
            note = f"cgroup v2 at {root}: {exc}"
        if note:
            notes.append(note)
    elif cgroup_root is not None:
        notes.append(f"MAESTRO_CGROUP_ROOT={cgroup_root} is not a cgroup v2 folder")
    v1: dict[str, Path] = {}
    for mountpoint, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        for kind in KINDS:
            if kind in options and kind not in v2_ctl and kind not in v1:
                ours = Path(mountpoint) / GROUP
                if _writable_dir(ours):
                    v1[kind] = ours
                else:
                    notes.append(f"cgroup v1 {kind} at {mountpoint} is not writable")
    return Layout(v2=v2, v2_controllers=v2_ctl, v1=v1, notes=tuple(notes))


def memory_limit(*, proc: Path = Path("/proc")) -> int | None:
    """The memory limit of the cgroup we run in (the container's ``--memory``), in bytes; None
    when there is none or it cannot be read. cgroup v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``: the smallest of our own folder's and every folder's above it up to
    the mount's root, as the kernel applies them (cgroups.detect moves the entrypoint into an
    ``init`` folder without a limit of its own, below the container's; a container without a
    cgroup namespace sees its folder mounted at the root, under a path it cannot resolve)."""
    try:
        mounts = _mounts((proc / "self" / "mounts").read_text())
        own = (proc / "self" / "cgroup").read_text()
    except OSError:
        return None
    limits = []
    for mountpoint, fstype, options in mounts:
        if fstype == "cgroup2":
            base, name = Path(mountpoint), "memory.max"
            path = _own_path(own, True)
        elif fstype == "cgroup" and "memory" in options:
            base, name = Path(mountpoint), "memory.limit_in_bytes"
            path = _own_path(own, False, "memory")
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):  # ours first, the mount's root last
            with contextlib.suppress(OSError, ValueError):
                value = base.joinpath(*parts[:depth], name).read_text().strip()
                # "max": none here; v1 says "no limit" with a page-rounded 2**63 - 1
                if value != "max" and int(value) < 1 << 62:
                    limits.append(int(value))
    return min(limits, default=None)


def service_dirs(layout: Layout, name: str) -> list[Path]:
    dirs = [layout.v2 / name] if layout.v2 is not None else []
    dirs += [path / name for path in layout.v1.values()]
    return list(dict.fromkeys(dirs))  # co-mounted controllers (cpu,cpuacct) share a folder


@dataclass(frozen=True)
class GroupDir:
    """One limit's folder to create, and the values to write into it, in order."""

    kind: str
    folder: Path
    writes: tuple[tuple[str, str], ...]
    swap: tuple[str, str] | None = None  # written last, and only where the kernel accounts swap


@dataclass(frozen=True)
class GroupPlan:
    """One program's cgroups (pure, :func:`plan_groups`): what to create and what that enforces."""

    name: str
    dirs: tuple[GroupDir, ...]
    procs: tuple[str, ...]  # cgroup.procs files the program's launch joins
    enforced: Mapping[str, str | None]  # per limit kind: mechanism, 'unlimited' or None
    prlimit: tuple[str, ...]  # argv prefix for rlimit fallbacks


def plan_groups(layout: Layout, name: str, limits: Limits, refused: frozenset[str] = frozenset(), *,
                one_shot: bool = False) -> GroupPlan:
    """``<hierarchy>/maestro/<name>`` per limit a writable controller enforces. ``refused``: the
    kinds whose folder or values the kernel refused (:func:`apply`): they fall back to rlimits."""
    chosen = choose(layout, limits, one_shot=one_shot)
    dirs: list[GroupDir] = []
    for kind, mech in list(chosen.items()):
        if mech not in ("cgroup-v2", "cgroup-v1"):
            continue
        if kind in refused:
            chosen[kind] = fallback(kind, one_shot)
            continue
        version = 2 if mech == "cgroup-v2" else 1
        folder = (layout.v2 if version == 2 else layout.v1[kind]) / name
        writes = limit_files(kind, version, limits)
        swap = limit_files(kind, version, limits, has_swap=True)[-1] if kind == "memory" else None
        dirs.append(GroupDir(kind, folder, tuple(writes), swap))
    procs = tuple(dict.fromkeys(str(d.folder / "cgroup.procs") for d in dirs))
    return GroupPlan(name, tuple(dirs), procs, chosen, prlimit_argv(limits, chosen))


def apply(plan: GroupPlan) -> tuple[frozenset[str], tuple[str, ...]]:
    """Create the folders and write the limits: (the kinds the kernel refused, one line per refusal)."""
    refused: set[str] = set()
    errors: list[str] = []
    for group in plan.dirs:
        try:
            group.folder.mkdir(exist_ok=True)
            swap = group.swap is not None and (group.folder / group.swap[0]).exists()
            for filename, value in (*group.writes, *([group.swap] if swap and group.swap else [])):
                _write(group.folder / filename, value)
        except OSError as exc:
            errors.append(f"{group.kind} limit in {group.folder}: {exc.strerror or exc}")
            refused.add(group.kind)
    return frozenset(refused), tuple(errors)


@dataclass(frozen=True)
class Prepared:
    procs: tuple[str, ...]  # cgroup.procs files the service's launch joins
    enforced: dict[str, str | None]  # per limit kind: mechanism, 'unlimited' or None
    prlimit: tuple[str, ...]  # argv prefix for rlimit fallbacks
    errors: tuple[str, ...] = ()


def prepare(layout: Layout, name: str, limits: Limits) -> Prepared:
    """Plan, create and write in one step for one command (a build step, ``maestro-sandbox``:
    sandbox/runner.py), which gets no memory rlimit (see RLIMIT_FALLBACK)."""
    planned = plan_groups(layout, name, limits, one_shot=True)
    refused, errors = apply(planned)
    if refused:
        planned = plan_groups(layout, name, limits, refused, one_shot=True)
    return Prepared(procs=planned.procs, enforced=dict(planned.enforced), prlimit=planned.prlimit, errors=errors)


def remove(layout: Layout, name: str, wait: float = 1.0) -> None:
    """Remove a service's groups. Exited processes leave a group a moment after wait()
    returns, so EBUSY is retried briefly; a group still in use after that stays."""
    deadline = time.monotonic() + wait
    for folder in service_dirs(layout, name):
        while True:
            try:
                folder.rmdir()
            except OSError as exc:
                if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            break


def join(procs: tuple[str, ...], pid: int = 0) -> None:
    """Move ``pid`` (0: the caller) into each group; used in a child before exec."""
    for path in procs:
        _write(Path(path), str(pid or os.getpid()))
