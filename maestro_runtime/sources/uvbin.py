"""The uv binary the ``uv`` package ships, found once per process, one thread at a time.

``uv.find_uv_bin()`` starts with ``"uv" + sysconfig.get_config_var("EXE")``, and on Python 3.11
``sysconfig.get_config_vars()`` is not thread-safe (CPython gh-92452, fixed in 3.12): the first
caller publishes an empty dict and fills it after importing ``_sysconfigdata``, so a thread that
asks meanwhile gets ``None`` and uv raises ``TypeError: can only concatenate str (not
"NoneType") to str``. The boot builds Python projects in parallel (ops/reconcile.py), each asking
for uv: that was a service failing with an internal error, now and then.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_FOUND: list[str | None] = []  # [path or None] once looked up: the package's binary never moves


def packaged_uv() -> str | None:
    """The path of the ``uv`` package's binary, or None when the package or its binary is missing."""
    with _LOCK:
        if not _FOUND:
            try:
                import uv

                _FOUND.append(uv.find_uv_bin())
            except (ImportError, FileNotFoundError):
                _FOUND.append(None)
        return _FOUND[0]
