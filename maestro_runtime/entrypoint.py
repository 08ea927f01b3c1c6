"""``maestro-entrypoint``: boot. Gather specs, provision each, hand over to supervisord.

One service's failure is logged and recorded; the others still start.
The process then becomes :mod:`maestro_runtime.engine.parent`, a small parent for
supervisord that forwards signals and stops every service in parallel.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import click

from maestro_runtime.engine.supervisord import Supervisor, render_main_config
from maestro_runtime.log_format import setup_logging
from maestro_runtime.ops.provision import Provisioner
from maestro_runtime.ops.reconcile import reconcile, remove_orphan_programs, write_report
from maestro_runtime.settings import OpsSettings, Settings
from maestro_runtime.spec.gather import gather_specs
from maestro_runtime.state.records import RecordStore, atomic_write

log = logging.getLogger("maestro")


def prepare_runtime(settings: Settings) -> None:
    """Folders and the main supervisord config; control socket in a root-only folder."""
    ops = OpsSettings.from_env(settings.environ)
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
        logs_dir=settings.state_dir / "logs",
        log_max_bytes=ops.log_max_bytes,
        log_backups=ops.log_backups,
        with_controller=True,
    )
    atomic_write(settings.supervisord_conf, text)
    exit_status_file(settings).unlink(missing_ok=True)  # a verdict of the previous run is not ours


def exit_status_file(settings: Settings):
    """Where the controller leaves the container's exit status when an essential service gave up."""
    return settings.runtime_dir / "exit-status"


def boot(settings: Settings) -> int:
    """Provision everything; return the number of failures."""
    provisioner = Provisioner(settings)
    for warning in provisioner.boot_warnings():
        log.warning("%s", warning)
    report = reconcile(provisioner, gather_specs(settings))
    for problem in provisioner.policy.sync_firewall(provisioner.store.all()):
        log.warning("%s", problem)
    write_report(settings.boot_report, report)
    (log.warning if report.failed else log.info)("%s", report.summary())
    return len(report.failed)


def start_supervisord(settings: Settings) -> subprocess.Popen:
    """supervisord spends its first second before it starts anything: let that second overlap
    provisioning. Our program files are cleared first, so it starts with none and every service
    is added by one update once provisioned (like supervisorctl update)."""
    remove_orphan_programs(settings.supervisor_conf_dir, wanted=set())
    supervisord = shutil.which(settings.supervisord_bin, path=os.path.dirname(sys.executable))
    daemon = subprocess.Popen([supervisord or settings.supervisord_bin, "-n", "-c", str(settings.supervisord_conf)])

    def stop_early(signum: int, _frame: object) -> None:  # docker stop while still provisioning
        stop_supervisord(daemon)
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_early)
    return daemon


def stop_supervisord(daemon: subprocess.Popen, timeout: float = 30.0) -> None:
    """supervisord stops its services on TERM; never leave them behind without their parent."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def hand_over(settings: Settings, daemon: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until supervisord answers, then add every provisioned program."""
    supervisor = Supervisor(settings.supervisor_socket)
    deadline = time.monotonic() + timeout
    while not supervisor.available():
        if daemon.poll() is not None:
            log.error("supervisord exited with status %s before the services could start", daemon.returncode)
            raise SystemExit(daemon.returncode or 1)
        if time.monotonic() > deadline:
            log.error("supervisord did not answer on %s within %.0fs", settings.supervisor_socket, timeout)
            raise SystemExit(1)
        time.sleep(0.02)
    supervisor.update()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--prepare-only", is_flag=True,
              help="Provision users, files and program files, then exit without running supervisord.")
def main(prepare_only: bool) -> None:
    """Boot maestro-runtime: gather pre-seeded folders and specs (YAML file, SERVICES, SVC_*),
    provision each service, and run them all under supervisord (the image's entrypoint)."""
    settings = Settings.from_env()
    setup_logging(settings.log_level)
    try:
        OpsSettings.from_env(settings.environ)
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    if os.geteuid() != 0:
        log.error("maestro-entrypoint must run as root (it creates users and drops to them)")
        raise SystemExit(1)
    prepare_runtime(settings)
    store = RecordStore(settings.records_dir)
    if prepare_only:
        with store.lock():
            boot(settings)
        return
    daemon = start_supervisord(settings)
    try:
        # Held until every program is added: a deploy run during boot waits instead of racing it.
        with store.lock():
            boot(settings)
            hand_over(settings, daemon)
    except BaseException:
        stop_supervisord(daemon)
        raise
    # supervisord stays our child across exec: a fresh, small interpreter waits for it and
    # forwards signals, holding less memory for the container's life than this one.
    os.execv(sys.executable, [
        sys.executable, "-m", "maestro_runtime.engine.parent", str(settings.supervisor_socket), str(daemon.pid),
        str(exit_status_file(settings)),
    ])


if __name__ == "__main__":
    main()
