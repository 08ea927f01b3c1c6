"""Readable runtime logs: ISO 8601 times (or none), a multi-line message printed as prefixed lines."""

import logging
import re

from maestro_runtime.log_format import _Formatter
from maestro_runtime.settings import Settings


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("maestro", logging.ERROR, __file__, 1, msg, None, None)


def test_iso_timestamp_and_lines():
    text = _Formatter(True).format(record("service web: build failed, last lines:\nnpm ERR! one\nnpm ERR! two"))
    lines = text.split("\n")
    assert len(lines) == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[maestro\]\[error\] service web: build failed, "
                        r"last lines:", lines[0])
    assert lines[1].endswith("[maestro][error] | npm ERR! one") and "\\n" not in text


def test_timestamps_off():
    assert _Formatter(False).format(record("hello")) == "[maestro][error] hello"
    assert not Settings.from_env({"MAESTRO_LOG_TIMESTAMPS": "0"}).log_timestamps
    assert Settings.from_env({}).log_timestamps
