"""Sandbox policy: how a service's command is wrapped (bubblewrap, cgroups, network)."""

from __future__ import annotations

from dataclasses import dataclass


class SandboxError(Exception):
    pass


@dataclass(frozen=True)
class LaunchPlan:
    wrapper: tuple[str, ...] = ()  # argv placed before the privilege drop, ending in "--"
    cgroup_procs: tuple[str, ...] = ()  # cgroup.procs files the launch script joins


@dataclass(frozen=True)
class SandboxPolicy:
    mode: str = "off"

    @classmethod
    def from_settings(cls, settings) -> SandboxPolicy:
        return cls()

    def plan(self, record) -> LaunchPlan:
        return LaunchPlan()

    def boot_warnings(self) -> list[str]:
        return []

    def forget(self, record) -> None:
        return None
