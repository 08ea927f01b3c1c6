"""A service runs with the package-manager setup its build had (issue 12 re-run, render-examples/
nextjs-hello-world: `yarn start` exited 127 on a host without a global yarn, and in the image
corepack's shim tried to download yarn at service start because COREPACK_HOME was not the build's)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from maestro_runtime.engine.launch import SYSTEM_PATH, service_environment
from maestro_runtime.sources import builds
from maestro_runtime.sources.builds import BuildOptions, build_environment, node_plan
from maestro_runtime.state.records import ServiceRecord

HOME = "/home/svc_web"
ACCOUNT = SimpleNamespace(home=Path(HOME), user="svc_web", uid=1001, gid=1001, cache_dir=Path(f"{HOME}/.cache"),
                          venv_dir=Path(f"{HOME}/.maestro/venv"), tmp_dir=Path(f"{HOME}/.maestro/tmp"))


def _record(**kw) -> ServiceRecord:
    base = dict(id="web", name="web", kind="env", origin="test", source="test", directory="/srv/web",
                user="svc_web", port=8000, uid=1001, gid=1001, home=HOME, tmp_dir=f"{HOME}/.maestro/tmp",
                cache_dir=f"{HOME}/.cache", command="yarn start")
    return ServiceRecord(**{**base, **kw})


def test_service_gets_the_builds_corepack_home_and_shims_and_no_download():
    build = build_environment(Path("/srv/web"), ACCOUNT, BuildOptions())
    env = service_environment(_record())
    assert env["COREPACK_HOME"] == build["COREPACK_HOME"] == f"{HOME}/.cache/corepack"
    assert env["COREPACK_ENABLE_NETWORK"] == "0"  # never a download at service start
    assert env["COREPACK_ENABLE_AUTO_PIN"] == build["COREPACK_ENABLE_AUTO_PIN"] == "0"
    # The shims the build made come after the system's own commands, in the build's PATH too.
    assert env["PATH"].endswith(f"{SYSTEM_PATH}:{HOME}/.maestro/bin")
    assert build["PATH"].endswith(f"{SYSTEM_PATH}:{HOME}/.maestro/bin")


def test_the_operator_still_wins():
    env = service_environment(_record(env={"COREPACK_ENABLE_NETWORK": "1", "COREPACK_HOME": "/opt/cp"}))
    assert env["COREPACK_ENABLE_NETWORK"] == "1" and env["COREPACK_HOME"] == "/opt/cp"


def test_yarn_and_pnpm_projects_get_their_managers_shims_first():
    shims = Path(f"{HOME}/.maestro/bin")
    yarn = node_plan({"package.json", "yarn.lock"}, {}, BuildOptions(), Path("/srv/web/node_modules"), shims=shims)
    assert yarn.steps[:2] == (("mkdir", "-p", str(shims)),
                              ("corepack", "enable", "--install-directory", str(shims), "yarn"))
    assert yarn.steps[2][:3] == ("corepack", "yarn", "install")
    pnpm = node_plan({"package.json", "pnpm-lock.yaml"}, {}, BuildOptions(), Path("/n"), shims=shims)
    assert pnpm.steps[1][-1] == "pnpm"
    npm = node_plan({"package.json", "package-lock.json"}, {}, BuildOptions(), Path("/n"), shims=shims)
    assert npm.steps[0][:2] == ("npm", "ci")  # npm is the system's own: nothing to enable


def test_lost_shims_mean_a_new_build(tmp_path):
    plan = node_plan({"package.json", "yarn.lock"}, {}, BuildOptions(), tmp_path / "node_modules",
                     shims=tmp_path / "bin")
    assert not builds._shims_present(plan)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "yarn").symlink_to("/nonexistent/yarn.js")  # corepack's are links
    assert builds._shims_present(plan)
