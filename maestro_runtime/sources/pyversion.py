"""Which Python a project gets (pure: texts and a list of interpreters in, a choice out).

What a project asks for, as modern platforms read it: an exact pin from ``.python-version``
(else ``runtime.txt``, ``python-3.11.4``; else Pipenv's ``[requires] python_version``), and
constraints from ``pyproject.toml`` ``requires-python`` and ``uv.lock`` ``requires-python``. The pin is used when an
interpreter of that version is here; otherwise the newest interpreter satisfying every
constraint (and the pin's minor version when possible), with a warning naming both and
saying whether the one used satisfies the pin; an error only when none satisfies the
constraints. Versions and specifiers are PEP 440, read with ``packaging``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from maestro_runtime.sources import pylocks


class NoInterpreter(Exception):
    pass


@dataclass(frozen=True)
class Request:
    pin: str | None = None  # "3.12" or "3.12.4"
    pin_source: str = ""
    constraints: tuple[tuple[str, str], ...] = ()  # (specifier, where it came from)

    @property
    def empty(self) -> bool:
        return self.pin is None and not self.constraints


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.13.5"


@dataclass(frozen=True)
class Choice:
    interpreter: Interpreter
    warning: str | None = None


_PIN = re.compile(r"^(?:cpython-|python-?)?(\d+\.\d+(?:\.\d+)?)\b")


def read_request(texts: Mapping[str, str]) -> Request:
    """``texts``: the project's files by name (``.python-version``, ``runtime.txt``,
    ``pyproject.toml``, ``uv.lock``), only those present."""
    pin = source = None
    for name in (".python-version", "runtime.txt"):
        for line in texts.get(name, "").splitlines():
            match = _PIN.match(line.strip())
            if match and not line.strip().startswith("#"):
                pin, source = match.group(1), name
                break
        if pin:
            break
    if pin is None:  # Pipenv's [requires], as Heroku reads it (the lock's copy first)
        pin = pylocks.pipfile_python(texts.get("Pipfile.lock"), texts.get("Pipfile"))
        source = ("Pipfile.lock" if "Pipfile.lock" in texts else "Pipfile") if pin else None
    constraints = []
    for name, path in (("pyproject.toml", ("project", "requires-python")), ("uv.lock", ("requires-python",))):
        if name not in texts:
            continue
        try:
            value = tomllib.loads(texts[name])
        except (tomllib.TOMLDecodeError, RecursionError):
            continue
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value.strip():
            constraints.append((value.strip(), f"{name} requires-python"))
    return Request(pin, source or "", tuple(constraints))


def _satisfies(version: Version, constraints: Sequence[tuple[str, str]]) -> bool:
    for spec, _ in constraints:
        try:
            if not SpecifierSet(spec).contains(version, prereleases=True):
                return False
        except InvalidSpecifier:
            continue  # an unreadable constraint is the tool's to report, not ours
    return True


def _matches_pin(version: Version, pin: str) -> bool:
    parts = [int(p) for p in pin.split(".")]
    return list(version.release[: len(parts)]) == parts


def choose(request: Request, available: Sequence[Interpreter]) -> Choice:
    if not available:
        raise NoInterpreter("no Python interpreter found")
    known = []
    for interp in available:
        try:
            known.append((Version(interp.version), interp))
        except InvalidVersion:
            continue
    known.sort(key=lambda pair: pair[0], reverse=True)
    if not known:
        raise NoInterpreter("no Python interpreter with a readable version found")
    wanted = " and ".join(f"{spec} ({where})" for spec, where in request.constraints)
    if request.pin:
        exact = [i for v, i in known if _matches_pin(v, request.pin) and _satisfies(v, request.constraints)]
        if exact:
            return Choice(exact[0])
    fits = [(v, i) for v, i in known if _satisfies(v, request.constraints)]
    have = ", ".join(i.version for _, i in known)
    if not fits:
        raise NoInterpreter(f"the project needs Python {wanted}; here: {have} (set MAESTRO_BUILD_PYTHON to "
                            "an interpreter that fits, or use an image that has one)")
    if request.pin:
        minor = ".".join(request.pin.split(".")[:2])
        same_minor = [i for v, i in fits if _matches_pin(v, minor)]
        chosen = same_minor[0] if same_minor else fits[0][1]
        return Choice(chosen, _fallback_warning(request, chosen, bool(same_minor), wanted))
    return Choice(fits[0][1])


def _fallback_warning(request: Request, chosen: Interpreter, same_minor: bool, wanted: str) -> str:
    """Says plainly whether the interpreter used satisfies the pin: only a same-minor one does."""
    asked = f"the project pins Python {request.pin} ({request.pin_source}), which is not here"
    also = f"; it satisfies {wanted}" if wanted else ""
    if same_minor:
        return f"{asked}; using {chosen.version}, the same minor version (not the pinned release){also}"
    pin = Version(request.pin or "0")
    side = "older" if Version(chosen.version) < pin else "newer"
    return (f"{asked}; using {chosen.version}, the newest here that the project's constraints allow, but "
            f"{chosen.version} does not satisfy the pin {request.pin} ({request.pin_source}): it is {side}, and "
            f"dependencies that need {request.pin} may not install{also}. Provide Python {request.pin} "
            "(MAESTRO_PYTHON_INSTALL_MIRROR, MAESTRO_PYTHONS) or change the pin")


def install_target(request: Request, available: Sequence[Interpreter]) -> str | None:
    """What to ask an installer (``uv python install``) for, or None when an interpreter here
    already serves the request: the pin when none here matches it (and it fits the
    constraints); with no usable pin, the constraints when no interpreter here satisfies them."""
    known = []
    for interp in available:
        try:
            known.append(Version(interp.version))
        except InvalidVersion:
            continue
    if request.pin:
        if any(_matches_pin(v, request.pin) and _satisfies(v, request.constraints) for v in known):
            return None
        if _satisfies(Version(request.pin), request.constraints):
            return request.pin
    if request.constraints and not any(_satisfies(v, request.constraints) for v in known):
        # The project's text goes to root's installer: only as packaging reads it back (">=3.12,<4").
        try:
            return str(SpecifierSet(",".join(spec for spec, _ in request.constraints))) or None
        except InvalidSpecifier:
            return None
    return None


def older_fits(request: Request, available: Sequence[Interpreter], used: str) -> list[Interpreter]:
    """With no pin: the interpreters here older than ``used`` that the project's constraints
    allow, newest first (what to build with when ``used`` could not); none with a pin."""
    if request.pin:
        return []  # the project chose; the warning at its choice already said what is here
    try:
        newest = Version(used)
        older = [(v, i) for i in available if (v := Version(i.version)) < newest and _satisfies(v, request.constraints)]
    except InvalidVersion:
        return []
    return [i for _, i in sorted(older, key=lambda pair: pair[0], reverse=True)]


def others_hint(request: Request, available: Sequence[Interpreter], used: str) -> str | None:
    """After a failed install with ``used`` and no pin: the older interpreters here that the
    project's constraints also allow, as the one-line change that selects one. Dependencies
    locked before ``used`` was released often have no wheel for it and no longer compile."""
    older = [Version(i.version) for i in older_fits(request, available, used)]
    if not older:
        return None
    newest = Version(used)
    minor = f"{older[0].major}.{older[0].minor}"
    return (f"Python {', '.join(str(v) for v in older)} is also here and fits the project: a .python-version "
            f"file saying {minor} builds with it (dependencies pinned before Python {newest.major}.{newest.minor} "
            "often have no wheel for it)")
