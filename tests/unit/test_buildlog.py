"""A build's log stays bounded on disk (sources/buildlog.py): its head as written, one marker
saying how many bytes were left out, its end from a line's start. Real files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro_runtime.sources import buildlog
from maestro_runtime.sources.buildlog import CappedLog, Layout, line_start, marker, parse_at_head, placeholder

SMALL = Layout(cap=64 * 1024, head=8 * 1024, keep=16 * 1024)


def _output(lines: int) -> bytes:
    return b"".join(b"line %07d of the build's output\n" % i for i in range(lines))


def _split(data: bytes, layout: Layout) -> tuple[bytes, int, bytes]:
    """(head, bytes left out, end) of a log that was cut."""
    head, rest = data[: layout.head], data[layout.head:]
    assert rest.startswith(b"\n[maestro: "), rest[:100]
    line, _, end = rest[1:].partition(b"\n")
    dropped, length = parse_at_head(rest)
    assert length == len(line) + 2
    return head, dropped, end


def test_marker_and_placeholder_are_read_back():
    assert parse_at_head(marker(123456789) + b"more output") == (123456789, len(marker(123456789)))
    assert parse_at_head(placeholder(SMALL) + b"x") == (0, len(placeholder(SMALL)))
    assert parse_at_head(b"\n# python build of web in /srv, Mon\n") == (0, 0)  # a root header there
    assert parse_at_head(b"[maestro: 5 bytes of this build log left out here]\n") == (0, 0)  # not at a line start
    assert parse_at_head(b"") == (0, 0)


def test_a_cut_starts_at_a_line_when_one_is_near():
    assert line_start(b"rest of a line\nnext line\n") == len(b"rest of a line\n")
    assert line_start(b"x" * 5000 + b"\n", window=4096) == 0  # one long line: kept cut
    assert line_start(b"") == 0


def test_a_layout_that_cannot_hold_its_head_and_end_is_refused():
    with pytest.raises(ValueError, match="head \\+ keep"):
        Layout(cap=10 * 1024, head=8 * 1024, keep=8 * 1024)
    Layout()  # the default holds


def test_a_short_build_is_kept_as_written(tmp_path):
    path = tmp_path / "web.build.log"
    data = _output(100)
    with CappedLog(path, SMALL) as log:
        log.write(data)
    assert path.read_bytes() == data


def test_past_its_head_root_says_what_may_be_cut(tmp_path):
    path = tmp_path / "web.build.log"
    data = _output(500)  # 18 KB: past the head, under the cap
    with CappedLog(path, SMALL) as log:
        log.write(data)
    assert path.read_bytes() == data[: SMALL.head] + placeholder(SMALL) + data[SMALL.head:]


@pytest.mark.parametrize("chunk", [1, 4096, 65536, 1 << 20], ids=["bytes", "4k", "64k", "1M"])
def test_a_loud_build_keeps_its_head_and_end_and_says_how_much_is_left_out(tmp_path, chunk):
    path = tmp_path / "web.build.log"
    data = _output(60_000 if chunk > 1 else 6_000)  # 2 MB (200 KB a byte at a time)
    with CappedLog(path, SMALL) as log:
        for at in range(0, len(data), chunk):
            log.write(data[at: at + chunk])
            assert log.size <= SMALL.cap + chunk
    kept = path.read_bytes()
    assert len(kept) <= SMALL.cap + chunk
    head, dropped, end = _split(kept, SMALL)
    assert head == data[: SMALL.head]
    assert data.endswith(end) and len(end) >= SMALL.keep - buildlog.LINE_WINDOW
    assert end.startswith(b"line ")  # from a line's start
    assert dropped == len(data) - len(head) - len(end)  # exact, across every cut


def test_the_count_goes_on_across_the_plans_of_one_build(tmp_path):
    """The node build after the python one, a release after both: each opens the log again."""
    path = tmp_path / "web.build.log"
    data = _output(20_000)
    parts = [data[: len(data) // 3], data[len(data) // 3: 2 * len(data) // 3], data[2 * len(data) // 3:]]
    for part in parts:
        with CappedLog(path, SMALL) as log:
            for at in range(0, len(part), 65536):
                log.write(part[at: at + 65536])
    head, dropped, end = _split(path.read_bytes(), SMALL)
    assert head == data[: SMALL.head] and data.endswith(end)
    assert dropped == len(data) - len(head) - len(end)


def test_the_build_cannot_write_the_marker_root_reads_back(tmp_path):
    """Output that reaches the head's offset gets root's line before it: a fake marker printed
    there is the build's text, never read back as the count."""
    path = tmp_path / "web.build.log"
    fake = marker(10**15)
    with CappedLog(path, SMALL) as log:
        log.write(b"x" * SMALL.head + fake)
    with CappedLog(path, SMALL) as log:
        assert log.dropped == 0
        log.write(b"y\n" * SMALL.cap)
    _head, dropped, _end = _split(path.read_bytes(), SMALL)
    assert dropped == len(fake) + 2 * SMALL.cap - len(_end)


def test_a_log_that_cannot_be_written_drops_the_rest_and_never_raises(caplog):
    """A full disk: /dev/full fails every write with ENOSPC, as a full file system does."""
    log = CappedLog(Path("/dev/full"), SMALL)
    try:
        log.write(b"output\n")
        log.write(b"more output\n")
    finally:
        log.close()
    assert log.failed
    assert [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()] == [
        "build log /dev/full: cannot write ([Errno 28] No space left on device); "
        "the rest of this step's output is left out"]


def test_the_log_is_root_only_and_never_followed_through_a_link(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "web.build.log").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        CappedLog(tmp_path / "web.build.log", SMALL)
    with CappedLog(tmp_path / "api.build.log", SMALL) as log:
        log.write(b"x\n")
    assert (tmp_path / "api.build.log").stat().st_mode & 0o777 == 0o600
