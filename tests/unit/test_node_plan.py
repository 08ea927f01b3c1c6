"""Node planning like a PaaS: manager and lock precedence, frozen installs, the build step, engines."""

from pathlib import Path

import pytest

from maestro_runtime.sources.builds import BuildOptions, node_plan
from maestro_runtime.sources.node import choose_manager, engines_warning

OPTS = BuildOptions(python="/usr/bin/python3")


@pytest.mark.parametrize("files, package, manager, lock", [
    ({"package.json"}, {}, "npm", None),
    ({"package.json", "package-lock.json"}, {}, "npm", "package-lock.json"),
    ({"package.json", "package-lock.json", "yarn.lock"}, {}, "yarn", "yarn.lock"),
    ({"package.json", "package-lock.json", "pnpm-lock.yaml", "yarn.lock"}, {}, "pnpm", "pnpm-lock.yaml"),
    ({"package.json", "package-lock.json", "yarn.lock"}, {"packageManager": "npm@10.8.2"}, "npm",
     "package-lock.json"),
    ({"package.json", "yarn.lock"}, {"packageManager": "pnpm@9.1.0"}, "pnpm", None),
])
def test_manager_from_package_manager_then_lock_precedence(files, package, manager, lock):
    choice = choose_manager(files, package)
    assert (choice.manager, choice.lock) == (manager, lock)


def test_install_is_frozen_and_build_gets_dev_dependencies():
    build = {"scripts": {"build": "vite build"}}
    plan = node_plan({"package.json", "package-lock.json"}, build, OPTS, Path("/p/node_modules"))
    assert plan.steps == (("npm", "ci", "--no-audit", "--no-fund"), ("npm", "run", "build"))
    plan = node_plan({"package.json", "yarn.lock"}, {}, OPTS, Path("/p/node_modules"))
    assert plan.steps == (("corepack", "yarn", "install", "--frozen-lockfile", "--production"),)
    plan = node_plan({"package.json", "pnpm-lock.yaml"}, build, OPTS, Path("/p/node_modules"))
    assert plan.steps[-1] == ("corepack", "pnpm", "run", "build") and "--prod" not in plan.steps[0]
    plan = node_plan({"package.json"}, {}, OPTS, Path("/p/node_modules"))
    assert "--no-package-lock" in plan.steps[0]


@pytest.mark.parametrize("wanted, have, warns", [
    (">=18", "v20.19.2", False), (">=22", "v20.19.2", True), ("20.x", "v20.1.0", False),
    ("^18 || ^20", "v20.1.0", False), ("^18 || ^22", "v20.1.0", True), (">=18 <20", "v20.0.0", True),
    ("lts/*", "v20.0.0", False),
])
def test_engines_node_warning(wanted, have, warns):
    assert bool(engines_warning({"engines": {"node": wanted}}, have)) is warns
