"""The product installed the way the image installs it, for the benchmarks to time.

The image runs a wheel install in a venv of Debian's python3. A development
checkout usually runs an editable install in another interpreter (here pyenv),
whose start-up adds ~30 ms to every command (site hooks, the editable finder):
a cost no user of the image pays. So the benchmarks build that venv once per
source version and time the commands from it; ``--dev-install`` times the
current interpreter instead.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
DEFAULT_VENV = Path("/var/cache/maestro-bench/venv")
# What goes into the wheel: a change here means a new install.
SOURCES = ("pyproject.toml", "maestro_runtime", "config")


def source_digest(repo: Path = REPO) -> str:
    digest = hashlib.sha256()
    for top in SOURCES:
        root = repo / top
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def shipped_bin(venv: Path = DEFAULT_VENV, python: Path = SYSTEM_PYTHON, repo: Path = REPO) -> Path:
    """bin/ of a venv of the system python3 holding a (non-editable) install of ``repo`` (this checkout)."""
    stamp = venv / ".maestro-source"
    digest = source_digest(repo)
    if stamp.exists() and stamp.read_text() == digest and (venv / "bin" / "maestro-entrypoint").exists():
        return venv / "bin"
    print(f"benchmarks: installing {repo} into {venv} ({python}), as the image does", file=sys.stderr)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="maestro-bench-src-") as tmp:
        # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
        src = Path(tmp)
        for top in (*SOURCES, "README.md"):
            if (repo / top).is_dir():
                shutil.copytree(repo / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(repo / top, src / top)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--no-input"]
        subprocess.run([*pip, str(src)], check=True)
    stamp.write_text(digest)
    return venv / "bin"
