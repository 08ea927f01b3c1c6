"""Requirements read from Pipenv and Poetry projects (pure: texts in, requirement strings out).

Neither tool is in the image, and uv reads neither file, so their locks are read here and
handed to ``uv pip install`` (or pip) as PEP 508 strings, one argument each, as Heroku and
Fly do (``pipenv install --deploy``; ``poetry export``, the dependencies without the project):

* Pipenv: ``Pipfile.lock`` ``default`` (already the whole locked closure, with markers);
  without a lock, ``Pipfile`` ``[packages]`` (unpinned, resolved by the installer).
* Poetry: ``poetry.lock`` from the main dependencies of ``pyproject.toml``
  (``[tool.poetry.dependencies]``, or ``[project] dependencies``) through each locked
  package's own dependencies and requested extras, dev groups left out. A package reached only
  through conditional edges (``colorama`` on Windows) carries those markers, for the
  installer to judge against the interpreter it installs for. Lock files before 2.1 name no
  groups, so the walk from the main dependencies is what tells main from dev.

A name, version or marker that is not plainly one is dropped (each string becomes one argv
element of the installer: it must never read as an option). The project itself is installed
too only when Poetry would find its package (:func:`poetry_root_installable`).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.markers import InvalidMarker, Marker

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_CLAUSE = r"(?:===?|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_VERSION = re.compile(rf"^{_CLAUSE}(?:\s*,\s*{_CLAUSE})*$")
_EXACT = re.compile(r"^[A-Za-z0-9.+!_-]+$")
_URL = re.compile(r"^(?:git\+)?https?://[^\s@;]+(?:@[^\s@;]+)?$")
_MARKER = re.compile(r"^[A-Za-z0-9_ .,<>=!~'\"()*+-]+$")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?$")
_MAX_ALTERNATIVES = 8  # beyond this, a package's markers are left to the installer


@dataclass(frozen=True)
class Locked:
    requirements: tuple[str, ...]
    source: str  # "Pipfile.lock", "Pipfile", "poetry.lock"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extras(value) -> str:
    names = [e for e in value if isinstance(e, str) and _NAME.match(e)] if isinstance(value, list) else []
    return f"[{','.join(names)}]" if names else ""


def _extra_names(value) -> frozenset[str]:
    return frozenset(e for e in value if isinstance(e, str)) if isinstance(value, list) else frozenset()


def _marker(value) -> str | None:
    """A PEP 508 marker as ``packaging`` reads it, else None (the package is then always installed)."""
    if not isinstance(value, str) or not value.strip() or not _MARKER.match(value.strip()):
        return None
    try:
        Marker(value.strip())
    except InvalidMarker:
        return None
    return value.strip()


_EXTRA_CLAUSE = re.compile(r"""(?:\s+and\s+)?\bextra\s*==\s*["'][^"']*["']|\bextra\s*==\s*["'][^"']*["']\s+and\s+""")


def _without_extra(marker: str | None) -> str | None:
    """An optional dependency's marker with its ``extra == "x"`` clause taken out (the extra was
    asked for); one that still names an extra after that (inside an ``or``) is dropped."""
    if marker is None:
        return None
    rest = _EXTRA_CLAUSE.sub("", marker).strip()
    return None if not rest or "extra" in rest else _marker(rest)


def _line(name: str, spec: str, marker: str | None) -> str:
    return f"{name}{spec} ; {marker}" if marker else f"{name}{spec}"


# ---------------------------------------------------------------- Pipenv


def _pipenv_entry(name: str, entry) -> str | None:
    if not _NAME.match(name):
        return None
    if isinstance(entry, str):  # Pipfile: "*" or a specifier
        spec = entry.strip()
        return name if spec in ("", "*") else (f"{name}{spec}" if _VERSION.match(spec) else None)
    if not isinstance(entry, Mapping):
        return None
    extras = _extras(entry.get("extras"))
    marker = _marker(entry.get("markers"))
    version = entry.get("version")
    if isinstance(entry.get("git"), str):
        url = entry["git"] if entry["git"].startswith("git+") else f"git+{entry['git']}"
        ref = entry.get("ref")
        url = f"{url}@{ref}" if isinstance(ref, str) and _EXACT.match(ref) else url
        return _line(f"{name}{extras}", f" @ {url}", marker) if _URL.match(url) else None
    if isinstance(version, str) and version.strip() not in ("", "*"):
        return _line(f"{name}{extras}", version.strip(), marker) if _VERSION.match(version.strip()) else None
    if version in (None, "*", "") and not any(k in entry for k in ("path", "file", "editable")):
        return _line(f"{name}{extras}", "", marker)
    return None  # a local path or file: the project's own, not an index package


def pipenv(lock_text: str | None, pipfile_text: str | None) -> Locked | None:
    """The lock's ``default`` section, else the Pipfile's ``[packages]``; None when neither reads."""
    if lock_text is not None:
        try:
            lock = json.loads(lock_text)
        except (ValueError, RecursionError):
            lock = None
        default = lock.get("default") if isinstance(lock, dict) else None
        if isinstance(default, dict):
            lines = (_pipenv_entry(n, e) for n, e in default.items() if isinstance(n, str))
            return Locked(tuple(sorted(x for x in lines if x)), "Pipfile.lock")
    if pipfile_text is not None:
        try:
            packages = tomllib.loads(pipfile_text).get("packages")
        except (tomllib.TOMLDecodeError, RecursionError):
            return None
        if isinstance(packages, dict):
            lines = (_pipenv_entry(n, e) for n, e in packages.items() if isinstance(n, str))
            return Locked(tuple(sorted(x for x in lines if x)), "Pipfile")
    return None


def pipfile_python(lock_text: str | None, pipfile_text: str | None) -> str | None:
    """``[requires] python_full_version``/``python_version`` (the lock's ``_meta`` first), as Heroku reads it."""
    requires = None
    if lock_text is not None:
        try:
            meta = json.loads(lock_text).get("_meta")
            requires = meta.get("requires") if isinstance(meta, dict) else None
        except (ValueError, AttributeError, RecursionError):
            requires = None
    if not isinstance(requires, dict) and pipfile_text is not None:
        try:
            requires = tomllib.loads(pipfile_text).get("requires")
        except (tomllib.TOMLDecodeError, RecursionError):
            requires = None
    if not isinstance(requires, dict):
        return None
    for key in ("python_full_version", "python_version"):
        value = requires.get(key)
        if isinstance(value, str) and re.fullmatch(r"\d+\.\d+(?:\.\d+)?", value.strip()):
            return value.strip()
    return None


# ---------------------------------------------------------------- Poetry


def is_poetry(pyproject_text: str | None) -> bool:
    try:
        doc = tomllib.loads(pyproject_text or "")
    except (tomllib.TOMLDecodeError, RecursionError):
        return False
    tool = doc.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("poetry"), dict)


def _main_dependencies(doc: Mapping) -> dict[str, tuple[frozenset[str], str | None]]:
    """Normalised name -> (extras, marker) of the project's main dependencies (``python`` left out)."""
    main: dict[str, tuple[frozenset[str], str | None]] = {}
    poetry = doc.get("tool", {}).get("poetry", {})
    deps = poetry.get("dependencies") if isinstance(poetry, dict) else None
    for name, spec in (deps if isinstance(deps, dict) else {}).items():
        if not isinstance(name, str) or name.lower() == "python" or not _NAME.match(name):
            continue
        if isinstance(spec, dict) and spec.get("optional") is True:
            continue  # only with an extra of the project, which nobody asks for at deploy time
        table = spec if isinstance(spec, dict) else {}
        main[normalise(name)] = (_extra_names(table.get("extras")), _marker(table.get("markers")))
    project = doc.get("project")
    for requirement in (project.get("dependencies") or () if isinstance(project, dict) else ()):
        match = _REQUIREMENT.match(str(requirement))
        if match:
            extras = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
            main.setdefault(normalise(match.group(1)), (extras, _marker(match.group(3))))
    return main


def _edges(package: Mapping, extras: frozenset[str]) -> list[tuple[str, frozenset[str], str | None]]:
    """(name, extras, marker) of what a locked package needs, with the extras asked of it."""
    out = []
    deps = package.get("dependencies")
    for name, spec in (deps if isinstance(deps, dict) else {}).items():
        specs = spec if isinstance(spec, list) else [spec]  # several constraints, one per marker
        for one in specs:
            if isinstance(one, dict) and one.get("optional") is True:
                continue  # pulled in by an extra, below
            table = one if isinstance(one, dict) else {}
            out.append((normalise(name), _extra_names(table.get("extras")), _marker(table.get("markers"))))
    # The extras' lists name no markers (Poetry 1.x): those are on the optional dependency entries.
    optional = {normalise(n): _without_extra(_marker(one.get("markers")))
                for n, spec in (deps if isinstance(deps, dict) else {}).items()
                for one in (spec if isinstance(spec, list) else [spec])
                if isinstance(one, dict) and one.get("optional") is True}
    table = package.get("extras")
    for extra in extras:
        for requirement in (table.get(extra) or () if isinstance(table, dict) else ()):
            match = _REQUIREMENT.match(str(requirement))
            if match:
                name = normalise(match.group(1))
                sub = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
                out.append((name, sub, _without_extra(_marker(match.group(3))) or optional.get(name)))
    return out


def _and(left: str | None, right: str | None) -> str | None:
    if left is None or right is None:
        return left or right
    return f"({left}) and ({right})"


def poetry(pyproject_text: str | None, lock_text: str | None) -> Locked | None:
    """The main dependencies' locked closure; None when the lock or pyproject does not read."""
    try:
        doc = tomllib.loads(pyproject_text or "")
        lock = tomllib.loads(lock_text or "")
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    packages = {normalise(p["name"]): p for p in lock.get("package", ())
                if isinstance(p, dict) and isinstance(p.get("name"), str) and _NAME.match(p["name"])}
    if not packages:
        return None
    # name -> set of alternatives (a marker, or None: always); extras asked of each package
    reach: dict[str, set[str | None]] = {}
    extras: dict[str, frozenset[str]] = {}
    todo = [(name, wanted, marker) for name, (wanted, marker) in _main_dependencies(doc).items()]
    while todo:
        name, wanted, marker = todo.pop()
        if name not in packages:
            continue
        alts = reach.setdefault(name, set())
        before = (set(alts), extras.get(name, frozenset()))
        if None not in alts and marker not in alts:
            if marker is None or len(alts) >= _MAX_ALTERNATIVES:
                alts.clear()
                alts.add(None)
            else:
                alts.add(marker)
        extras[name] = extras.get(name, frozenset()) | wanted
        if (alts, extras[name]) != before:  # something new reaches this package: walk on from it
            for child, child_extras, edge in _edges(packages[name], extras[name]):
                todo.extend((child, child_extras, _and(alt, edge)) for alt in alts)
    lines = []
    for name, alts in sorted(reach.items()):
        package = packages[name]
        marker = None if None in alts else " or ".join(f"({m})" for m in sorted(alts))  # type: ignore[arg-type]
        pinned = _poetry_spec(package)
        if pinned is not None:
            lines.append(_line(str(package["name"]), pinned, marker))
    return Locked(tuple(lines), "poetry.lock")


def _poetry_spec(package: Mapping) -> str | None:
    source = package.get("source")
    version = package.get("version")
    if isinstance(source, dict) and source.get("type") not in (None, "legacy"):
        if source.get("type") == "git" and isinstance(source.get("url"), str):
            ref = source.get("resolved_reference") or source.get("reference")
            url = f"git+{source['url']}" + (f"@{ref}" if isinstance(ref, str) and _EXACT.match(ref) else "")
            return f" @ {url}" if _URL.match(url) else None
        if source.get("type") == "url" and isinstance(source.get("url"), str) and _URL.match(source["url"]):
            return f" @ {source['url']}"
        return None  # a directory or file: the project's own
    return f"=={version}" if isinstance(version, str) and _EXACT.match(version) else None


def poetry_root_installable(pyproject_text: str | None, present: frozenset[str] | set[str]) -> bool:
    """Whether Poetry would install the project itself: not ``package-mode = false``, and either
    ``packages`` declared or a module named after the project at the root or in ``src/``
    (``present``: paths relative to the project, folders and files). A project with no such
    module (an app run from ``app.py``) is dependencies only: its build would fail."""
    try:
        doc = tomllib.loads(pyproject_text or "")
    except (tomllib.TOMLDecodeError, RecursionError):
        return False
    poetry_table = doc.get("tool", {}).get("poetry", {})
    if not isinstance(poetry_table, dict) or poetry_table.get("package-mode") is False:
        return False
    if poetry_table.get("packages"):
        return True
    project = doc.get("project")
    name = poetry_table.get("name") or (project.get("name") if isinstance(project, dict) else None)
    if not isinstance(name, str):
        return False
    module = re.sub(r"[-.]+", "_", name).lower()
    return any(p in present for p in (module, f"{module}.py", f"src/{module}", f"src/{module}.py"))
