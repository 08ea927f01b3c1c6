"""Real projects run the way they do on a PaaS (issue 12): each fixture starts for real and answers
HTTP with its own content; each false-success case ends FAILED with the reason.

Builds install from the package registries (the host reaches them); a real boot of the runtime.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import paas
from fixtures.ghstandin import GitHubStandIn, backend_available, master_repo
from integration.conftest import http_get as _http_get
from integration.conftest import wait_for

pytestmark = pytest.mark.integration

BUILD_TIMEOUT = 240


def http_get(port: int) -> str:
    """RUNNING comes a second after start; the app may take a moment more to listen."""
    return wait_for(lambda: _http_get(port), 30, what=f"an answer on port {port}")


def status_of(maestro, name: str, wanted: set[str], timeout: float = BUILD_TIMEOUT) -> dict:
    return wait_for(lambda: (s := maestro.services().get(name)) and s["status"] in wanted and s, timeout,
                    what=f"{name} in {wanted}")


def test_uv_lock_project_and_fastapi_declared_in_a_platform_file(maestro):
    uv = paas.uv_binary(maestro.root / "bin")
    uvapp = paas.uv_project(maestro.root / "sources" / "uvapp", uv)
    fastapi = paas.fastapi_declared(maestro.root / "sources" / "fastapi")
    maestro.boot(SERVICES=f"{uvapp}|||uvapp; {fastapi}|||fastapi", MAESTRO_UV=str(uv))
    services = maestro.wait_running(["uvapp", "fastapi"], timeout=BUILD_TIMEOUT)
    # The lock's six, not the newest one pip would resolve from pyproject's six>=1.10.
    assert http_get(services["uvapp"]["port"]) == "uv-app six 1.16.0\n"
    assert "sync --frozen" in (maestro.root / "state" / "builds" / "uvapp.build.log").read_text()
    body = json.loads(http_get(services["fastapi"]["port"]))
    assert body == {"app": "fastapi-declared", "server": "hypercorn"}
    assert services["fastapi"]["command_reason"] == "detected: railway.json deploy.startCommand"
    assert services["fastapi"]["command"].startswith("hypercorn main:app")


def test_node_build_script_produces_the_server_and_two_locks_stay_untouched(maestro):
    built = paas.node_build_makes_server(maestro.root / "sources" / "built")
    locks = paas.node_two_locks(maestro.root / "sources" / "twolocks")
    shipped = paas.tree_hashes(locks)
    # Tests only: the registry mirror here serves no signatures for corepack to check.
    maestro.boot(SERVICES=f"{built}|||built; {locks}|||twolocks", COREPACK_INTEGRITY_KEYS="0")
    services = maestro.wait_running(["built", "twolocks"], timeout=BUILD_TIMEOUT)
    assert http_get(services["built"]["port"]) == "built-app made by the build, 1m\n"
    assert http_get(services["twolocks"]["port"]) == "two-locks true\n"
    deployed = Path(services["twolocks"]["directory"])
    assert paas.tree_hashes(deployed) == shipped, "a file the project ships was changed by the build"
    assert "yarn" in (maestro.root / "state" / "builds" / "twolocks.build.log").read_text()

    maestro.stop()
    before = maestro.log()
    maestro.proc = None
    maestro.boot()
    services = maestro.wait_running(["built", "twolocks"], timeout=60)
    second = maestro.log()[len(before):]
    assert "twolocks: node dependencies up to date, build skipped" in second
    assert "built: node dependencies up to date, build skipped" in second
    assert "building node" not in second
    assert paas.tree_hashes(deployed) == shipped
    assert http_get(services["twolocks"]["port"]) == "two-locks true\n"


@pytest.mark.skipif(not backend_available(), reason="git http-backend not installed")
def test_blank_ref_is_the_default_branch_master(maestro):
    bare = master_repo(maestro.root / "gh", {"index.html": "<h1>legacy on master</h1>\n"})
    server = GitHubStandIn({"acme/legacy": bare})
    try:
        maestro.boot(SERVICES=f"https://github.com/acme/legacy|||gh; {server.base}/acme/legacy.git|||git",
                     MAESTRO_GITHUB_CODELOAD_URL=server.base, MAESTRO_GITHUB_API_URL=server.base)
        services = maestro.wait_running(["gh", "git"], timeout=60)
        for name in ("gh", "git"):
            assert "legacy on master" in http_get(services[name]["port"])
    finally:
        server.close()


def test_environment_for_every_spec_form(maestro):
    show = '" ".join(f"{k}={os.environ.get(k)}" for k in ("GREETING", "DB", "FROM_FILE", "DOTENV", "PORT_OK"))'
    one = paas.write(maestro.root / "sources" / "envyaml", {
        "main.py": paas.PY_SERVER.format(name="env-yaml", extra=show), ".env": "DOTENV=from-dotenv\nGREETING=dotenv\n",
    })
    two = paas.write(maestro.root / "sources" / "envsvc", {
        "main.py": paas.PY_SERVER.format(name="env-svc", extra=show)})
    (maestro.root / "app.env").write_text("FROM_FILE=file-value\n")
    services_file = maestro.root / "services.yml"
    services_file.write_text(
        f"- repo: {one}\n  name: envyaml\n  env_file: app.env\n  env:\n"
        "    GREETING: hello ${WHO:-nobody}\n    DB: ${DATABASE_URL:?needs a database}\n    PORT_OK: '1'\n")
    maestro.boot(MAESTRO_SERVICES_FILE=str(services_file), WHO="world", DATABASE_URL="sqlite:///x",
                 SERVICES_COUNT="1", SVC_1_REPO=str(two), SVC_1_NAME="envsvc", SVC_1_ENV_GREETING="svc-hi",
                 SVC_1_ENV_PORT="1")
    services = maestro.wait_running(["envyaml", "envsvc"], timeout=60)
    assert http_get(services["envyaml"]["port"]) == (
        "env-yaml GREETING=hello world DB=sqlite:///x FROM_FILE=file-value DOTENV=from-dotenv PORT_OK=1\n")
    assert http_get(services["envsvc"]["port"]) == (
        "env-svc GREETING=svc-hi DB=None FROM_FILE=None DOTENV=None PORT_OK=None\n")
    assert services["envyaml"]["env_keys"] == ["DB", "DOTENV", "FROM_FILE", "GREETING", "PORT_OK"]
    listing = maestro.run("list-services").stdout
    assert "sqlite:///x" not in listing and "= envyaml: env DB DOTENV" in listing
    assert "sqlite:///x" not in maestro.log()


def test_false_successes_end_failed_with_the_reason(maestro):
    src = maestro.root / "sources"
    vite = paas.write(src / "vite", {"package.json": json.dumps({"scripts": {"build": "node -e 0"}}),
                                     "index.html": "<h1>source, not a site</h1>"})
    pysrc = paas.write(src / "pysrc", {"lib.py": "X = 1\n", "index.html": "<h1>source</h1>"})
    noserver = paas.write(src / "noserver", {"main.py": paas.FASTAPI_MAIN, "index.html": "x"})
    newer = paas.write(src / "newer", {"requirements.txt": "", "main.py": "print(1)\n",
                                       "pyproject.toml": '[project]\nname = "x"\nversion = "0"\n'
                                                         'requires-python = ">=3.99"\n'})
    maestro.boot(SERVICES=f"{vite}|||vite; {pysrc}|||pysrc; {noserver}|||noserver; {newer}|||newer")
    reasons = {
        "vite": "package.json has no scripts.start",
        "pysrc": "Python sources but no way to start them",
        "noserver": "main.py defines a web app but nothing serves it",
        "newer": "the project needs Python >=3.99 (pyproject.toml requires-python)",
    }
    for name, reason in reasons.items():
        svc = status_of(maestro, name, {"FAILED", "RUNNING"}, timeout=120)
        assert svc["status"] == "FAILED" and reason in svc["error"], svc


def test_procfile_release_and_worker_with_django(maestro):
    """release: migrates before the web starts; worker: runs as <service>-worker, same user;
    removal takes the worker along."""
    uv = paas.uv_binary(maestro.root / "bin")
    site = paas.django_project(maestro.root / "sources" / "site", requires=">=3.11")
    (site / ".python-version").unlink()  # the host's service users have 3.11 only
    maestro.boot(SERVICES=f"{site}|||site", MAESTRO_UV=str(uv))
    services = maestro.wait_running(["site", "site-worker"], timeout=BUILD_TIMEOUT)
    assert http_get(services["site"]["port"]) == "django-site python 3.11 migrated=True\n"
    worker = services["site-worker"]
    assert worker["user"] == services["site"]["user"] == "svc_site"
    assert worker["command"] == "python worker.py" and worker["command_reason"] == "detected: Procfile worker"
    assert "site: release phase: python manage.py migrate --noinput" in maestro.log()
    assert "collectstatic done" in maestro.log()

    maestro.run("remove-service", "site", "--yes")
    left = maestro.services()
    assert "site" not in left and "site-worker" not in left


def test_failed_release_keeps_the_previous_version(maestro):
    src = paas.write(maestro.root / "sources" / "rel", {
        "main.py": paas.PY_SERVER.format(name="rel-v1", extra='"ok"'),
        "Procfile": "web: python3 main.py\nrelease: echo migrating\n"})
    services = f"{src}|||rel"
    maestro.boot(SERVICES=services)
    port = maestro.wait_running(["rel"], timeout=60)["rel"]["port"]
    assert http_get(port) == "rel-v1 ok\n"
    paas.write(src, {"main.py": paas.PY_SERVER.format(name="rel-v2", extra='"ok"'),
                     "Procfile": "web: python3 main.py\nrelease: echo cannot migrate; exit 3\n"})
    maestro.run("deploy-from-env", "--refetch", check=False, SERVICES=services)
    svc = maestro.services()["rel"]
    assert svc["status"] == "RUNNING" and "release phase failed (exit 3)" in svc["error"], svc
    assert http_get(port) == "rel-v1 ok\n", "the previous version keeps serving"
