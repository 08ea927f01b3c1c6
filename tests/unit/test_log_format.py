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


def test_a_traceback_is_printed_as_prefixed_lines():
    """exc_info is never dropped (an internal error's only trace at ENTRYPOINT_LOG_LEVEL=debug)."""
    try:
        raise KeyError("key")
    except KeyError:
        import sys

        entry = logging.LogRecord("maestro", logging.DEBUG, __file__, 1, "service web: unexpected error", None,
                                  sys.exc_info())
    lines = _Formatter(False).format(entry).split("\n")
    assert lines[0] == "[maestro][debug] service web: unexpected error"
    assert lines[1] == "[maestro][debug] | Traceback (most recent call last):"
    assert lines[-1] == "[maestro][debug] | KeyError: 'key'"
    assert all(line.startswith("[maestro][debug] ") for line in lines)


def test_terminal_safe_keeps_text_and_colours_and_escapes_the_rest():
    from maestro_runtime.log_format import terminal_safe

    assert terminal_safe("GET / 200 ✓\tok") == "GET / 200 ✓\tok"
    assert terminal_safe("\x1b[32mok\x1b[0m") == "\x1b[32mok\x1b[0m\x1b[0m"  # colours end with the line
    assert terminal_safe("x\r[maestro][error] forged") == "x\\r[maestro][error] forged"
    hostile = "\x1b]52;c;Zm9v\x07\x1b[2J\x1b[1A\u202e\x9b"
    assert terminal_safe(hostile) == "\\x1b]52;c;Zm9v\\x07\\x1b[2J\\x1b[1A\\u202e\\x9b"


def test_a_runtime_line_quoting_a_build_acts_on_no_terminal():
    text = _Formatter(False).format(record("build failed, last lines:\nok\r[maestro][info] fine\x1b]0;t\x07"))
    assert text.split("\n")[1] == "[maestro][error] | ok\\r[maestro][info] fine\\x1b]0;t\\x07"
