"""Sandbox policy: what provisioning asks for (bubblewrap, resource limits, network policy).

:func:`launch_plan` (pure) turns a service record and the :class:`SandboxFacts` into a
:class:`LaunchPlan`: the wrapper argv, the cgroups to make, the report. :class:`SandboxPolicy`
measures the host once (the bwrap probe, the cgroup layout), gathers a service's facts and
makes its cgroups; :func:`boot_report` says what is and is not enforced. The pure argv
building is in :mod:`.bwrap`; one sandboxed command (the ``maestro-sandbox`` CLI and builds)
is :mod:`.runner`. Their public names are re-exported here, the sandbox's surface for the
rest of the runtime.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maestro_runtime.sandbox import cgroups, netpolicy
from maestro_runtime.sandbox.bwrap import (
    CAPABILITY_HINT,
    DEFAULT_SIGNALS,
    IGNORE_SIGNALS,
    PROXY_PORT,
    Probe,
    SandboxConfig,
    SandboxError,
    Shape,
    View,
    bwrap_argv,
    limits_report,
    probe,
    service_shape,
    system_view,
    wrap,
)
from maestro_runtime.state.records import atomic_write

__all__ = [  # the sandbox's surface: what provisioning and the CLI use, and the pure parts tests check
    "CAPABILITY_HINT", "DEFAULT_SIGNALS", "IGNORE_SIGNALS", "PROXY_PORT", "LaunchPlan", "Probe", "SandboxConfig",
    "SandboxError", "SandboxFacts", "SandboxPolicy", "Shape", "View", "boot_report", "bwrap_argv", "launch_plan",
    "limits_report", "probe", "service_shape", "system_view", "wrap",
]

log = logging.getLogger("maestro.sandbox")

# ---------------------------------------------------------------- services


@dataclass(frozen=True)
class SandboxFacts:
    """What planning one service's sandbox needs to know that only the machine can tell."""

    sandboxed: bool
    reason: str  # why not sandboxed
    private_proc: bool
    view: View | None  # the system folders the sandbox sees (None: not sandboxed)
    layout: cgroups.Layout
    net: netpolicy.NetDecision
    egress: str  # how egress is enforced, for the report


@dataclass(frozen=True)
class LaunchPlan:
    wrapper: tuple[str, ...] = ()  # argv placed before the privilege drop, ending in "--"
    cgroup_procs: tuple[str, ...] = ()  # cgroup.procs files the launch script joins
    report: dict = field(default_factory=dict)  # what is enforced, for record.sandbox / list-services
    groups: cgroups.GroupPlan | None = None  # the cgroup folders and limit values to write


def launch_plan(config: SandboxConfig, facts: SandboxFacts, record,
                refused: frozenset[str] = frozenset(), *, group: str | None = None) -> LaunchPlan:
    """How ``record`` is launched (pure). ``refused``: limit kinds whose cgroup the kernel refused.
    ``group``: the cgroup it joins (default its own): a Procfile process type joins its service's."""
    try:
        limits = cgroups.resolve_limits(config.limits, record.limits)
    except ValueError as exc:
        raise SandboxError(f"limits of {record.id}: {exc}") from exc
    groups = cgroups.plan_groups(facts.layout, group or record.id, limits, refused)
    on = facts.sandboxed and facts.view is not None
    if on:
        argv = bwrap_argv(config.bwrap, facts.view, service_shape(record, facts.private_proc))
        wrapper = wrap(argv, groups.prlimit)
    else:
        wrapper = tuple(groups.prlimit)
    report = {
        "sandbox": "bubblewrap" if on else "none",
        "mode": config.mode,
        "reason": facts.reason or None,
        "private_proc": bool(on and facts.private_proc),
        "limits": limits_report(limits, groups.enforced),
        "network": {**facts.net.describe(), "namespace": "shared with the container (ports reachable)",
                    "egress_enforced_by": facts.egress},
    }
    return LaunchPlan(wrapper=wrapper, cgroup_procs=groups.procs, report=report, groups=groups)


class SandboxPolicy:
    """What provisioning uses. Probes and cgroup detection happen once, on first use."""

    def __init__(self, config: SandboxConfig):
        self.config = config
        self._lock = threading.Lock()
        self._probe: Probe | None = None
        self._layout: cgroups.Layout | None = None
        self._view: View | None = None
        self._firewall = None
        self._config_file: Path | None = None

    @property
    def mode(self) -> str:
        return self.config.mode

    @classmethod
    def from_settings(cls, settings) -> SandboxPolicy:
        return cls(SandboxConfig.from_settings(settings))

    # -- lazily measured facts
    def probe(self) -> Probe:
        with self._lock:
            if self._probe is None:
                self._probe = Probe(False, error="sandbox mode is off") if self.mode == "off" \
                    else probe(self.config)
            return self._probe

    def layout(self) -> cgroups.Layout:
        with self._lock:
            if self._layout is None:
                self._layout = cgroups.detect(self.config.cgroup_root)
            return self._layout

    def firewall(self):
        from maestro_runtime.sandbox import firewall

        with self._lock:
            if self._firewall is None:
                self._firewall = firewall.Firewall.from_config(self.config)
            return self._firewall

    def sandboxed(self) -> tuple[bool, str]:
        """(sandbox or not, why not); raises SandboxError in require mode when bwrap cannot work."""
        if self.mode == "off":
            return False, "MAESTRO_SANDBOX_MODE=off"
        result = self.probe()
        if result.ok:
            return True, ""
        if self.mode == "require":
            raise SandboxError(f"MAESTRO_SANDBOX_MODE=require: {CAPABILITY_HINT} ({result.error})")
        return False, f"bubblewrap unusable: {result.error}"

    def service_net(self, record) -> netpolicy.NetDecision:
        extra = netpolicy.extra_hosts(self.config.runtime_dir, self.config.state_dir, record.id)
        check = netpolicy.read_policy_file(self.config.net_allow_file)
        return netpolicy.decide(self.config.net_policy, check, (*record.allow_hosts, *extra))

    def view(self) -> View:
        with self._lock:
            if self._view is None:
                self._view = system_view(self.config)
            return self._view

    def facts(self, record) -> SandboxFacts:
        """Raises SandboxError in require mode when bwrap cannot work."""
        on, why = self.sandboxed()
        net = self.service_net(record)
        return SandboxFacts(sandboxed=on, reason=why, private_proc=self.probe().private_proc,
                            view=self.view() if on else None, layout=self.layout(), net=net,
                            egress=self.firewall().egress_status(net))

    def make_groups(self, groups: cgroups.GroupPlan) -> frozenset[str]:
        """Create a program's cgroups and write its limits; the kinds the kernel refused (each logged)."""
        refused, errors = cgroups.apply(groups)
        for error in errors:
            log.warning("service %s: %s", groups.name, error)
        return refused

    def prepare(self, record) -> LaunchPlan:
        """Plan one launch and make its cgroups (a refused limit falls back, as planned again)."""
        facts = self.facts(record)
        plan = launch_plan(self.config, facts, record)
        refused = self.make_groups(plan.groups) if plan.groups else frozenset()
        return launch_plan(self.config, facts, record, refused) if refused else plan

    def forget(self, record) -> None:
        cgroups.remove(self.layout(), record.id)
        netpolicy.forget_extra_hosts(self.config.runtime_dir, self.config.state_dir, record.id)

    def sync_firewall(self, records: Sequence) -> list[str]:
        """Rebuild MAESTRO_INPUT (ports) and the per-UID egress chain; call after every deploy/remove."""
        ready = [r for r in records if getattr(r, "ready", True) and r.port]
        return self.firewall().sync(ready, {r.id: self.service_net(r) for r in ready})

    # -- builds
    def config_file(self) -> Path:
        """The config, written once (root-only) for the build wrapper: options as a file,
        not environment variables the wrapper would parse again."""
        with self._lock:
            if self._config_file is None:
                path = self.config.cache_dir / "config.json"
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                atomic_write(path, self.config.to_json(), mode=0o600)
                self._config_file = path
            return self._config_file

    def build_wrapper(self, account, directory: Path | str) -> tuple[str, ...]:
        """argv prefix for one build step, ending in ``--``: append only the command (the
        wrapper drops to ``account`` itself). The build gets the build network policy."""
        # Ids and home from the account, never a name lookup: in degraded identity the account
        # was never created. -s: no user site-packages in this root process.
        return (sys.executable, "-s", "-m", "maestro_runtime.sandbox.cli", "--config", str(self.config_file()),
                "--workdir", str(directory),
                "--user", account.user, "--uid", str(account.uid), "--gid", str(account.gid),
                "--home", str(account.home), "--")


def boot_report(config: SandboxConfig) -> list[str]:
    """Warnings to log once at boot: every setting ignored, every limit or policy not enforced."""
    policy = SandboxPolicy(config)
    warnings = list(config.problems)
    try:
        on, why = policy.sandboxed()
    except SandboxError as exc:
        return [*warnings, str(exc)]
    if not on and config.mode == "auto":
        warnings.append(f"SANDBOX DISABLED: every service runs unsandboxed ({why}). {CAPABILITY_HINT}")
    if on and not policy.probe().private_proc:
        warnings.append(f"sandboxes share the container's /proc (a private /proc mount was refused: "
                        f"{policy.probe().error}); grant --security-opt systempaths=unconfined")
    layout = policy.layout()
    chosen = cgroups.choose(layout, config.limits)
    for kind, mech in chosen.items():
        if mech is None:
            warnings.append(f"{kind} limit {config.limits.describe()[kind]} is NOT enforced "
                            f"(no writable cgroup controller: {'; '.join(layout.notes) or 'none found'})")
        elif mech.startswith("rlimit"):
            warnings.append(cgroups.fallback_note(kind, config.limits, mech))
    if config.net_policy == netpolicy.ALLOW:
        decision = netpolicy.decide(netpolicy.ALLOW, netpolicy.read_policy_file(config.net_allow_file))
        if decision.warning:
            warnings.append(decision.warning)
    warnings += policy.firewall().boot_warnings()
    return warnings
