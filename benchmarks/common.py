"""Shared pieces of the benchmark harness: relocated hosts, port polling, statistics.

Host isolation and process trees live in ``tests/fixtures/host.py`` (the tests use them
too) and are re-exported here for the harness.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.fixtures.host import (  # noqa: F401 (re-exported: the harness's shared pieces)
    ACCOUNT_FILES,
    BIN,
    HEALTHCHECK,
    REPO,
    isolate_etc,
    kill_tree,
    leftovers,
    restored_accounts,
    silent_resolver,
    tree,
)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def fresh_file_system(size: int = 2 << 30) -> str:
    """Every tree the harness makes (hosts, homes, peers' folders) on a new ext4 file system: a
    sparse file on a loop device, mounted in the private mount namespace of :func:`isolate_etc`
    (gone when we exit; the file is unlinked as soon as it is mounted). Returns where trees live.

    Why: a first boot creates files (homes, records, program files) and the peers create none
    while timed. On this machine's aged root file system, right after the harness deleted the
    previous run's tree, ext4 skips every inode deleted in the last minute when it allocates one
    (``recently_deleted()``); perf showed a third of the entrypoint's CPU there at N = 100. That
    measured the machine's recent history, not the contenders, and no fresh container pays it.
    Falls back to the default temporary folder (and says so) when no loop device can be had."""
    if not os.environ.get("MAESTRO_TEST_ISOLATED"):
        return f"{tempfile.gettempdir()} (no private mount namespace)"
    backing = mount = None
    try:
        fd, backing = tempfile.mkstemp(prefix="maestro-bench-fs-", dir="/var/tmp")
        os.ftruncate(fd, size)
        os.close(fd)
        # Inode tables and journal written now: lazy init would zero them in a kernel thread while we time.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", backing],
                       check=True, capture_output=True)
        mount = tempfile.mkdtemp(prefix="maestro-bench-fs-")
        subprocess.run(["mount", "-o", "loop", backing, mount], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        if mount:
            os.rmdir(mount)
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        return f"{tempfile.gettempdir()} (no fresh file system: {detail})"
    finally:
        if backing:
            os.unlink(backing)
    os.chmod(mount, 0o1777)
    atexit.register(_unmount, mount)
    tempfile.tempdir = os.environ["TMPDIR"] = mount
    return f"a fresh ext4 file system ({size >> 30} GiB, loop device) at {mount}"


def _unmount(mount: str) -> None:
    subprocess.run(["umount", "--lazy", mount], capture_output=True)
    with contextlib.suppress(OSError):
        os.rmdir(mount)


class PortAllocator:
    """Distinct port ranges per run, so a slow-to-die server never answers for the next run."""

    # Below the kernel's ephemeral range (32768+), where the poller's own client sockets live.
    LOW, HIGH = 12000, 32000

    def __init__(self, start: int | None = None):
        self.next = start or random.randrange(self.LOW, self.HIGH - 5000, 1000)

    def take(self, count: int) -> tuple[int, int]:
        low = self.next
        self.next += ((count + 20) // 100 + 1) * 100
        if self.next > self.HIGH:
            self.next = self.LOW
        return low, low + count + 19


def http_ok(port: int, timeout: float = 1.0) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", "/")
        status = conn.getresponse().status
        conn.close()
        return status < 500
    except (OSError, http.client.HTTPException):
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_ports(ports: list[int], timeout: float, *, on_tick=None, interval: float = 0.02) -> float:
    """Monotonic time at which the last port answered HTTP. A cheap connect first, GET only then."""
    pending = set(ports)
    deadline = time.monotonic() + timeout
    while pending:
        if on_tick:
            on_tick()
        for port in list(pending):
            if port_open(port) and http_ok(port):
                pending.discard(port)
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} port(s) never answered: {sorted(pending)[:10]}")
        time.sleep(interval)
    return time.monotonic()


def stop_tree(proc: subprocess.Popen, timeout: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL for whatever is left of the tree."""
    procs = tree(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running():
                p.kill()
    psutil.wait_procs(procs, timeout=5)
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


@dataclass
class Host:
    """A relocated maestro-runtime host under one temporary folder."""

    root: Path
    port_range: tuple[int, int]
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    bin_dir: Path = BIN  # where maestro-runtime's commands are installed

    @classmethod
    def create(cls, port_range: tuple[int, int], *, bin_dir: Path = BIN, **extra_env: str) -> Host:
        root = Path(tempfile.mkdtemp(prefix="maestro-bench-"))
        root.chmod(0o755)  # service users must traverse to their folders
        (root / "projects").mkdir()
        return cls(root, port_range, dict(extra_env), bin_dir=bin_dir)

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICES", "SVC_", "MAESTRO_"))}
        base["PATH"] = f"{self.bin_dir}:{base.get('PATH', SYSTEM_PATH)}"
        return {
            **base,
            "MAESTRO_TEST_ISOLATED": os.environ.get("MAESTRO_TEST_ISOLATED", ""),
            "MAESTRO_STATE_DIR": str(self.root / "state"),
            "MAESTRO_RUNTIME_DIR": str(self.root / "run"),
            "SUPERVISOR_CONF_DIR": str(self.root / "run" / "conf.d"),
            "MAESTRO_HOME_ROOT": str(self.root / "home"),
            "MAESTRO_PRESEEDED_ROOTS": str(self.root / "projects"),
            "MAESTRO_PORT_RANGE": f"{self.port_range[0]}-{self.port_range[1]}",
            "MAESTRO_SANDBOX_MODE": "off",
            "MAESTRO_FIREWALL_DISABLE": "1",
            "ENTRYPOINT_LOG_LEVEL": "info",
            **self.extra_env,
        }

    @property
    def log_path(self) -> Path:
        return self.root / "boot.log"

    def preseed(self, names: list[str], ports: list[int] | None = None) -> list[Path]:
        """Static projects; with ``ports``, each gets a fixed .maestro-port (so the poller knows them)."""
        folders = []
        for i, name in enumerate(names):
            folder = self.root / "projects" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "index.html").write_text(f"<h1>{name}</h1>")
            if ports:
                (folder / ".maestro-port").write_text(f"{ports[i]}\n")
            folders.append(folder)
        return folders

    def start(self, **env: str) -> subprocess.Popen:
        log = self.log_path.open("a")
        self.proc = subprocess.Popen([str(self.bin_dir / "maestro-entrypoint")], env={**self.env, **env}, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self.proc

    def cli(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], env={**self.env, **env}, capture_output=True,
                              text=True, timeout=timeout)

    def exec_done(self) -> bool:
        """The entrypoint has exec'd into the supervisord parent: provisioning is over."""
        if self.proc is None:
            return False
        try:
            return "maestro_runtime.engine.parent" in " ".join(psutil.Process(self.proc.pid).cmdline())
        except psutil.Error:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        return stop_tree(self.proc) if self.proc else None

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class BareHost:
    """The floor: bare supervisord with hand-written program files for the same commands."""

    root: Path
    proc: subprocess.Popen | None = None
    bin_dir: Path = BIN  # supervisord and supervisorctl from the same install as the maestro side

    @classmethod
    def create(cls, dirs: list[Path], ports: list[int], *, bin_dir: Path = BIN) -> BareHost:
        root = Path(tempfile.mkdtemp(prefix="maestro-floor-"))
        conf_d = root / "conf.d"
        conf_d.mkdir()
        python = shutil.which("python3", path=SYSTEM_PATH) or "python3"
        (root / "supervisord.conf").write_text(
            f"[unix_http_server]\nfile={root}/s.sock\nchmod=0700\n"
            f"[supervisord]\nnodaemon=true\nuser=root\nlogfile=/dev/null\nlogfile_maxbytes=0\n"
            f"pidfile={root}/pid\nchildlogdir={root}\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl=unix://{root}/s.sock\n"
            f"[include]\nfiles={conf_d}/*.conf\n"
        )
        for i, (folder, port) in enumerate(zip(dirs, ports, strict=True)):
            (conf_d / f"p{i}.conf").write_text(
                f"[program:p{i}]\ncommand={python} -m http.server {port} --directory {folder} --bind 0.0.0.0\n"
                "autorestart=true\nstartsecs=1\nstopasgroup=true\nkillasgroup=true\n"
                "stdout_logfile=NONE\nstderr_logfile=NONE\n"
            )
        return cls(root, bin_dir=bin_dir)

    def start(self) -> subprocess.Popen:
        argv = [str(self.bin_dir / "supervisord"), "-n", "-c", str(self.root / "supervisord.conf")]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return self.proc

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / "supervisorctl"), "-c", str(self.root / "supervisord.conf"), *args],
                              capture_output=True, text=True, timeout=60)

    def destroy(self) -> None:
        if self.proc:
            with contextlib.suppress(Exception):
                stop_tree(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
        m, lo, hi = (v * scale for v in (self.median, self.low, self.high))
        return f"{m:.{digits}f} {unit} ({lo:.{digits}f}-{hi:.{digits}f})"
