"""State that is corrupt or full fails small, and nothing outlives a stopped boot.

Real boots (real users, supervisord, HTTP) in the test's own folder: unusable service
records and port ledgers, a full state disk (a small tmpfs in the session's private mount
namespace), SIGTERM while a git fetch stalls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.httpserver import FixtureServer, Route
from tests.integration.conftest import http_get, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real users and supervisord")]


def _state(maestro) -> Path:
    return Path(maestro.env["MAESTRO_STATE_DIR"])


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def _deploy(maestro, name: str) -> None:
    out = maestro.run("deploy", "--repo", str(maestro.source(name)), "--name", name, "--yes")
    assert f"deployed {name}: RUNNING" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- unusable records


def test_unusable_records_fail_small_and_are_rebuilt_from_their_specs(maestro):
    for name in ("torn", "listed", "folder"):
        maestro.preseed(name)
    maestro.boot()
    _deploy(maestro, "runtime")
    maestro.wait_running(["torn", "listed", "folder", "runtime"])
    ports = {name: svc["port"] for name, svc in maestro.services().items()}
    assert maestro.stop() == 0

    records = _state(maestro) / "services"
    text = (records / "torn.json").read_text()
    (records / "torn.json").write_text(text[: len(text) // 2])  # a crash mid-write elsewhere
    (records / "listed.json").write_text("[]")
    (records / "folder.json").unlink()
    (records / "folder.json").mkdir()
    (records / "runtime.json").write_text("{")  # deployed at run time: no spec to rebuild it from

    # Commands keep working with the unusable records, and say which file is wrong.
    listed = maestro.run("list-services")
    _no_traceback(listed.stdout, listed.stderr)
    for name in ("torn", "listed", "folder", "runtime"):
        assert f"{records / name}.json: unreadable service record" in listed.stderr

    maestro.boot()
    services = maestro.wait_running(["torn", "listed", "folder"])
    for name in ("torn", "listed", "folder"):
        assert f"<h1>{name}</h1>" in http_get(services[name]["port"])
        assert services[name]["port"] == ports[name]  # the ledger still holds its port
    log = maestro.log()
    _no_traceback(log)
    for name in ("torn", "listed", "folder"):
        line = next(ln for ln in log.splitlines() if f"{name}.json: unreadable service record" in ln)
        assert f"service {name} is provisioned afresh from its spec" in line
    runtime = maestro.services()["runtime"]
    assert runtime["status"] == "FAILED"
    assert f"{records / 'runtime'}.json: unreadable service record" in runtime["error"]
    assert sorted(p.name.split(".corrupt-")[0] for p in records.glob("*.corrupt-*")) == [
        "folder.json", "listed.json", "runtime.json", "torn.json"]  # kept for the operator

    # The failed one is removable; the others keep running.
    removed = maestro.run("remove-service", "runtime", "--yes")
    _no_traceback(removed.stdout, removed.stderr)
    assert "runtime" not in maestro.services()
    assert maestro.proc.poll() is None


def test_remove_service_with_an_unusable_record(maestro):
    maestro.boot()
    _deploy(maestro, "gone")
    port = maestro.services()["gone"]["port"]
    records = _state(maestro) / "services"
    (records / "gone.json").write_text("[]")
    out = maestro.run("remove-service", "gone", "--yes")
    _no_traceback(out.stdout, out.stderr)
    assert "removed gone" in out.stdout and "gone.json" in out.stdout
    assert not (records / "gone.json").exists()
    assert "gone" not in json.loads((_state(maestro) / "ports.json").read_text())
    assert not (Path(maestro.env["SUPERVISOR_CONF_DIR"]) / "gone.conf").exists()
    wait_for(lambda: _refused(port), 10, what="the removed service to stop")


def _refused(port: int) -> bool:
    try:
        http_get(port, timeout=1)
    except OSError:
        return True
    return False


# ---------------------------------------------------------------- unusable ledger


@pytest.mark.parametrize("damage", ["torn", "list", "directory"])
def test_unusable_port_ledger_is_rebuilt_and_commands_keep_working(maestro, damage):
    maestro.preseed("alpha")
    maestro.preseed("beta")
    maestro.boot()
    _deploy(maestro, "gamma")
    before = {n: s["port"] for n, s in maestro.services().items()}
    ledger = _state(maestro) / "ports.json"

    def spoil() -> None:
        if ledger.is_dir():
            ledger.rmdir()
        else:
            ledger.unlink()
        if damage == "torn":
            ledger.write_text('{"alpha": 80')
        elif damage == "list":
            ledger.write_text("[]")
        else:
            ledger.mkdir()

    spoil()
    listed = maestro.run("list-services")
    _no_traceback(listed.stdout, listed.stderr)
    removed = maestro.run("remove-service", "gamma", "--yes")
    _no_traceback(removed.stdout, removed.stderr)
    assert "removed gamma" in removed.stdout
    assert "port ledger" in removed.stderr and "rebuilt from the service records" in removed.stderr
    assert json.loads(ledger.read_text()) == {"alpha": before["alpha"], "beta": before["beta"]}

    assert maestro.stop() == 0
    spoil()
    maestro.boot()
    services = maestro.wait_running(["alpha", "beta"])
    assert {n: services[n]["port"] for n in ("alpha", "beta")} == {"alpha": before["alpha"], "beta": before["beta"]}
    log = maestro.log()
    _no_traceback(log)
    assert f"port ledger {ledger}" in log and "rebuilt from the service records" in log


# ---------------------------------------------------------------- full state disk


def _fill(folder: Path) -> Path:
    """Write until not one more byte fits."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def test_full_state_disk_gives_one_line_errors_and_no_half_removal(maestro):
    state = _state(maestro)
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(state)], check=True)
    try:
        maestro.preseed("one")
        maestro.preseed("two")
        maestro.boot()
        maestro.wait_running(["one", "two"])
        records = state / "services"
        ledger_before = (state / "ports.json").read_text()
        filler = _fill(state)

        # remove-service: all or nothing; here nothing, with one line saying why.
        proc = maestro.run("remove-service", "one", "--yes", check=False)
        _no_traceback(proc.stdout, proc.stderr)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].startswith("Error: ")
        assert "No space left on device" in proc.stderr and str(state / "ports.json") in proc.stderr
        assert (records / "one.json").is_file() and (state / "ports.json").read_text() == ledger_before
        assert (Path(maestro.env["SUPERVISOR_CONF_DIR"]) / "one.conf").is_file()
        assert maestro.services()["one"]["status"] == "RUNNING"

        proc = maestro.run("deploy", "--repo", str(maestro.source("three")), "--name", "three", "--yes",
                           check=False)
        _no_traceback(proc.stdout, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 1 and "No space left on device" in last and str(state) in last, last

        # A boot on the full disk: one line per failure, no traceback, the rest still comes up.
        assert maestro.stop() == 0
        maestro.boot()
        log = maestro.log()
        _no_traceback(log, maestro.run("list-services").stderr)
        assert maestro.proc.poll() is None

        # Space again: the removal goes through whole.
        filler.unlink()
        proc = maestro.run("remove-service", "one", "--yes")
        assert "removed one" in proc.stdout
        assert not (records / "one.json").exists() and "one" not in json.loads((state / "ports.json").read_text())
    finally:
        maestro.stop()
        subprocess.run(["umount", "-l", str(state)], check=False)


# ---------------------------------------------------------------- SIGTERM while provisioning


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and status != "Z":
            found.append(f"{entry}: {cmdline}")
    return found


def test_sigterm_while_a_git_fetch_stalls_leaves_no_process(maestro):
    gate = threading.Event()
    with FixtureServer() as server:
        # git's remote helper asks for the refs and waits for an answer that does not come.
        server.routes["/stall.git/info/refs?service=git-upload-pack"] = Route(body=b"", gate=gate)
        url = server.url("/stall.git")
        try:
            maestro.boot(wait=False, SERVICES=f"{url}|||stall")
            wait_for(lambda: any("remote-http" in p for p in _processes_naming(url)), 30,
                     what="git's remote helper to ask for the refs")
            time.sleep(0.3)
            maestro.proc.send_signal(signal.SIGTERM)
            code = maestro.proc.wait(20)
            assert code != 0
            time.sleep(0.2)
            assert not _processes_naming(url), _processes_naming(url)
            _no_traceback(maestro.log())
        finally:
            gate.set()


# ---------------------------------------------------------------- read-only runtime dir


def test_read_only_runtime_dir_falls_back_to_the_state_dir(maestro):
    """Docker's --read-only mounts no tmpfs on /run: the runtime files go to the state dir, one
    line says so, and every command (and the healthcheck) finds the socket there."""
    ro = maestro.root / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        configured = ro / "maestro"
        maestro.env.update(MAESTRO_RUNTIME_DIR=str(configured), SUPERVISOR_CONF_DIR=str(configured / "conf.d"))
        maestro.preseed("site")
        maestro.boot(wait=False)
        wait_for(lambda: maestro.run("list-services", "--json", check=False).returncode == 0
                 and not maestro.run("list-services", "--json").stderr, 60, what="supervisord to answer")
        services = maestro.wait_running(["site"])
        assert "<h1>site</h1>" in http_get(services["site"]["port"])
        fallback = _state(maestro) / "run"
        assert (fallback / "control" / "supervisor.sock").exists()
        assert (fallback / "conf.d" / "site.conf").exists()
        log = maestro.log()
        _no_traceback(log)
        (line,) = [ln for ln in log.splitlines() if "read-only file system" in ln]
        assert str(configured) in line and str(fallback) in line
        health = maestro.run("python3", "-I", "-S", str(Path(__file__).resolve().parents[2] / "healthcheck"
                                                        / "healthcheck.py"), check=False)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        maestro.stop()
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_sigterm_to_deploy_while_a_git_fetch_stalls_leaves_no_process(maestro):
    gate = threading.Event()
    with FixtureServer() as server:
        server.routes["/stall.git/info/refs?service=git-upload-pack"] = Route(body=b"", gate=gate)
        url = server.url("/stall.git")
        try:
            proc = subprocess.Popen(["deploy", "--repo", url, "--name", "stall", "--yes"], env=maestro.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_for(lambda: any("remote-http" in p for p in _processes_naming(url)), 30,
                     what="git's remote helper to ask for the refs")
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
            assert proc.returncode != 0
            time.sleep(0.2)
            assert not _processes_naming(url), _processes_naming(url)
            _no_traceback(err)
        finally:
            gate.set()
