"""A build that prints far more than its log holds: the log on disk stays bounded (its head, one
marker saying how many bytes were left out, its end), the build still succeeds, a failing one's
error still quotes its last lines, ``maestro logs --build`` shows the end, and the sandbox's
egress summary (written by the wrapper after the build's own output) still reaches the log.

Before, the log file was the build's stdout: 60 MB printed made a 60 MB log (20 GB, 20 GB).
Real bubblewrap, real users, real proxy over loopback; a real boot and the CLI for the first two.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from maestro_runtime.sources.buildlog import LAYOUT
from maestro_runtime.sources.buildplan import BuildError, Plan
from maestro_runtime.sources.buildrun import PIPE_SIZE

from .test_sandbox_real import _env, _policy, _server, users  # noqa: F401 (users is a fixture)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")]

REPO = Path(__file__).resolve().parents[2]
BOUND = LAYOUT.cap + PIPE_SIZE  # the cap, plus at most one read from the pipe
LOUD = "yes 'a line of a loud build, one of very many' | head -n 1500000"  # 70 MB


def _bounded(log: Path) -> str:
    assert log.stat().st_size <= BOUND, log.stat().st_size
    text = log.read_text(errors="replace")
    assert " bytes of this build log left out here" in text
    return text


def test_a_loud_build_succeeds_with_a_bounded_log_that_ends_as_the_build_did(maestro):
    src = maestro.root / "sources" / "loud"
    src.mkdir(parents=True)
    (src / "railway.json").write_text(json.dumps({
        "build": {"buildCommand": f"echo the first line; {LOUD}; echo the last line of the build"},
        "deploy": {"startCommand": "python3 -m http.server $PORT"}}))
    (src / "index.html").write_text("x")
    maestro.boot(SERVICES=f"{src}|||loud", MAESTRO_SANDBOX_MODE="require")
    svc = maestro.wait_running(["loud"], timeout=120)["loud"]
    assert svc["sandbox"]["sandbox"] == "bubblewrap", svc["sandbox"]
    text = _bounded(maestro.root / "state" / "builds" / "loud.build.log")
    assert "the first line" in text[: LAYOUT.head]
    assert text.rstrip().splitlines()[-2:] == ["the last line of the build", text.rstrip().splitlines()[-1]]
    assert text.rstrip().splitlines()[-1].startswith("# exit 0 after ")
    shown = maestro.run("maestro", "logs", "loud", "--build", "-n", "2").stdout.splitlines()
    assert shown[0] == "the last line of the build" and shown[1].startswith("# exit 0 after "), shown
    steps = (maestro.root / "state" / "builds" / "loud.build.steps").read_text().splitlines()
    assert steps[0] == "# maestro: build step" and steps[-1].startswith("# exit 0 after "), steps


def test_a_loud_failing_release_quotes_its_last_lines(maestro):
    bad = maestro.root / "sources" / "fails"
    bad.mkdir(parents=True)
    (bad / "index.html").write_text("x")
    (bad / "Procfile").write_text(f"release: {LOUD}; echo why it failed; exit 3\n")
    maestro.boot(MAESTRO_SANDBOX_MODE="require")
    done = maestro.run("deploy", "--repo", str(bad), "--name", "fails", "--cmd", "python3 -m http.server $PORT",
                       "--yes", "--wait", "0", check=False)
    assert done.returncode == 1 and "release phase failed (exit 3)" in done.stderr, done.stderr[-2000:]
    mark = "[maestro][error] | "  # deploy's lines quoting the log
    quoted = [line.partition(mark)[2] for line in done.stderr.splitlines() if mark in line]
    assert quoted[-2] == "why it failed" and quoted[-1].startswith("# exit 3 after "), quoted[-5:]
    _bounded(maestro.root / "state" / "builds" / "fails.build.log")


# Prints 60 MB, then asks an allowed host through the sandbox's proxy (the only way out of its
# network namespace), then its last line; exits with argv[2].
STEP = ("import sys, urllib.request\n"
        "block = ''.join(f'line {i} of a build printing a lot\\n' for i in range(10000))\n"
        "for _ in range(180):\n"
        "    sys.stdout.write(block)\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
        "print('the last line', flush=True)\n"
        "sys.exit(int(sys.argv[2]))\n")


@pytest.mark.skipif(not os.environ.get("MAESTRO_TEST_ISOLATED"), reason="needs the private /etc")
@pytest.mark.parametrize("code", [0, 4], ids=["succeeds", "fails"])
def test_the_egress_summary_follows_the_output_into_a_bounded_log(tmp_path, users, code):  # noqa: F811
    from maestro_runtime.sandbox import policy as sandbox
    from maestro_runtime.settings import Settings
    from maestro_runtime.sources import buildrun
    from maestro_runtime.sources.builds import BuildOptions

    hosts = Path("/etc/hosts")
    saved = hosts.read_text()
    hosts.write_text(saved + "\n127.0.0.1 allowed.maestro.test\n")
    srv = _server()
    port = srv.getsockname()[1]
    try:
        allow = _policy(tmp_path, f"ALLOW_HOST_NETWORK=1\nallowed.maestro.test:{port}\n")
        env = _env(tmp_path, MAESTRO_SANDBOX_NET_POLICY="allow", MAESTRO_SANDBOX_NET_ALLOW_FILE=str(allow))
        policy = sandbox.SandboxPolicy(sandbox.SandboxConfig.from_settings(Settings.from_env(env)))
        if not policy.sandboxed()[0]:
            pytest.skip("bubblewrap cannot sandbox here")
        me = users[0]
        home = Path(me.pw_dir)
        account = SimpleNamespace(user=me.pw_name, uid=me.pw_uid, gid=me.pw_gid, home=home,
                                  cache_dir=home / ".cache", tmp_dir=home / "tmp", venv_dir=home / ".maestro" / "venv")
        (tmp_path / "builds").mkdir(mode=0o700)
        logfile = tmp_path / "builds" / "web.build.log"
        opts = BuildOptions(log_dir=tmp_path / "builds", operator_pythonpath=str(REPO))
        plan = Plan("build step", (), (("python3", "-c", STEP, f"http://allowed.maestro.test:{port}/", str(code)),),
                    home / "stamp", ())
        try:
            buildrun.run_plan(plan, home / "project", account, policy, opts, logfile)
            error = None
        except BuildError as exc:
            error = str(exc)
    finally:
        srv.close()
        hosts.write_text(saved)
    lines = _bounded(logfile).splitlines()
    assert "line 0 of a build printing a lot" in lines[:3]  # the head, as written
    end = lines[-4:]
    assert end[:2] == ["ok", "the last line"], end
    assert end[2] == (f"maestro-sandbox: egress: 1 connection to 1 host via proxy (allowed.maestro.test:{port} x1), "
                      "0 refused"), end
    assert end[3].startswith(f"# exit {code} after "), end
    if code:
        assert error is not None and "build step build failed (exit 4)" in error
        assert error.splitlines()[-4:] == end, error[-1000:]
    else:
        assert error is None
