"""Many small projects with real builds, all provisioned at once in one boot (ops/reconcile.py).

Python projects install a local wheel (no network), Node projects run ``npm ci`` on a lock with no
dependencies, static sites build nothing; MAESTRO_BUILD_JOBS lets every build begin together, so
whatever the build path shares between threads is raced. A stress test, not a reproducer: the
race once found (uv's binary lookup on Python 3.11, sources/uvbin.py, a service failing with
``TypeError('can only concatenate str (not "NoneType") to str')``) has a window of a few
milliseconds, which this boot did not hit in 3 tries unfixed (accounts are made one at a time,
so builds start apart); tests/unit/test_uv_threads.py reproduces that one every time.
"""

from __future__ import annotations

import json

from fixtures.wheels import make_wheel

from .conftest import http_get

PY_APP = (
    "import http.server, os, maestrodemo\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = (maestrodemo.GREETING + ' ' + os.path.basename(os.getcwd())).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)
NODE_APP = ("require('http').createServer((q, s) => s.end('node ' + require('path').basename(process.cwd())))"
            ".listen(Number(process.env.PORT), '0.0.0.0');\n")


def test_mixed_projects_built_in_parallel_all_start(maestro):
    wheels = maestro.root / "wheels"
    make_wheel(wheels)
    wheels.chmod(0o755)
    python = [f"py{i}" for i in range(6)]
    node = [f"node{i}" for i in range(2)]
    static = [f"site{i}" for i in range(2)]
    for name in python:
        folder = maestro.preseed(name, cmd="python app.py")
        (folder / "index.html").unlink()
        (folder / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\nmaestrodemo==1.0\n")
        (folder / "app.py").write_text(PY_APP)
    for name in node:
        folder = maestro.preseed(name)
        (folder / "index.html").unlink()
        package = {"name": name, "version": "1.0.0", "scripts": {"start": "node server.js"}}
        (folder / "package.json").write_text(json.dumps(package))
        (folder / "package-lock.json").write_text(json.dumps({
            "name": name, "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": name, "version": "1.0.0"}}}))
        (folder / "server.js").write_text(NODE_APP)
    for name in static:
        maestro.preseed(name)
    maestro.boot(MAESTRO_BUILD_JOBS="10", ENTRYPOINT_LOG_LEVEL="debug")
    names = python + node + static
    try:
        services = maestro.wait_running(names, timeout=240)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{maestro.log()[-6000:]}") from None
    log = maestro.log()
    assert "internal error" not in log and "Traceback" not in log, log[-6000:]
    for name in python:
        assert http_get(services[name]["port"]) == f"hello from a local wheel {name}"
    for name in node:
        assert http_get(services[name]["port"]) == f"node {name}"
    for name in static:
        assert f"<h1>{name}</h1>" in http_get(services[name]["port"])
