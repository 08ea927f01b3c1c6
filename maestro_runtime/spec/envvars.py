"""Service environment from every spec form (pure: text and mappings in, values out).

* compose-style interpolation of YAML ``env:`` values from the container environment:
  ``$VAR``, ``${VAR}``, ``${VAR:-default}``/``${VAR-default}``, ``${VAR:?message}``/
  ``${VAR?message}``, ``$$`` for a literal ``$`` (the rules of the compose specification);
* dotenv files (``env_file:`` and the project's own ``.env``, the honcho/foreman convention);
* ``SVC_<i>_ENV_<KEY>`` and ``MAESTRO_ENV_<SVC>_<KEY>`` for the environment forms.

Values are never put into messages: an error names the origin and the key only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from maestro_runtime.spec.model import SpecError

# Set by the runtime last, whatever a spec says (launch.service_environment).
FIXED_KEYS = frozenset({"PORT", "HOME", "USER", "LOGNAME"})
# What execve takes: one "KEY=value" string of at most 128 KiB (MAX_ARG_STRLEN), and arguments and
# environment together within ARG_MAX (2 MiB under the default 8 MiB stack).
MAX_VARIABLE = 128 * 1024
MAX_ENVIRONMENT = 2 * 1024 * 1024
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(
    r"\$(?:(\$)"  # $$
    r"|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}"  # ${VAR}, ${VAR:-x}, ${VAR:?x}
    r"|([A-Za-z_][A-Za-z0-9_]*))"  # $VAR
)


def interpolate(origin: str, key: str, value: str, environ: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        op, arg = match.group(3), match.group(4) or ""
        present = name in environ
        got = environ.get(name, "")
        if op in (":-", "-"):
            use_default = (not got) if op == ":-" else not present
            return interpolate(origin, key, arg, environ) if use_default else got
        if op in (":?", "?"):
            missing = (not got) if op == ":?" else not present
            if missing:
                raise SpecError(origin, f"env.{key}", f"${{{name}}} is required: {arg or 'not set'}")
            return got
        if match.group(2) is None and match.group(5) is None:  # pragma: no cover (regex guarantees a name)
            return match.group(0)
        return got

    if "$" not in value:
        return value
    if re.search(r"\$\{(?![A-Za-z_])", value):
        raise SpecError(origin, f"env.{key}", "has a ${...} that is not a variable reference (write $$ for $)")
    return _REF.sub(one, value)


def interpolate_all(origin: str, env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    return {k: interpolate(origin, k, v, environ) for k, v in env.items()}


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines; ``export`` allowed; ``#`` comments; single quotes literal, double quotes
    with ``\\n``/``\\"`` escapes; unquoted values end at `` #``. Lines that are not assignments are
    skipped (a .env is the user's file: a typo must not stop the service)."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        if "\x00" not in value:
            env[key] = value
    return env


def check_size(origin: str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` when a process can be started with it; else SpecError naming the key or the total.

    Checked before anything copies it: YAML aliases in a project's render.yaml (``value: *big``
    for 200 keys) made a 1 MB file a 200 MB environment, which root then wrote into the record,
    the launch script and every reader's memory, and no process could ever have started with."""
    total = 0
    for key, value in env.items():
        size = len(key) + len(value) + 2  # "KEY=value" and its NUL, in characters (bytes: at least)
        if size > MAX_VARIABLE:
            raise SpecError(origin, f"env.{key}", f"is {size} characters; a variable holds at most "
                                                  f"{MAX_VARIABLE // 1024} KiB")
        total += size
    if total > MAX_ENVIRONMENT:
        raise SpecError(origin, "env", f"{len(env)} variables of {total} characters in all; a process's "
                                       f"environment holds at most {MAX_ENVIRONMENT // (1024 * 1024)} MiB")
    return dict(env)


def prefixed(environ: Mapping[str, str], prefix: str) -> dict[str, str]:
    """``<prefix><KEY>=value`` variables as ``{KEY: value}`` (``SVC_1_ENV_``, ``MAESTRO_ENV_WEB_``)."""
    return {k[len(prefix):]: v for k, v in environ.items()
            if k.startswith(prefix) and _KEY.fullmatch(k[len(prefix):])}


def env_var_name(service: str) -> str:
    """``my-app`` -> ``MY_APP``: how a service name appears in ``MAESTRO_ENV_<SVC>_<KEY>``."""
    return re.sub(r"[^A-Za-z0-9]", "_", service).upper()


def fixed_keys(env: Mapping[str, str]) -> list[str]:
    return sorted(k for k in env if k in FIXED_KEYS)
