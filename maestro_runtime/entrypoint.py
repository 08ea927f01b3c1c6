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
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from maestro_runtime.engine import parent, reaper
from maestro_runtime.engine.supervisord import (
    Supervisor,
    SupervisorUnavailable,
    remove_orphan_programs,
    render_main_config,
)
from maestro_runtime.log_format import setup_logging
from maestro_runtime.settings import OpsSettings, Settings, load_or_exit, read_only
from maestro_runtime.spec.naming import reserved
from maestro_runtime.state.records import RecordStore, atomic_write

if TYPE_CHECKING:
    from maestro_runtime.ops.reconcile import OnReady

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
        # health details and last output lines of every service: not for the other services' users
        (settings.state_dir / "runstate", 0o700),
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
        logs_dir=settings.service_log_dir,
        log_max_bytes=ops.log_max_bytes,
        log_backups=ops.log_backups,
        with_controller=True,
        # maestro.addProgram runs inside supervisord: only when it is this interpreter's (it imports us)
        maestro_rpc=own_supervisord(settings) is not None,
        launch_dir=settings.runtime_dir / "launch",
    )
    atomic_write(settings.supervisord_conf, text)
    exit_status_file(settings).unlink(missing_ok=True)  # a verdict of the previous run is not ours


def exit_status_file(settings: Settings):
    """Where the controller leaves the container's exit status when an essential service gave up."""
    return settings.runtime_dir / "exit-status"


def ensure_tmpdir(settings: Settings) -> None:
    """supervisord and git need a temporary folder; a read-only root with no tmpfs at all has
    none (podman --read-only-tmpfs=false, or Docker's --read-only without --tmpfs /tmp)."""
    current = Path(os.environ.get("TMPDIR") or "/tmp")
    if not read_only(current):
        return
    folder = settings.runtime_dir / "tmp"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(folder)  # for us and every child (supervisord, git)
    tempfile.tempdir = None  # forget the folder tempfile may have chosen already
    log.warning("%s is on a read-only file system: temporary files go to %s", current, folder)


def boot(settings: Settings, on_ready: OnReady | None = None) -> int:
    """Provision everything, ``settings.build_jobs`` services at a time; ``on_ready`` gets each
    service's programs as soon as they are written. Returns the number of failures."""
    # Imported here, not at the top: supervisord is already starting while these load (~90 ms).
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.ops.reconcile import reconcile, write_report
    from maestro_runtime.spec.gather import gather_specs

    # Python 3.11's sysconfig publishes its cache before filling it (gh-92452): a library asking
    # from a provisioning thread could get None (sources/uvbin.py). Filled once here, first.
    sysconfig.get_config_vars()
    provisioner = Provisioner(settings)
    for warning in provisioner.boot_warnings():
        log.warning("%s", warning)
    report = reconcile(provisioner, gather_specs(settings), jobs=settings.build_jobs, on_ready=on_ready)
    # A firewall this container cannot have was said once among the boot warnings above.
    standing = set(provisioner.policy.firewall().skipped())
    for problem in provisioner.policy.sync_firewall(provisioner.store.all()):
        (log.debug if problem in standing else log.warning)("%s", problem)
    write_report(settings.boot_report, report)
    (log.warning if report.failed else log.info)("%s", report.summary())
    return len(report.failed)


def start_supervisord(settings: Settings) -> subprocess.Popen:
    """supervisord spends its first second before it starts anything: let that second overlap
    provisioning. Our program files are cleared first, so it starts with (almost) none: each
    service is added as soon as it is provisioned (:class:`EarlyStart`)."""
    remove_orphan_programs(settings.supervisor_conf_dir, wanted=set())
    supervisord = own_supervisord(settings)
    return subprocess.Popen([supervisord or settings.supervisord_bin, "-n", "-c", str(settings.supervisord_conf)])


def own_supervisord(settings: Settings) -> str | None:
    """supervisord installed beside this interpreter (the image's venv), if there is one."""
    return shutil.which(settings.supervisord_bin, path=os.path.dirname(sys.executable))


def stop_on_signals() -> None:
    """docker stop (or ^C) while still provisioning: unwind from wherever we are (a git clone,
    a build); ``main`` then stops supervisord and ends every process below us."""

    def stop_early(signum: int, _frame: object) -> None:
        for other in (signal.SIGTERM, signal.SIGINT):
            signal.signal(other, signal.SIG_IGN)  # one unwinding at a time
        log.warning("stopping: signal %d during boot", signum)
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_early)


def stop_supervisord(daemon: subprocess.Popen, timeout: float = 30.0) -> None:
    """supervisord stops its services on TERM; never leave them behind without their parent."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


class EarlyStart:
    """Each service's programs go to supervisord as soon as they are written and supervisord answers.

    Only ``maestro.addProgram`` (engine/rpc_add.py): the one program, parsed alone, added only when
    supervisord does not have it. Never ``update()`` (reloadConfig, then stop + remove + add of
    every group it calls changed) while supervisord may be starting programs on its own: that is
    how an earlier early start (reverted in 336b212) could run a service twice. A program whose
    file supervisord read at its start-up was started by supervisord itself and is left alone.
    Called in the boot's own thread (reconcile's ``on_ready``): with each service's programs as
    it ends, which are queued, and with [] whenever no other service is waiting to be announced,
    which sends the queue. Under load a round trip takes tens of milliseconds, and the services
    that end meanwhile go together in the next one instead of each waiting for its own.
    """

    def __init__(self, settings: Settings, daemon: subprocess.Popen):
        self.supervisor = Supervisor(settings.supervisor_socket)
        self.daemon = daemon
        self.pending: list[str] = []
        self.answering = False
        self.enabled = True

    def __call__(self, programs: list[str]) -> None:
        self.pending += programs
        if not programs and self.pending and self.enabled and (self.answering or self._answers()):
            self.flush()

    def _answers(self) -> bool:
        self.answering = self.daemon.poll() is None and self.supervisor.available()
        return self.answering

    def flush(self) -> None:
        """Every pending program in one request (several are ready at once under load)."""
        while self.pending and self.enabled:
            batch = list(self.pending)
            try:
                results = self.supervisor.add_programs(batch)
            except SupervisorUnavailable:
                self.answering = False  # the rest waits for hand_over
                return
            for name, result in zip(batch, results, strict=True):
                if isinstance(result, str):
                    if "UNKNOWN_METHOD" in result:
                        self.enabled = False  # no rpc_add in this supervisord: hand_over adds them all
                        return
                    log.warning("%s: not added early (%s); added at hand-over", name, result)
            del self.pending[:len(batch)]


def hand_over(settings: Settings, daemon: subprocess.Popen, early: EarlyStart | None = None,
              timeout: float = 60.0) -> None:
    """Wait until supervisord answers, then add every provisioned program it does not have yet."""
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
    if early is not None:
        early.answering = True
        early.flush()
        if not early.pending and nothing_to_reread(settings, supervisor):
            return
    # One reread for whatever was not added early (and a program whose file is gone, e.g. of a
    # service that failed after supervisord read it at start-up, stops); a program supervisord runs
    # is never started again here.
    _added, changed, _removed = supervisor.update(restart_changed=False)
    if changed:
        log.warning("program files changed during boot, left running as started: %s", ", ".join(changed))


def nothing_to_reread(settings: Settings, supervisor: Supervisor) -> bool:
    """supervisord has a group for every program file and none whose file is gone: the reread
    (every file parsed again inside supervisord's loop, ~3 ms each) would change nothing.
    Each file was written once this boot, after the start-up cleared ours, so none changed."""
    import xmlrpc.client

    from maestro_runtime.control.rpc import process_states

    files = {path.stem for path in settings.supervisor_conf_dir.glob("*.conf")}
    try:
        groups = {row["group"] for row in process_states(supervisor).values()}
    except (SupervisorUnavailable, OSError, xmlrpc.client.Fault):
        return False
    return files <= groups and all(reserved(group) for group in groups - files)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--prepare-only", is_flag=True,
              help="Provision users, files and program files, then exit without running supervisord.")
def main(prepare_only: bool) -> None:
    """Boot maestro-runtime: gather pre-seeded folders and specs (YAML file, SERVICES, SVC_*),
    provision each service, and run them all under supervisord (the image's entrypoint)."""
    settings = load_or_exit("maestro-entrypoint")  # every bad setting listed, exit 2
    setup_logging(settings.log_level, settings.log_timestamps)
    try:
        OpsSettings.from_env(settings.environ)
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    if os.geteuid() != 0:
        log.error("maestro-entrypoint must run as root (it creates users and drops to them)")
        raise SystemExit(1)
    # Orphans of what we start (git's remote helper, a build's children) come back to us, so
    # that nothing outlives us; kept across the exec below, where init.py reaps them.
    reaper.become_subreaper()
    stop_on_signals()
    daemon: subprocess.Popen | None = None
    handed_over = False
    try:
        if settings.runtime_note:
            log.warning("%s", settings.runtime_note)
        prepare_runtime(settings)
        ensure_tmpdir(settings)
        store = RecordStore(settings.records_dir)
        if prepare_only:
            with store.lock():
                boot(settings)
            return
        daemon = start_supervisord(settings)
        early = EarlyStart(settings, daemon)
        # Held until every program is added: a deploy run during boot waits instead of racing it.
        with store.lock():
            boot(settings, on_ready=early)
            hand_over(settings, daemon, early)
        # From here a stop signal waits (blocked, pending across exec) for engine.parent's handlers:
        # delivered between exec and their installation, its default action would kill the parent
        # and leave supervisord and every service running without it.
        signal.pthread_sigmask(signal.SIG_BLOCK, parent.FORWARDED)
        handed_over = True
    except OSError as exc:  # e.g. a full or read-only state disk: one line naming the file
        log.error("boot failed: %s", exc)
        raise SystemExit(1) from None
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug: still one line; the traceback only when asked for
        log.debug("boot failed", exc_info=True)
        log.error("boot failed: internal error: %r (ENTRYPOINT_LOG_LEVEL=debug shows where)", exc)
        raise SystemExit(1) from None
    finally:
        if not handed_over:  # failed, stopped, or --prepare-only: leave nothing running
            if daemon is not None:
                stop_supervisord(daemon)
            reaper.end_descendants()
    # supervisord stays our child across exec: a fresh, small interpreter waits for it and
    # forwards signals, holding less memory for the container's life than this one.
    os.execv(sys.executable, [
        sys.executable, "-m", "maestro_runtime.engine.parent", str(settings.supervisor_socket), str(daemon.pid),
        str(exit_status_file(settings)),
    ])


if __name__ == "__main__":
    main()
