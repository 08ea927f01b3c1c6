"""The spec's environment and the build's never reach a root process (real boots, real library).

The attacker is the service: it names a library of its own folder in ``env: LD_PRELOAD`` or leaves
a ``.pth`` in its home's user site-packages. A constructor in that library (or the .pth) appends
the euid of every process that loads it to a marker file: no line may say 0, and the service
itself must still get the variable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures.wheels import make_wheel

from .conftest import http_get

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")]

LIBRARY = r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char exe[256] = "?", line[400];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = 0;
    int len = snprintf(line, sizeof line, "%d %s\n", (int)geteuid(), exe);
    int fd = open(MARKER, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd >= 0) { write(fd, line, len); close(fd); }
}
"""
ECHO_ENV = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = (os.environ.get('LD_PRELOAD', '-') + ' ' + str(os.geteuid())).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)


def _compile(source_dir: Path, marker: Path) -> Path:
    c = source_dir / "evil.c"
    c.write_text(LIBRARY)
    lib = source_dir / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(lib), str(c)], check=True)
    c.unlink()
    return lib


def _lines(marker: Path) -> list[tuple[int, str]]:
    if not marker.exists():
        return []
    return [(int(euid), exe) for euid, exe in (line.split(" ", 1) for line in marker.read_text().splitlines())]


@pytest.mark.parametrize("sandbox_mode", ["off", "auto"])
def test_ld_preload_from_spec_env_never_loads_as_root(maestro, sandbox_mode):
    # The marker lives in the service's home: visible (same path) inside its sandbox too.
    marker = maestro.root / "home" / "svc_evil" / "marker.log"
    project_dir = maestro.root / "state" / "projects" / "evil"
    source = maestro.root / "sources" / "evil"
    source.mkdir(parents=True)
    (source / "app.py").write_text(ECHO_ENV)
    _compile(source, marker)
    spec = maestro.root / "services.yml"
    spec.write_text(json.dumps({"services": [{
        "name": "evil", "repo": str(source), "cmd": "python3 app.py",
        "env": {"LD_PRELOAD": f"{project_dir}/evil.so", "LD_LIBRARY_PATH": str(project_dir)},
    }]}))
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec), MAESTRO_SANDBOX_MODE=sandbox_mode)
    services = maestro.wait_running(["evil"])
    reply = http_get(services["evil"]["port"])
    preload, euid = reply.split()
    assert preload == f"{project_dir}/evil.so" and euid != "0"  # the service still gets its variable
    lines = _lines(marker)
    assert all(euid != 0 for euid, _ in lines), f"loaded as root: {[x for x in lines if x[0] == 0]}"
    assert any(exe.endswith(("python3", "python3.11")) for _, exe in lines), lines  # the library works


def test_user_site_pth_in_home_never_runs_as_root_during_a_build(maestro):
    """A build runs root's sandbox wrapper (Python): it must not see the service's HOME, where the
    service may have left ~/.local/lib/pythonX.Y/site-packages/evil.pth."""
    marker = maestro.root / "markers" / "pth.log"
    marker.parent.mkdir()
    marker.parent.chmod(0o1777)
    user = "svc_pth"
    version = sysconfig.get_python_version()
    site = maestro.root / "home" / user / ".local" / "lib" / f"python{version}" / "site-packages"
    site.mkdir(parents=True)
    (site / "evil.pth").write_text(
        f"import os; open({str(marker)!r}, 'a').write(str(os.geteuid()) + '\\n')\n")
    wheels = maestro.root / "wheels"
    make_wheel(wheels)
    wheels.chmod(0o755)
    folder = maestro.preseed("pth", cmd="python app.py")
    (folder / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\nmaestrodemo==1.0\n")
    (folder / "app.py").write_text(ECHO_ENV.replace("import http.server, os", "import http.server, os, maestrodemo"))
    maestro.boot()
    maestro.wait_running(["pth"], timeout=120)
    # The service's own build processes (as the service's user) may load it; root never.
    euids = marker.read_text().split() if marker.exists() else []
    assert "0" not in euids, f"the service's .pth ran as root: {euids}"


def test_degraded_identity_builds_and_serves_a_project_with_dependencies(maestro):
    """--cap-drop ALL: no CAP_SETUID/SETGID/CHOWN, so no account is made (degraded identity). The
    build used to ask for the account by name: ``maestro-sandbox: no such user: 'svc_NAME'``."""
    wheels = maestro.root / "wheels"
    make_wheel(wheels)
    folder = maestro.preseed("deps", cmd="python app.py")
    (folder / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\nmaestrodemo==1.0\n")
    (folder / "app.py").write_text(ECHO_ENV.replace("os.environ.get('LD_PRELOAD', '-')", "maestrodemo.GREETING")
                                   .replace("import http.server, os", "import http.server, os, maestrodemo"))
    log = maestro.log_path.open("a")
    # Every capability gone from the bounding set: root keeps uid 0 but no privilege, like Docker's
    # --cap-drop ALL (setpriv execs, so the fixture's SIGTERM still reaches the entrypoint).
    maestro.proc = subprocess.Popen(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--",
                                     "maestro-entrypoint"], env=maestro.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        services = maestro.wait_running(["deps"], timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{maestro.log()[-1500:]}") from None
    assert services["deps"]["degraded"], services["deps"]
    assert http_get(services["deps"]["port"]) == "hello from a local wheel 0", maestro.log()
    assert "no such user" not in maestro.log()
