"""Peer supervisors for the boot benchmark: s6 (``s6-svscan``), runit (``runsvdir``) and circus.

Each runs the floor's exact service commands (``/usr/bin/python3 -m http.server PORT --directory
DIR --bind 0.0.0.0``, as root, one per static folder) from a configuration written the way its
own documentation shows, and is timed by the same poller as maestro and the floor.

s6 and runit come from Debian (``make bench`` installs them: ``s6 runit`` with
``--no-install-recommends``, since runit recommends ``runit-init``, which replaces
``/sbin/init``); circus from PyPI into its own venv of the system python3
(``python3 -m benchmarks.peers --install``), like the product's own install. A peer that is not
installed is skipped with one line saying how to install it.

s6 and runit start a service through its ``run`` file; ours is ``#!/bin/sh`` + ``exec``, the
usual form (execline is only a recommendation of the s6 package): one ``sh`` start more per
service than supervisord or circus, which exec the command directly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import SYSTEM_PATH, stop_tree

PEERS = ("s6", "runit", "circus")
SERVICE_PYTHON = shutil.which("python3", path=SYSTEM_PATH) or "/usr/bin/python3"
CIRCUS_VENV = Path("/var/cache/maestro-bench/circus-venv")
CIRCUS_VERSION = "0.19.0"  # pinned: a figure should not move because a release did


def service_argv(port: int, folder: Path) -> list[str]:
    """The one command every contender runs per service (the floor's and maestro's static command)."""
    return [SERVICE_PYTHON, "-m", "http.server", str(port), "--directory", str(folder), "--bind", "0.0.0.0"]


def binary(peer: str) -> Path | None:
    """The peer's daemon, or None when it is not installed."""
    if peer == "circus":
        path = CIRCUS_VENV / "bin" / "circusd"
        return path if path.exists() else None
    found = shutil.which({"s6": "s6-svscan", "runit": "runsvdir"}[peer], path=SYSTEM_PATH)
    return Path(found) if found else None


def missing_hint(peer: str) -> str:
    if peer == "circus":
        return "circus: not installed (python3 -m benchmarks.peers --install, or make bench)"
    return f"{peer}: not installed (apt-get install --no-install-recommends {peer}, or make bench)"


def available(peers: tuple[str, ...] = PEERS) -> tuple[tuple[str, ...], list[str]]:
    """The installed peers, and one line for each that is not."""
    have = tuple(p for p in peers if binary(p))
    return have, [missing_hint(p) for p in peers if p not in have]


def install_circus(venv: Path = CIRCUS_VENV) -> Path:
    """circus from PyPI into a venv of the system python3 (its own: it pins tornado and pyzmq)."""
    circusd = venv / "bin" / "circusd"
    if circusd.exists():
        return circusd
    python = shutil.which("python3", path=SYSTEM_PATH) or sys.executable
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--no-input",
                    f"circus=={CIRCUS_VERSION}"], check=True)
    return circusd


# ---------------------------------------------------------------- configurations (pure)


def run_script(argv: list[str]) -> str:
    """An s6 / runit ``run`` file: the shell only execs the command, so the service is the supervised pid."""
    return "#!/bin/sh\nexec " + shlex.join(argv) + "\n"


def circus_ini(root: Path, services: list[tuple[str, list[str]]]) -> str:
    """circusd's configuration: private ipc endpoints (no TCP port shared with anything else on the
    machine), no statsd or web console, and one watcher per service with one process."""
    lines = ["[circus]", f"endpoint = ipc://{root}/endpoint", f"pubsub_endpoint = ipc://{root}/pubsub",
             "statsd = False", "httpd = False", "check_delay = 5", "warmup_delay = 0", ""]
    for name, argv in services:
        lines += [f"[watcher:{name}]", f"cmd = {shlex.join(argv)}", "numprocesses = 1", "warmup_delay = 0",
                  "graceful_timeout = 2", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- one peer host


@dataclass
class PeerHost:
    """One peer supervisor with N service definitions under a temporary folder."""

    peer: str
    root: Path
    argv: list[str]
    proc: subprocess.Popen | None = None

    @classmethod
    def create(cls, peer: str, ports: list[int]) -> PeerHost:
        daemon = binary(peer)
        if daemon is None:
            raise RuntimeError(missing_hint(peer))
        root = Path(tempfile.mkdtemp(prefix=f"maestro-peer-{peer}-"))
        root.chmod(0o755)
        services = []
        for i, port in enumerate(ports):
            folder = root / "projects" / f"p{i:03d}"
            folder.mkdir(parents=True)
            (folder / "index.html").write_text(f"<h1>p{i:03d}</h1>")
            services.append((f"p{i:03d}", service_argv(port, folder)))
        return cls(peer, root, _WRITERS[peer](root, daemon, services))

    def start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        return self.proc

    def destroy(self) -> None:
        if self.proc:
            with contextlib.suppress(Exception):
                stop_tree(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def _service_dirs(scan: Path, services: list[tuple[str, list[str]]]) -> None:
    scan.mkdir()
    for name, argv in services:
        d = scan / name
        d.mkdir()
        run = d / "run"
        run.write_text(run_script(argv))
        run.chmod(0o755)
    # Dated back like an image's /etc/service: runsvdir defers the scan of a folder modified in the
    # current second by up to a second (a race guard), a cost no booting container pays.
    past = time.time() - 5
    for path in (scan, *scan.iterdir()):
        os.utime(path, (past, past))


def _s6(root: Path, daemon: Path, services: list[tuple[str, list[str]]]) -> list[str]:
    _service_dirs(root / "scan", services)
    return [str(daemon), str(root / "scan")]


def _runit(root: Path, daemon: Path, services: list[tuple[str, list[str]]]) -> list[str]:
    _service_dirs(root / "service", services)
    # -P: each runsv in its own process group, as runit's own boot does.
    return [str(daemon), "-P", str(root / "service")]


def _circus(root: Path, daemon: Path, services: list[tuple[str, list[str]]]) -> list[str]:
    ini = root / "circus.ini"
    ini.write_text(circus_ini(root, services))
    return [str(daemon), str(ini)]


_WRITERS: dict[str, Callable[[Path, Path, list[tuple[str, list[str]]]], list[str]]] = {
    "s6": _s6, "runit": _runit, "circus": _circus}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help=f"install circus {CIRCUS_VERSION} into {CIRCUS_VENV}")
    args = parser.parse_args(argv)
    if args.install:
        install_circus()
    have, missing = available()
    for peer in have:
        print(f"{peer}: {binary(peer)}")
    for line in missing:
        print(line, file=sys.stderr)
    return 0 if not missing or not args.install else 1


if __name__ == "__main__":
    sys.exit(main())
