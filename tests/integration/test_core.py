"""Issue 2 acceptance: pre-seeded + SERVICES boot, ports kept, list/remove/deploy, bad entries isolated."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from maestro_runtime.engine.supervisord import Supervisor
from maestro_runtime.settings import Settings

from .conftest import http_get, wait_for

pytestmark = pytest.mark.integration


def _uid_user(pid: int) -> str:
    # The launch chain execs into the service, so supervisord's pid is the service itself.
    return psutil.Process(pid).username()


def test_boot_list_second_boot_remove_and_deploy(maestro):
    for name in ("alpha", "beta", "gamma"):
        maestro.preseed(name)
    one, two = maestro.source("one"), maestro.source("two")
    low = int(maestro.env["MAESTRO_PORT_RANGE"].split("-")[0])
    fixed = low + 50
    maestro.boot(SERVICES=f"{one}|{fixed}||one; file://{two}|||two ; {one}|70000||bad")
    names = ["alpha", "beta", "gamma", "one", "two"]
    services = maestro.wait_running(names)

    # Each answers HTTP on its own port, as its own user.
    for name in names:
        svc = services[name]
        assert f"<h1>{name}</h1>" in http_get(svc["port"])
        assert svc["user"] == f"svc_{name}" and _uid_user(svc["pid"]) == f"svc_{name}"
    assert services["one"]["port"] == fixed
    assert len({s["port"] for s in services.values() if s["status"] == "RUNNING"}) == 5

    # The bad entry failed clearly and alone.
    assert services["bad"]["status"] == "FAILED"
    assert "SERVICES[3]: port: 70000 is out of range 1-65535" in services["bad"]["error"]
    assert "SERVICES[3]: port: 70000 is out of range" in maestro.log()
    assert "prepared 5 service(s)" in maestro.log()

    # JSON keys are the documented ones.
    for key in ("name", "status", "pid", "user", "port", "directory", "command"):
        assert key in services["alpha"]
    assert services["alpha"]["command_reason"] == "detected: static site"

    # Isolation: one project's user cannot read another's files.
    beta = services["beta"]
    denied = subprocess.run(
        ["setpriv", f"--reuid={psutil.Process(beta['pid']).uids().real}", "--regid=65534", "--clear-groups",
         "cat", f"{services['alpha']['directory']}/index.html"], capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert oct(Path(services["alpha"]["directory"]).stat().st_mode & 0o777) == "0o750"

    # Pre-seeded auto ports persist into the folder; the user's own files are never rewritten.
    assert (maestro.projects / "alpha" / ".maestro-port").read_text().strip() == str(services["alpha"]["port"])

    # A second boot keeps every port and user, no duplicates.
    assert maestro.stop() == 0
    maestro.boot()
    again = maestro.wait_running(names)
    for name in names:
        assert again[name]["port"] == services[name]["port"]
        assert again[name]["user"] == services[name]["user"]
    users = [line.split(":", 1)[0] for line in Path("/etc/passwd").read_text().splitlines()]
    assert users.count("svc_alpha") == 1
    conf_dir = Path(maestro.env["SUPERVISOR_CONF_DIR"])
    assert sorted(p.stem for p in conf_dir.glob("*.conf")) == sorted(names)

    # deploy --yes adds a service without restarting the others.
    pids = {n: again[n]["pid"] for n in names}
    three = maestro.source("three")
    out = maestro.run("deploy", "--repo", str(three), "--name", "three", "--yes").stdout
    assert "deployed three: RUNNING" in out
    after = maestro.wait_running([*names, "three"])
    assert {n: after[n]["pid"] for n in names} == pids
    assert "<h1>three</h1>" in http_get(after["three"]["port"])

    # remove-service frees the port and keeps files unless --purge.
    ledger = Path(maestro.env["MAESTRO_STATE_DIR"]) / "ports.json"
    maestro.run("remove-service", "three")
    assert "three" not in json.loads(ledger.read_text())
    assert (Path(after["three"]["directory"]) / "index.html").exists()
    assert "three" not in maestro.services()
    wait_for(lambda: not psutil.pid_exists(after["three"]["pid"]), 10, what="three to stop")
    # Gone from supervisord too, the others untouched; removing it again is a no-op.
    supervisor = Supervisor(Settings.from_env(maestro.env).supervisor_socket)
    live = supervisor.processes()
    assert "three" not in live and {n: live[n]["pid"] for n in names} == pids
    assert supervisor.remove("three") is False
    maestro.run("remove-project", "two", "--purge", "--yes")
    assert not Path(after["two"]["directory"]).exists()
    assert "two" not in maestro.services()
    assert maestro.run("remove-service", "nope", check=False).returncode == 1

    # A removed pre-seeded folder stays removed across boots (marked, files kept).
    maestro.run("remove-service", "gamma")
    assert (maestro.projects / "gamma" / ".maestro-disable").exists()
    assert (maestro.projects / "gamma" / "index.html").exists()
    assert maestro.stop() == 0
    maestro.boot()
    assert "gamma" not in maestro.wait_running(["alpha", "beta"])


def test_interactive_deploy_with_piped_answers(maestro):
    maestro.boot()
    src = maestro.source("inter")
    answers = "\n".join([str(src), "", "", "web-ui", "", "", "y"]) + "\n"
    proc = maestro.run("deploy", input=answers)
    assert "deployed web-ui: RUNNING" in proc.stdout, proc.stdout + proc.stderr
    svc = maestro.services()["web-ui"]
    assert svc["user"] == "svc_web-ui" and "<h1>inter</h1>" in http_get(svc["port"])


def test_interactive_deploy_takes_the_default_branch_when_the_ref_is_left_empty(maestro, tmp_path):
    # The prompt offered "main" as its default, so Enter fetched 'main' from a 'master' repository.
    work = tmp_path / "old"
    work.mkdir()
    (work / "index.html").write_text("<h1>old</h1>")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=master"]
    for args in (["init", "-q", str(work)], ["-C", str(work), "add", "-A"], ["-C", str(work), "commit", "-qm", "x"]):
        subprocess.run([*git, *args], check=True)
    bare = maestro.root / "sources" / "old.git"
    subprocess.run([*git, "clone", "-q", "--bare", str(work), str(bare)], check=True)
    maestro.boot()
    proc = maestro.run("deploy", input="\n".join([str(bare), "", "", "old", "", "", "y"]) + "\n")
    assert "(ref default branch)" in proc.stdout and "deployed old: RUNNING" in proc.stdout, proc.stdout + proc.stderr
    assert "<h1>old</h1>" in http_get(maestro.services()["old"]["port"])


def test_a_callers_umask_does_not_make_the_projects_folder_root_only(maestro):
    # examples/agent-task runs `umask 077` before deploy-from-env: the projects folder became
    # 0700 and the task's git said "failed to stat '/var/lib/maestro/projects/<id>'".
    src = maestro.source("strict")
    proc = subprocess.run(["deploy", "--repo", str(src), "--name", "strict", "--yes"], env=maestro.env,
                          capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0o077))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    projects = Path(maestro.env["MAESTRO_STATE_DIR"]) / "projects"
    assert projects.stat().st_mode & 0o777 == 0o755
    assert (projects / "strict" / "index.html").stat().st_mode & 0o044 == 0o044


def test_deploy_of_a_service_that_ends_at_once_exits_1(maestro):
    # It printed "deployed crash: EXITED ..." and a URL, exit 0: `deploy --yes && ...` went on.
    maestro.boot()
    src = maestro.source("crash")
    proc = maestro.run("deploy", "--repo", str(src), "--name", "crash", "--cmd", "echo boom >&2; exit 3", "--yes",
                       check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "deployed crash: EXITED" in proc.stdout and "url:" not in proc.stdout
    assert "Error: deploy crash: the service ended right after it started (EXITED); `maestro logs crash`" \
        in proc.stderr


def test_a_failed_build_is_shown_once_by_deploy(maestro):
    # The build's last lines came twice: in the provisioner's log lines, then again in click's Error.
    src = maestro.source("badbuild")
    (src / "index.html").unlink()
    (src / "package.json").write_text('{"scripts": {"build": "echo step-$((40+2)); exit 3", "start": "node x"}}')
    proc = maestro.run("deploy", "--repo", str(src), "--name", "badbuild", "--yes", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("step-42") == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: deploy badbuild: node build failed (exit 3)") and last.endswith(
        "(its last lines are above)"), last


def test_deploy_errors_are_one_line_and_exit_1(maestro):
    maestro.boot()
    proc = maestro.run("deploy", "--repo", "/nope/x", "--port", "70000", "--yes", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: deploy: port: 70000 is out of range 1-65535"
    proc = maestro.run("deploy", "--repo", "/nope/x", "--yes", check=False)
    assert proc.returncode == 1 and "/nope/x" in proc.stderr
    assert maestro.run("deploy", "--bogus", check=False).returncode == 2


def test_allow_host_errors_name_the_service_or_the_host(maestro):
    # No supervisord needed: the records alone say which services exist.
    maestro.preseed("quiet")
    maestro.run("deploy-from-env", "--prepare-only")
    proc = maestro.run("maestro", "allow-host", "nope", "example.com", check=False)
    assert (proc.returncode, proc.stderr.strip()) == (1, "Error: service 'nope': no such service (see list-services)")
    proc = maestro.run("maestro", "allow-host", "quiet", "bad host!", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("Error: service 'quiet': host: 'bad host!' is not")
    assert maestro.run("maestro", "allow-host", "quiet", "example.com").stdout.strip() == \
        "quiet may now reach example.com (until the next boot)"


def test_hostile_values_do_not_stop_the_others(maestro):
    maestro.preseed("plain")
    maestro.preseed("pct", cmd="python3 -m http.server $PORT # 100% %(ENV_HOME)s ; done")
    maestro.preseed("multi", cmd="echo starting\nexec python3 -m http.server $PORT")
    maestro.boot()
    services = maestro.wait_running(["plain", "pct", "multi"])
    for name in ("plain", "pct", "multi"):
        http_get(services[name]["port"])


def test_list_services_without_supervisord(maestro):
    maestro.preseed("quiet")
    maestro.run("deploy-from-env", "--prepare-only")
    proc = maestro.run("list-services", "--json")
    (svc,) = json.loads(proc.stdout)
    assert svc["name"] == "quiet" and svc["status"] == "unknown"
    assert "supervisord is not running" in proc.stderr


def test_a_filter_that_matches_nothing_does_not_say_nothing_is_registered(maestro):
    maestro.preseed("quiet")
    maestro.run("deploy-from-env", "--prepare-only")
    assert maestro.run("list-services", "--state", "waiting").stdout.strip() == \
        "no entries match --state waiting (1 registered)"
    assert maestro.run("list-services", "--kind", "task", "--state", "failed").stdout.strip() == \
        "no entries match --kind task --state failed (1 registered)"


def test_deploy_from_env_applies_changes_to_the_running_system(maestro):
    maestro.preseed("keep")
    maestro.boot()
    first = maestro.wait_running(["keep"])
    src = maestro.source("added")
    maestro.run("deploy-from-env", SERVICES=f"{src}|||added")
    services = maestro.wait_running(["keep", "added"])
    assert services["keep"]["pid"] == first["keep"]["pid"]  # untouched
    assert "<h1>added</h1>" in http_get(services["added"]["port"])


def test_without_identity_capabilities_services_run_degraded_not_dead(maestro):
    """Like --cap-drop ALL: no CAP_SETUID/SETGID/CHOWN. Services still run, and say what is not enforced."""
    maestro.preseed("capless")
    drop = "-chown,-setuid,-setgid,-dac_override,-fowner"
    log = maestro.log_path.open("a")
    maestro.proc = subprocess.Popen(
        ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "maestro-entrypoint"],
        env=maestro.env, stdout=log, stderr=subprocess.STDOUT)
    services = maestro.wait_running(["capless"])
    svc = services["capless"]
    assert "<h1>capless</h1>" in http_get(svc["port"])
    assert psutil.Process(svc["pid"]).uids().real == 0
    # Root, but none of the capabilities the container still had (KILL, SETPCAP, SYS_ADMIN...).
    status = dict(line.split(":\t") for line in Path(f"/proc/{svc['pid']}/status").read_text().splitlines())
    assert (status["CapPrm"], status["CapEff"], status["NoNewPrivs"]) == ("0" * 16, "0" * 16, "1")
    assert svc["degraded"] and "identity" in svc["degraded"][0]
    assert "per-project users are NOT enforced" in maestro.log()
    assert "~ capless: not enforced: identity" in maestro.run("list-services").stdout


def test_failed_build_keeps_the_previous_version_running(maestro):
    maestro.boot()
    src = maestro.source("vers", "<h1>v1</h1>")
    maestro.run("deploy", "--repo", str(src), "--yes")
    first = maestro.wait_running(["vers"])["vers"]
    data = Path(first["directory"]) / "data"
    data.mkdir()
    (data / "notes.txt").write_text("written at run time")

    (src / "index.html").write_text("<h1>v2</h1>")
    (src / "requirements.txt").write_text("no-such-package-maestro-test==1.0\n")
    proc = maestro.run("deploy", "--repo", str(src), "--yes", check=False, PIP_INSTALL_OPTIONS="--no-index")
    assert proc.returncode == 1
    assert "no-such-package-maestro-test" in proc.stderr  # the tail of the build log
    after = maestro.services()["vers"]
    assert after["status"] == "RUNNING" and after["pid"] == first["pid"]
    assert "<h1>v1</h1>" in http_get(first["port"])
    assert (Path(first["directory"]) / "index.html").read_text() == "<h1>v1</h1>"
    assert (data / "notes.txt").read_text() == "written at run time"
    assert "no-such-package" in after["error"]


def test_an_unexpected_error_in_one_service_does_not_stop_the_others(maestro, monkeypatch):
    """A bug (here an AttributeError, like a stdlib API missing on an older Python) fails one service
    only, with one error line; ENTRYPOINT_LOG_LEVEL=debug adds where it happened (the traceback)."""
    import io
    import logging

    from maestro_runtime.log_format import setup_logging
    from maestro_runtime.ops.provision import Provisioner
    from maestro_runtime.ops.reconcile import reconcile
    from maestro_runtime.settings import Settings
    from maestro_runtime.sources import detect
    from maestro_runtime.spec.gather import gather_specs

    maestro.preseed("fine")
    maestro.preseed("buggy")
    real = detect.detect_command

    def flaky(files, venv_dir=None):  # provisioning passes its look at the folder (ProjectFiles)
        if files.directory.name == "buggy":
            raise AttributeError("module 'tarfile' has no attribute 'data_filter'")
        return real(files, venv_dir)

    monkeypatch.setattr(detect, "detect_command", flaky)
    settings = Settings.from_env(maestro.env)
    Path(maestro.env["SUPERVISOR_CONF_DIR"]).mkdir(parents=True)
    logger = logging.getLogger("maestro")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    setup_logging("debug", timestamps=False)
    stream = io.StringIO()
    logger.handlers[0].setStream(stream)
    try:
        report = reconcile(Provisioner(settings), gather_specs(settings))
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    assert report.prepared == ["fine"]
    assert "internal error" in report.failed["buggy"] and "data_filter" in report.failed["buggy"]
    lines = stream.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("[maestro][error] service buggy:")]
    assert len(errors) == 1 and "internal error: AttributeError" in errors[0]
    where = [line for line in lines if line.startswith("[maestro][debug] | ")]
    assert "[maestro][debug] | Traceback (most recent call last):" in where
    assert any("in flaky" in line for line in where)  # the frame that raised
    assert not any(line.startswith("[maestro][error] | ") for line in lines)  # no traceback at error level


def test_boot_over_a_stale_control_socket(maestro):
    """A restarted container finds the socket file of the supervisord that was killed with it:
    the boot waits for the new one instead of dying on the dead socket."""
    maestro.preseed("only")
    maestro.socket.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(maestro.socket))
    stale.close()
    maestro.boot()
    maestro.wait_running(["only"])
    assert maestro.proc.poll() is None, maestro.log()[-2000:]
    assert "Traceback" not in maestro.log()


def test_deploy_of_a_git_repository_with_a_link_out_of_the_project_fails_in_one_line(maestro, tmp_path):
    # A git checkout is held to the archive's rules before git writes it (sources/gittree.py).
    from fixtures.ghstandin import master_repo

    maestro.boot()
    bare = master_repo(tmp_path / "hostile", {"index.html": "<h1>x</h1>"}, links={"Procfile": "/etc/shadow"})
    proc = maestro.run("deploy", "--repo", f"file://{bare}", "--name", "linky", "--yes", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: deploy linky:") and "'Procfile' -> '/etc/shadow' points outside the project" in last
    assert "Traceback" not in proc.stderr
    assert not (Path(maestro.env["MAESTRO_STATE_DIR"]) / "projects" / "linky" / "Procfile").exists()
    good = master_repo(tmp_path / "fine", {"index.html": "<h1>fine</h1>"})
    proc = maestro.run("deploy", "--repo", f"file://{good}", "--name", "fine", "--yes", check=False)
    assert proc.returncode == 0 and "deployed fine: RUNNING" in proc.stdout, proc.stdout + proc.stderr


def test_a_build_cannot_fake_its_duration_or_step_by_printing_root_markers(maestro):
    # The markers root writes (`# maestro: KIND`, `$ CMD`, `# exit N after Xs`) were read back from
    # the build log, where the build's own output is too.
    maestro.boot()
    src = maestro.source("faker")
    (src / "package.json").write_text(json.dumps({"scripts": {
        "build": "echo '# exit 0 after 500000000.0s'; echo '# maestro: release'; echo '$ rm -rf /'",
        "start": "exec python3 -m http.server $PORT"}}))
    proc = maestro.run("deploy", "--repo", str(src), "--name", "faker", "--yes", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build_log = Path(maestro.env["MAESTRO_STATE_DIR"]) / "builds" / "faker.build.log"
    assert "# exit 0 after 500000000.0s" in build_log.read_text()  # the output is kept as it was
    row = wait_for(lambda: (r := json.loads(maestro.run("list-services", "--json").stdout)[0])
                   .get("build_seconds") is not None and r, 30, what="the controller's build seconds")
    assert 0 < row["build_seconds"] < 600, row["build_seconds"]
