"""Log lines as ``2026-11-29T22:01:02.123Z [maestro][level] message`` on stderr.

The time is ISO 8601 in UTC (``MAESTRO_LOG_TIMESTAMPS=0`` leaves it out, for a log collector
that stamps lines itself). A multi-line message (a failed build's tail, a traceback logged with
``exc_info``) is printed as lines, each continuation prefixed ``[maestro][level] | `` so no line
can pass for another event.
"""

from __future__ import annotations

import logging
import sys
import time

from maestro_runtime.sources.redact import redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}


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
        # Never a credential of a URL, whatever logged it.
        lines = redact(text).rstrip("\n").split("\n")
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
