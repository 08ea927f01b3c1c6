"""The build step a project declares for another platform (render.yaml ``buildCommand``,
railway ``build.buildCommand``, nixpacks ``[phases.build]``), run like the other build steps:
in the project's folder, as its user, through the sandbox wrapper, after the dependencies.

It runs again when the dependencies were rebuilt or the project's files changed since its
last success: a fingerprint of the tree (names, sizes, times; not node_modules, .git or
__pycache__) taken after that success is kept in the account's ``~/.maestro``, so a reboot
with the same code runs nothing, and new code (a fetch, an edit) builds again. A file the
app writes into its own folder while it runs also counts as a change (one more build).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from pathlib import Path

from maestro_runtime.sources.buildplan import BuildError, Plan
from maestro_runtime.sources.declared import Declared, build_parts

log = logging.getLogger("maestro.builds")

_SKIP = frozenset({"node_modules", ".git", "__pycache__"})
MAX_ENTRIES = 200_000  # past it the tree is not fingerprinted: the step always runs


def fingerprint(directory: Path) -> str | None:
    """Metadata only (never a file's contents, never through a link), iteratively: a hostile
    tree can be deep or huge, not harmful. None when it is too big to tell."""
    digest = hashlib.sha256()
    count = 0
    stack = [str(directory)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            count += 1
            if count > MAX_ENTRIES:
                return None
            rel = os.path.relpath(entry.path, directory)
            if entry.name in _SKIP:  # its contents (and so its times) are not the code's
                digest.update(f"{rel}\0skipped\n".encode(errors="surrogateescape"))
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):  # its entries count, not its times (a __pycache__ made in it)
                digest.update(f"{rel}\0dir\n".encode(errors="surrogateescape"))
                stack.append(entry.path)
                continue
            digest.update(f"{rel}\0{stat.S_IFMT(info.st_mode)}\0{info.st_size}\0{info.st_mtime_ns}\n"
                          .encode(errors="surrogateescape"))
    return digest.hexdigest()


def stamp_of(command: str, directory: Path, tree: str | None) -> str | None:
    if tree is None:
        return None
    return hashlib.sha256(f"{command}\0{directory}\0{tree}".encode()).hexdigest()


def run(declared: Declared, directory: Path, account, policy, opts, service_id: str, *, deps_built: bool) -> bool:
    """Run the declared build when needed; True when it ran. Raises BuildError (with the log's tail)."""
    from maestro_runtime.sources import builds  # the runner and stamp helpers (builds imports this module)

    where = declared.reason.removeprefix("detected: ")
    command, dropped = build_parts(declared.command)
    if dropped:
        log.info("service %s: %s: %s left out (the dependencies are installed already, locks untouched)",
                 service_id, where, " and ".join(repr(d) for d in dropped))
    if command is None:
        return False
    stamp_path = Path(account.venv_dir).parent / f"{service_id}.build-step.stamp"
    trusted = Path(account.home).parent
    previous = builds._read_stamp(stamp_path, trusted)
    if not deps_built and previous is not None and previous == stamp_of(command, directory, fingerprint(directory)):
        log.info("service %s: build step (%s) up to date, skipped", service_id, where)
        return False
    names = (*builds.PYTHON_INPUTS, "package.json", *builds.NODE_LOCKS)
    shipped = builds._read_inputs(directory, tuple(
        n for n in names if (directory / n).is_file() and not (directory / n).is_symlink()))
    logfile = builds._log_path(opts, service_id, account)
    with open(logfile, "a") as fh:
        fh.write(f"# build step of {service_id} ({where}) in {directory}, {time.ctime()}\n")
    log.info("service %s: build step (%s): %s", service_id, where, command)
    started = time.monotonic()
    plan = Plan("build step", (), (("/bin/sh", "-c", command),), stamp_path, ())
    try:
        builds._run_plan(plan, directory, account, policy, opts, logfile)
    except BuildError as exc:
        raise BuildError(str(exc).replace("build step build", f"build step ({where})", 1), killed=exc.killed) from None
    after = builds._read_inputs(directory, tuple(shipped))
    changed = [name for name, data in shipped.items() if after.get(name) != data]
    if changed:
        raise BuildError(f"the build step ({where}) rewrote {', '.join(changed)}, which the project ships: "
                         "leave the install to the runtime (it uses the lock as it is)")
    stamp = stamp_of(command, directory, fingerprint(directory))
    if stamp is not None:
        builds._write_stamp(stamp_path, stamp, plan, account, trusted)
    log.info("service %s: build step done in %.1fs", service_id, time.monotonic() - started)
    return True
