"""The exact Python a project pins, installed by ``uv python install`` from a loopback mirror
(a genuine interpreter archive in python-build-standalone's layout, checked by its sha256),
and the fallback with a warning naming both when the install source cannot serve it.

A real boot, real uv, real service users; the mirror and the project are ours.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas, pythons
from integration.conftest import http_get as _http_get
from integration.conftest import wait_for

pytestmark = pytest.mark.integration

PROJECT = {"requirements.txt": "", "main.py": paas.PY_SERVER.format(
    name="pinned", extra='"python " + sys.version.split()[0] + " " + sys.prefix')}


def http_get(port: int) -> str:
    return wait_for(lambda: _http_get(port), 30, what=f"an answer on port {port}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BUILD = pythons.pyenv_build("3.13")


@pytest.mark.skipif(BUILD is None, reason="no pyenv 3.13 with a shared libpython to make an archive from")
def test_pinned_python_is_installed_from_the_mirror(maestro):
    listing, version = pythons.mirror_folder(BUILD, maestro.root / "mirror" / "files")
    mirror = pythons.StaticServer(maestro.root / "mirror" / "files")
    try:
        uv = paas.uv_binary(maestro.root / "bin")
        src = paas.write(maestro.root / "sources" / "pinned", {**PROJECT, ".python-version": "3.13\n"})
        installs = maestro.root / "pythons"
        maestro.boot(SERVICES=f"{src}|||pinned", MAESTRO_UV=str(uv), MAESTRO_PYTHON_INSTALL_MIRROR=mirror.url,
                     MAESTRO_PYTHON_DOWNLOADS_JSON_URL=str(listing), MAESTRO_PYTHON_INSTALL_DIR=str(installs))
        port = maestro.wait_running(["pinned"], timeout=240)["pinned"]["port"]
        answer = http_get(port)
        assert answer.startswith(f"pinned python {version} "), answer
        # uv asked the mirror for python-build-standalone's path (UV_PYTHON_INSTALL_MIRROR), nothing else
        assert [p for p in mirror.paths if p.endswith(".tar.gz")] == [
            f"/{pythons.RELEASE}/cpython-{version}+{pythons.RELEASE}-x86_64-unknown-linux-gnu-install_only.tar.gz"]
        assert "installed Python 3.13 in" in maestro.log()
        assert "which is not here" not in maestro.log()
        # root's, shared, read-only for services
        folder = installs / f"cpython-{version}-linux-x86_64-gnu"
        info = folder.stat()
        assert info.st_uid == 0 and info.st_mode & 0o022 == 0 and installs.stat().st_mode & 0o777 == 0o755
        assert not any(p.stat().st_mode & 0o002 for p in installs.rglob("*") if not p.is_symlink())

        # The next boot finds it installed: no download.
        maestro.stop()
        asked = len(mirror.paths)
        maestro.proc = None
        maestro.boot()
        port = maestro.wait_running(["pinned"], timeout=60)["pinned"]["port"]
        assert http_get(port).startswith(f"pinned python {version} ")
        assert len(mirror.paths) == asked
    finally:
        mirror.close()


def test_install_source_that_cannot_serve_falls_back_with_a_warning_naming_both(maestro):
    """A mirror nobody answers on (3.12.8 is in uv's own download list, so uv asks it): the install
    fails (bounded), the build goes on with the newest interpreter here, and the warning names the
    pin, the version used and the failure."""
    uv = paas.uv_binary(maestro.root / "bin")
    src = paas.write(maestro.root / "sources" / "fallback", {**PROJECT, ".python-version": "3.12.8\n"})
    mirror = f"http://127.0.0.1:{closed_port()}"
    maestro.boot(SERVICES=f"{src}|||fallback", MAESTRO_UV=str(uv), MAESTRO_PYTHON_INSTALL_MIRROR=mirror,
                 MAESTRO_PYTHON_INSTALL_DIR=str(maestro.root / "pythons"), MAESTRO_PYTHON_INSTALL_TIMEOUT="60")
    port = maestro.wait_running(["fallback"], timeout=240)["fallback"]["port"]
    answer = http_get(port)
    assert answer.startswith("pinned python 3."), answer
    used = answer.split()[2]
    line = next(x for x in maestro.log().splitlines() if "pins Python 3.12.8" in x)
    assert f"using {used}" in line and f"installing Python 3.12.8 from {mirror}" in line, line
    assert "Connection refused" in line, line
