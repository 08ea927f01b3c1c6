"""Every setting checked at start (pure): one rule per variable, each bad value named with the form it accepts."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from maestro_runtime.settings.parts import BOOLEANS, LOG_LEVELS, NET_POLICIES, PRESEEDED_MODES, SANDBOX_MODES
from maestro_runtime.spec.durations import parse_duration  # the one duration grammar (10s, 500ms, 5m)
from maestro_runtime.spec.sizes import parse_size  # the one size grammar (spec/sizes)

# What supervisord's INI can hold safely (supervisor.SAFE_PATH_RE): these paths are written into it.
_INI_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*\Z")


def port_range(raw: str) -> tuple[int, int]:
    low_text, sep, high_text = raw.partition("-")
    if not (sep and low_text.strip().isdigit() and high_text.strip().isdigit()):
        raise ValueError("not two numbers")
    low, high = int(low_text), int(high_text)
    if not (1 <= low <= high <= 65535):
        raise ValueError("out of order or out of bounds")
    return low, high



# ---------------------------------------------------------------- validation (pure)
# Each check takes the stripped, non-empty text and raises ValueError when it is bad; the
# message then names the variable, the value and the accepted form (the second element).
# An empty value means "the default" everywhere, as it always has.


def _whole(minimum: int, *, allow_max: bool = False):
    def check(text: str) -> int | None:
        if allow_max and text.lower() == "max":
            return None
        if not (text.isascii() and text.isdigit()) or int(text) < minimum:
            raise ValueError(text)
        return int(text)
    return check


def _number(*, positive: bool):
    def check(text: str) -> float:
        value = float(text)  # ValueError for words
        if value != value or value in (float("inf"), float("-inf")) or value < 0 or (positive and value == 0):
            raise ValueError(text)
        return value
    return check


def _choice(choices: tuple[str, ...]):
    def check(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(text)
        return text.lower()
    return check


def _absolute(*, ini_safe: bool = False):
    def check(text: str) -> None:
        if not text.startswith("/") or (ini_safe and not _INI_SAFE_PATH.match(text)):
            raise ValueError(text)
    return check


def _absolute_list(text: str) -> None:
    if not all(part.startswith("/") for part in text.replace(",", " ").split()):
        raise ValueError(text)


def _shell_words(text: str) -> None:
    shlex.split(text)


def _url(text: str) -> None:
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ValueError(text)


def _mirror(text: str) -> None:
    if not text.lower().startswith("file:///"):
        _url(text)


def _url_or_path(text: str) -> None:
    """uv reads its Python download list from a URL or a local file."""
    if not text.startswith("/"):
        _mirror(text)


def _ports(text: str) -> None:
    for part in re.split(r"[\s,;]+", text):
        if part and not (part.isdigit() and 1 <= int(part) <= 65535):
            raise ValueError(text)


def _backoff_factor(text: str) -> None:
    if not 1.0 <= float(text) <= 100.0:  # ValueError for words; NaN fails the comparison
        raise ValueError(text)


def _bind_address(text: str) -> None:
    port = text.rpartition(":")[2]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(text)


_WHOLE_0, _WHOLE_1 = "a whole number >= 0", "a whole number >= 1"
_SECONDS = "a number of seconds > 0 (e.g. 600 or 2.5)"
_PATH = "an absolute path"
_INI_PATH = "an absolute path of letters, digits and . _ / + - only (supervisord's config holds it)"
_BOOL = "1, 0, true, false, yes or no"
_DURATION = "a duration like 10s, 500ms or 5m (a bare number: seconds)"

# Every setting the runtime reads whose value has a form (free text such as tokens and
# SERVICES has its own parser, which names the entry and the field).
RULES: tuple[tuple[str, str, object], ...] = (
    ("ENTRYPOINT_LOG_LEVEL", "debug, info, warn (or warning) or error", _choice((*LOG_LEVELS, "warning"))),
    ("MAESTRO_PRESEEDED_MODE", "auto, always or never", _choice(PRESEEDED_MODES)),
    ("MAESTRO_PORT_RANGE", "LOW-HIGH with 1 <= LOW <= HIGH <= 65535 (e.g. 8000-8999)", port_range),
    ("MAESTRO_STARTSECS", _WHOLE_0 + " (seconds, e.g. 1)", _whole(0)),
    ("MAESTRO_STARTRETRIES", _WHOLE_0 + " (e.g. 3)", _whole(0)),
    ("MAESTRO_STOPWAITSECS", _WHOLE_0 + " (seconds, e.g. 5)", _whole(0)),
    ("MAESTRO_BUILD_JOBS", _WHOLE_1 + " (services built at once at boot, e.g. 4)", _whole(1)),
    ("MAESTRO_BUILD_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_NPM_INCLUDE_DEV", _BOOL, _choice(tuple(BOOLEANS))),
    ("PIP_INSTALL_OPTIONS", "shell words with balanced quotes", _shell_words),
    ("NPM_INSTALL_OPTIONS", "shell words with balanced quotes", _shell_words),
    ("MAESTRO_FETCH_MAX_BYTES", _WHOLE_1 + " (bytes)", _whole(1)),
    ("MAESTRO_FETCH_CONNECT_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_FETCH_READ_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_FETCH_RETRIES", _WHOLE_0 + " (extra attempts)", _whole(0)),
    ("MAESTRO_FETCH_BACKOFF", "a number of seconds >= 0", _number(positive=False)),
    ("MAESTRO_GIT_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_EXTRACT_MAX_FILES", _WHOLE_1, _whole(1)),
    ("MAESTRO_EXTRACT_MAX_BYTES", _WHOLE_1 + " (bytes)", _whole(1)),
    ("MAESTRO_GITHUB_API_URL", "an http:// or https:// URL", _url),
    ("MAESTRO_GITHUB_CODELOAD_URL", "an http:// or https:// URL", _url),
    ("MAESTRO_SANDBOX_MODE", "auto, require or off", _choice(SANDBOX_MODES)),
    ("MAESTRO_SANDBOX_MEMORY", "a size like 512M, 1G or 1048576, or max", parse_size),
    ("MAESTRO_SANDBOX_CPU_QUOTA_US", _WHOLE_1 + " (microseconds) or max", _whole(1, allow_max=True)),
    ("MAESTRO_SANDBOX_CPU_PERIOD_US", _WHOLE_1 + " (microseconds, e.g. 100000)", _whole(1)),
    ("MAESTRO_SANDBOX_PIDS_MAX", _WHOLE_1 + " or max", _whole(1, allow_max=True)),
    ("MAESTRO_SANDBOX_NET_POLICY", "deny or allow", _choice(NET_POLICIES)),
    ("MAESTRO_FIREWALL_DISABLE", _BOOL, _choice(tuple(BOOLEANS))),
    ("HEALTHCHECK_BUDGET", _SECONDS, _number(positive=True)),
    ("HEALTHCHECK_START_PERIOD", "a number of seconds >= 0", _number(positive=False)),
    ("HEALTHCHECK_PORTS", "port numbers 1-65535 separated by spaces, commas or semicolons", _ports),
    ("MAESTRO_ALLOW_SYSTEM_PATHS", _BOOL, _choice(tuple(BOOLEANS))),
    ("MAESTRO_PYTHON_INSTALLER", "auto, uv or pip", _choice(("auto", "uv", "pip"))),
    ("MAESTRO_PYTHON_INSTALL_MIRROR", "an http://, https:// or file:/// URL", _mirror),
    ("MAESTRO_PYTHON_DOWNLOADS_JSON_URL", "an http:// or https:// URL or an absolute path", _url_or_path),
    ("MAESTRO_PYTHON_INSTALL_DIR", _PATH, _absolute()),
    ("MAESTRO_PYTHON_INSTALL_TIMEOUT", _SECONDS, _number(positive=True)),
    ("MAESTRO_LOG_TIMESTAMPS", _BOOL + " (or off)", _choice((*BOOLEANS, "off", "on"))),
    ("MAESTRO_PROJECT_DOTENV", _BOOL + " (or off)", _choice((*BOOLEANS, "off", "on"))),
    ("MAESTRO_LOCAL_SOURCE_ROOTS", "absolute paths separated by spaces or commas", _absolute_list),
    ("MAESTRO_STATE_DIR", _PATH, _absolute()),
    ("MAESTRO_RUNTIME_DIR", _INI_PATH, _absolute(ini_safe=True)),
    ("SUPERVISOR_CONF_DIR", _INI_PATH, _absolute(ini_safe=True)),
    ("MAESTRO_PORT_LEDGER", _PATH, _absolute()),
    ("MAESTRO_PROJECTS_DIR", _PATH, _absolute()),
    ("MAESTRO_HOME_ROOT", _PATH, _absolute()),
    ("MAESTRO_USERADD_PREFIX", _PATH, _absolute()),
    ("MAESTRO_SERVICES_FILE", _PATH, _absolute()),
    ("MAESTRO_CGROUP_ROOT", _PATH, _absolute()),
    ("MAESTRO_SANDBOX_NET_ALLOW_FILE", _PATH, _absolute()),
    # The controller's defaults (parts.OpsSettings): checked here too, so that every command
    # refuses them and all bad values are named at once, in this form.
    ("MAESTRO_RESTART", "always, on-failure or never", _choice(("always", "on-failure", "never"))),
    ("MAESTRO_BACKOFF_INITIAL", _DURATION, parse_duration),
    ("MAESTRO_BACKOFF_FACTOR", "a number from 1 to 100", _backoff_factor),
    ("MAESTRO_BACKOFF_MAX", _DURATION, parse_duration),
    ("MAESTRO_MAX_RESTARTS", _WHOLE_0 + " (0: forever)", _whole(0)),
    ("MAESTRO_HEALTH_INTERVAL", _DURATION, parse_duration),
    ("MAESTRO_HEALTH_TIMEOUT", _DURATION, parse_duration),
    ("MAESTRO_HEALTH_RETRIES", _WHOLE_1, _whole(1)),
    ("MAESTRO_HEALTH_START_PERIOD", _DURATION, parse_duration),
    ("MAESTRO_LOG_MAX_BYTES", "a whole number >= 1024 (bytes)", _whole(1024)),
    ("MAESTRO_LOG_BACKUPS", _WHOLE_1, _whole(1)),
    ("MAESTRO_ALERT_WEBHOOK", "an http:// or https:// URL", _url),
    ("MAESTRO_METRICS_ADDR", "HOST:PORT (e.g. 0.0.0.0:9100)", _bind_address),
)


def check_environ(env: Mapping[str, str]) -> list[str]:
    """One line per bad value, in a fixed order: the variable, what it holds, what it accepts."""
    problems = []
    for key, accepted, check in RULES:
        text = env.get(key, "").strip()
        if not text:
            continue
        try:
            check(text)  # type: ignore[operator]
        except ValueError:
            shown = text if len(text) <= 40 else text[:39] + "…"
            problems.append(f"{key}={shown!r} is not valid: expected {accepted}")
    return problems


