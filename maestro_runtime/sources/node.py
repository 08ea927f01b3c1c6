"""Node builds planned like a PaaS does (pure: reads nothing, runs nothing).

Package manager: ``packageManager`` in package.json when it names npm, pnpm or yarn; else
the one lock file by precedence ``pnpm-lock.yaml`` > ``yarn.lock`` > ``package-lock.json``/
``npm-shrinkwrap.json`` (a lock written by pnpm or yarn is the more deliberate choice: npm
also reads and *rewrites* a yarn.lock, never the other way round); else npm.

Installs are frozen (``npm ci``, ``--frozen-lockfile``, ``--immutable``): a shipped file is
never rewritten, and the shell checks that after the install. With ``scripts.build`` the
install includes dev dependencies (bundlers live there) and the build runs after it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

LOCKS = {"pnpm": ("pnpm-lock.yaml",), "yarn": ("yarn.lock",), "npm": ("package-lock.json", "npm-shrinkwrap.json")}
PRECEDENCE = ("pnpm", "yarn", "npm")


@dataclass(frozen=True)
class NodeChoice:
    manager: str  # npm | pnpm | yarn
    lock: str | None  # the lock file the install is frozen to
    why: str
    ignored_locks: tuple[str, ...] = ()


def choose_manager(files: set[str], package: Mapping) -> NodeChoice:
    declared = str(package.get("packageManager", "")).split("@", 1)[0].strip()
    present = {m: next((f for f in LOCKS[m] if f in files), None) for m in PRECEDENCE}
    locks = tuple(f for m in PRECEDENCE for f in LOCKS[m] if f in files)
    if declared in LOCKS:
        lock = present[declared]
        why = f"packageManager {package.get('packageManager')}"
    else:
        declared = next((m for m in PRECEDENCE if present[m]), "npm")
        lock = present[declared]
        why = f"lock file {lock}" if lock else "no lock file"
    return NodeChoice(declared, lock, why, tuple(f for f in locks if f != lock))


def _berry(files: set[str], package: Mapping) -> bool:
    manager = str(package.get("packageManager", ""))
    return ".yarnrc.yml" in files or (manager.startswith("yarn@") and not manager.startswith("yarn@1"))


def has_build(package: Mapping) -> bool:
    scripts = package.get("scripts")
    return isinstance(scripts, Mapping) and isinstance(scripts.get("build"), str) and bool(scripts["build"].strip())


def install_argv(choice: NodeChoice, files: set[str], package: Mapping, *, prod: bool) -> tuple[str, ...]:
    if choice.manager == "pnpm":
        return ("corepack", "pnpm", "install", "--frozen-lockfile", *(("--prod",) if prod else ()))
    if choice.manager == "yarn":
        if _berry(files, package):  # yarn 2+ has no --production for install; it installs everything
            return ("corepack", "yarn", "install", "--immutable")
        return ("corepack", "yarn", "install", "--frozen-lockfile", *(("--production",) if prod else ()))
    omit = ("--omit=dev",) if prod else ()
    if choice.lock:
        return ("npm", "ci", *omit, "--no-audit", "--no-fund")
    # --no-package-lock: writing a lock would add a file the project did not ship.
    return ("npm", "install", "--no-package-lock", *omit, "--no-audit", "--no-fund")


def enable_steps(choice: NodeChoice, folder: str) -> tuple[tuple[str, ...], ...]:
    """corepack's shims for the project's manager (``yarn`` and ``yarnpkg``, ``pnpm`` and ``pnpx``)
    in ``folder`` (which corepack wants to exist): commands the project declares (``yarn start``)
    then run the version its install used."""
    return (("mkdir", "-p", folder), ("corepack", "enable", "--install-directory", folder, choice.manager))


def build_argv(choice: NodeChoice) -> tuple[str, ...]:
    if choice.manager == "npm":
        return ("npm", "run", "build")
    return ("corepack", choice.manager, "run", "build")


def engines_warning(package: Mapping, node_version: str) -> str | None:
    """A warning when ``engines.node`` plainly excludes the image's Node major version.
    Hand-written on purpose: only the common forms (``>=N``, ``N.x``, ``^N``, ``~N``, ``N``,
    ``a || b``) are judged; anything else is left alone rather than guessed at."""
    engines = package.get("engines")
    wanted = engines.get("node") if isinstance(engines, Mapping) else None
    have = re.match(r"v?(\d+)", node_version or "")
    if not isinstance(wanted, str) or not have:
        return None
    major = int(have.group(1))
    verdicts = []
    for part in wanted.split("||"):
        part = part.strip()
        if m := re.fullmatch(r">=?\s*v?(\d+)(?:\.\d+|\.x)*(?:\s*<\s*v?(\d+)(?:\.\d+)*)?", part):
            low, high = int(m.group(1)), int(m.group(2)) if m.group(2) else None
            verdicts.append(major >= low and (high is None or major < high))
        elif m := re.fullmatch(r"[\^~]?v?(\d+)(?:\.(?:\d+|x|\*))*", part):
            verdicts.append(major == int(m.group(1)))
        else:
            return None
    if verdicts and not any(verdicts):
        return f"package.json engines.node is {wanted!r} but this image has Node {node_version.strip()}"
    return None
