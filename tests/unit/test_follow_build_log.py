"""``maestro logs --build --follow`` across the cuts that keep a build log bounded (ops/logs.py
follow, sources/buildlog.py after_cut): every line once, in order; what a cut left out before it
was printed, replaced by the marker line. Real files; the writer runs between the follower's
reads (driven from its ``stop`` callback), so each case is exact, not a race."""

from __future__ import annotations

import os
import re

from maestro_runtime.ops.logs import LINE_MAX, follow
from maestro_runtime.sources.buildlog import LAYOUT, CappedLog, after_cut

LINE = b"line %07d of a build printing a lot\n"


def _numbers(emitted: list[str]) -> list[int]:
    return [int(m.group(1)) for line in emitted if (m := re.match(r"line (\d+) ", line))]


def _follow(path, bursts):
    """Follow ``path`` while ``bursts`` (lists of bytes) are written, one per read of the follower."""
    emitted: list[str] = []
    steps = iter([[], *bursts])  # nothing before the follower's first open: it starts at the end
    log = CappedLog(path)
    done = False

    def stop() -> bool:
        nonlocal done
        if done:
            return True
        burst = next(steps, None)
        if burst is None:
            done = True  # one more read after the last write
            return False
        for data in burst:
            log.write(data)
        return False

    try:
        follow(path, emitted.append, stop=stop, interval=0)
    finally:
        log.close()
    return emitted


def test_the_new_place_of_what_was_read_after_a_cut():
    head, marker_then, marker_now = LAYOUT.head, (100, 80), (5100, 81)
    # 5000 more bytes left out, the marker one byte longer: the same byte is 4999 earlier now
    assert after_cut(head + 9000, marker_then, marker_now, head) == head + 9000 - 5000 - 80 + 81
    assert after_cut(head + 6000, marker_then, marker_now, head) == head + 6000 - 5000 - 80 + 81
    assert after_cut(head + 3000, marker_then, marker_now, head) == head + 1  # left out: from the marker
    assert after_cut(500, marker_then, marker_now, head) == 500  # in the head, never moved
    assert after_cut(head + 9000, (0, 0), (0, 0), head) is None  # not cut: a new build wrote it anew
    assert after_cut(head + 9000, marker_now, marker_now, head) is None


def test_a_follower_keeping_up_prints_every_line_once_across_cuts(tmp_path):
    path = tmp_path / "web.build.log"
    path.write_bytes(b"")
    lines = [LINE % i for i in range(800_000)]  # 30 MB: several cuts
    bursts = [[b"".join(lines[i: i + 5000])] for i in range(0, len(lines), 5000)]
    emitted = _follow(path, bursts)
    assert os.path.getsize(path) <= LAYOUT.cap
    assert " bytes of this build log left out here" in path.read_text(errors="replace")
    assert _numbers(emitted) == list(range(800_000))


def test_a_follower_left_behind_goes_on_from_the_marker(tmp_path):
    path = tmp_path / "web.build.log"
    path.write_bytes(b"")
    lines = [LINE % i for i in range(600_000)]
    # 100 lines, then 13 MB at once (the follower reads nothing in between), then the rest
    bursts = [[b"".join(lines[:100])], [b"".join(lines[100:350_000])], [b"".join(lines[350_000:])]]
    emitted = _follow(path, bursts)
    numbers = _numbers(emitted)
    assert numbers[:100] == list(range(100))
    marker_at = next(i for i, line in enumerate(emitted) if " bytes of this build log left out here" in line)
    assert marker_at >= 100
    after = _numbers(emitted[marker_at:])
    assert after == list(range(after[0], 600_000)) and after[0] > 100  # in order, none twice, to the end
    assert len(numbers) == len(set(numbers))


def test_a_rotated_service_log_is_followed_into_the_new_file_from_its_start(tmp_path):
    """What the follow of a service's log did before (binary reads now, for the build log's offsets)."""
    path = tmp_path / "web.log"
    path.write_bytes(b"")
    emitted: list[str] = []
    steps = iter(range(5))

    def stop() -> bool:
        step = next(steps, None)
        if step == 1:
            with path.open("ab") as fh:
                fh.write(b"first\n")
        elif step == 2:  # the listener's last line, then its rotation, before the follower reads again
            with path.open("ab") as fh:
                fh.write(b"last of the old file\n")
            path.rename(tmp_path / "web.log.1")
            path.write_bytes(b"first of the new file\r\nsecond\n")
        return step is None

    follow(path, emitted.append, stop=stop, interval=0)
    assert emitted == ["first", "last of the old file", "first of the new file", "second"]


def test_a_line_that_never_ends_costs_the_follower_a_bounded_buffer(tmp_path):
    # A build printing without a newline (review16b): the file stays within its cap, but the follower
    # kept every byte it read since the last newline (cuts or not), as much as the build printed.
    path = tmp_path / "web.build.log"
    path.write_bytes(b"")
    chunk = b"x" * (1 << 20)
    emitted = _follow(path, [[chunk]] * 24 + [[b"end\n"]])
    assert max(map(len, emitted)) <= LINE_MAX, max(map(len, emitted))
    assert emitted[-1].endswith("end")
