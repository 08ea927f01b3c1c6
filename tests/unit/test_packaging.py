"""The installed product (the image, the benchmarks) gets every subpackage: a folder missing from
pyproject's list would be absent from the wheel while the checkout's tests still pass."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "maestro_runtime").rglob("__init__.py")}
    assert found | {"maestro_runtime.config"} == listed
