"""Log lines as ``[maestro][level] message`` on stderr."""

from __future__ import annotations

import logging
import sys

from maestro_runtime.sources.redact import redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = NAMES.get(record.levelno, record.levelname.lower())
        # One event, one line: a multi-line message must not look like several log lines.
        # And never a credential of a URL, whatever logged it.
        message = redact(record.getMessage()).replace("\n", "\\n")
        return f"[maestro][{level}] {message}"


def setup_logging(level: str = "info") -> logging.Logger:
    logger = logging.getLogger("maestro")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(LEVELS.get(level, logging.INFO))
    logger.propagate = False
    return logger
