"""``maestro-entrypoint``: boot. Gather specs, provision each, hand over to supervisord.

One service's failure is logged and recorded; the others still start.
The process then becomes :mod:`maestro_runtime.init`, a small parent for
supervisord that forwards signals and stops every service in parallel.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

from .gather import gather_specs
from .logsetup import setup_logging
from .provision import Provisioner
from .reconcile import reconcile, write_report
from .records import atomic_write
from .settings import Settings
from .supervisor import render_main_config

log = logging.getLogger("maestro")


def prepare_runtime(settings: Settings) -> None:
    """Folders and the main supervisord config; control socket in a root-only folder."""
    for folder, mode in (
        (settings.runtime_dir, 0o755),
        (settings.supervisor_socket.parent, 0o700),
        (settings.runtime_dir / "launch", 0o700),
        (settings.runtime_dir / "childlogs", 0o700),
        (settings.state_dir, 0o755),
        (settings.records_dir, 0o700),
        (settings.supervisor_conf_dir, 0o755),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)
    text = render_main_config(
        conf_path=settings.supervisord_conf,
        socket=settings.supervisor_socket,
        include_dir=settings.supervisor_conf_dir,
        pidfile=settings.runtime_dir / "supervisord.pid",
        childlogdir=settings.runtime_dir / "childlogs",
        loglevel=settings.log_level,
    )
    atomic_write(settings.supervisord_conf, text)


def boot(settings: Settings) -> int:
    """Provision everything; return the number of failures."""
    prepare_runtime(settings)
    provisioner = Provisioner(settings)
    for warning in provisioner.boot_warnings():
        log.warning("%s", warning)
    report = reconcile(provisioner, gather_specs(settings))
    for problem in provisioner.policy.sync_firewall(provisioner.store.all()):
        log.warning("%s", problem)
    write_report(settings.boot_report, report)
    (log.warning if report.failed else log.info)("%s", report.summary())
    return len(report.failed)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    settings = Settings.from_env()
    setup_logging(settings.log_level)
    if os.geteuid() != 0:
        log.error("maestro-entrypoint must run as root (it creates users and drops to them)")
        raise SystemExit(1)
    boot(settings)
    if "--prepare-only" in args:
        return
    # A fresh interpreter with only what the supervisor parent needs: less memory held for the container's life.
    supervisord = shutil.which(settings.supervisord_bin, path=os.path.dirname(sys.executable))
    os.execv(sys.executable, [
        sys.executable, "-m", "maestro_runtime.init",
        str(settings.supervisord_conf), str(settings.supervisor_socket), supervisord or settings.supervisord_bin,
    ])


if __name__ == "__main__":
    main()
