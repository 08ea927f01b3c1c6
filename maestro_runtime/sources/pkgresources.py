"""``pkg_resources`` for dependencies that still import it (run in the project's venv after its install).

setuptools 81 removed ``pkg_resources``. Locks written before then pin packages that import it
and declare ``setuptools`` as a requirement (gunicorn 20.1, in two of trial 15's samples: a
Django and a Flask app), so the install brings today's setuptools and the app dies at import
("No module named 'pkg_resources'"). Platforms that seeded their own setuptools (Heroku's
buildpack, which DigitalOcean's follows, virtualenv before Python 3.12) served them. After the
install, this step looks at what is installed: when ``pkg_resources`` is missing and an installed
distribution requires setuptools (outside an extra) with no version floor at 81 or above,
``setuptools<81`` is installed with the project's installer; otherwise it does nothing.
"""

from __future__ import annotations

from pathlib import Path

# Runs with the venv's own interpreter (stdlib only): argv[1:] is the installer command.
SCRIPT = r"""
import importlib.metadata as md, importlib.util, re, subprocess, sys
if importlib.util.find_spec("pkg_resources") is None:
    wanting, floor = [], False
    for dist in md.distributions():
        for req in dist.requires or ():
            m = re.match(r"\s*setuptools\s*(?:\(([^)]*)\)|([^;]*))?\s*(?:;(.*))?$", req)
            if not m or (m.group(3) and "extra" in m.group(3)):
                continue
            wanting.append(dist.metadata["Name"])
            for clause in (m.group(1) or m.group(2) or "").split(","):
                v = re.match(r"\s*(>=|>|==|~=|===)\s*(\d+)", clause)
                floor = floor or bool(v and int(v.group(2)) >= 81)
    if wanting and not floor:
        names = ", ".join(sorted(set(wanting)))
        print(f"maestro: {names} require setuptools and pkg_resources is missing (setuptools 81 removed it): "
              "installing setuptools<81", flush=True)
        sys.exit(subprocess.run([*sys.argv[1:], "setuptools<81"]).returncode)
"""


def step(venv_dir: Path, installer: tuple[str, ...]) -> tuple[str, ...]:
    """The step: the venv's python running :data:`SCRIPT` with the install command to use."""
    return (str(venv_dir / "bin" / "python"), "-c", SCRIPT, *installer)


def makes_venv(argv: tuple[str, ...] | list[str]) -> bool:
    """``uv venv ...`` or ``python -m venv ...``: a step the build stamp leaves out (making the
    venv again changes nothing installed)."""
    return tuple(argv[1:2]) == ("venv",) or tuple(argv[1:3]) == ("-m", "venv")
