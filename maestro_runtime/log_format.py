"""Log lines as ``2026-11-29T22:01:02.123Z [maestro][level] message`` on stderr.

The time is ISO 8601 in UTC (``MAESTRO_LOG_TIMESTAMPS=0`` leaves it out, for a log collector
that stamps lines itself). A multi-line message (a failed build's tail, a traceback logged with
``exc_info``) is printed as lines, each continuation prefixed ``[maestro][level] | `` so no line
can pass for another event.

:func:`terminal_safe` is how any text a service wrote (its output, its build's, names and
commands from its files) reaches a terminal or the container's log stream.
"""

from __future__ import annotations

import logging
import re
import sys
import time

from maestro_runtime.sources.redact import redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}


# Colours (SGR: ESC [ params m) only change how the text after them looks: kept. Any other escape
# moves the cursor, clears the screen, sets the title or the clipboard (OSC 52).
_SGR = re.compile(r"(\x1b\[[0-9;:]*m)")
_RESET = "\x1b[0m"


def terminal_safe(line: str) -> str:
    """One line a service wrote, as a terminal may show it: printable text, tabs and colours as
    they are; every other control or format character shown escaped (``\\r``, ``\\x1b``,
    ``\\u202e``): a carriage return cannot move back over the line's prefix to forge another
    service's or a ``[maestro]`` line, an escape cannot act on the terminal. Colours end with
    the line, so a line cannot hide or recolour the ones after it."""
    if line.isprintable():
        return line
    parts = _SGR.split(line)
    out = [part if i % 2 else "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in part)
           for i, part in enumerate(parts)]
    return "".join(out) + (_RESET if len(parts) > 1 else "")


def terminal_safe_text(text: str) -> str:
    """:func:`terminal_safe` for each line of a multi-line text (an error quoting a build's tail)."""
    return "\n".join(terminal_safe(line) for line in text.split("\n"))


class _Formatter(logging.Formatter):
    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        level = NAMES.get(record.levelno, record.levelname.lower())
        text = record.getMessage()
        if record.exc_info and not record.exc_text:  # logging.Formatter.format's cache, reused
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # a traceback (logged at debug for a bug) is printed, never dropped
            text = f"{text.rstrip()}\n{record.exc_text}"
        # Never a credential of a URL, nor an escape a service wrote (a build's tail, a file name).
        lines = [terminal_safe(line) for line in redact(text).rstrip("\n").split("\n")]
        stamp = ""
        if self.timestamps:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + \
                f".{int(record.msecs):03d}Z "
        head = f"{stamp}[maestro][{level}] "
        return "\n".join([head + lines[0], *(f"{head}| {line}" for line in lines[1:])])


def setup_logging(level: str = "info", timestamps: bool = True) -> logging.Logger:
    """The runtime's own lines on stderr; ``timestamps`` is ``settings.log_timestamps``."""
    logger = logging.getLogger("maestro")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(timestamps))
    logger.addHandler(handler)
    logger.setLevel(LEVELS.get(level, logging.INFO))
    logger.propagate = False
    return logger
