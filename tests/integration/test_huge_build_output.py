"""A failed build or release phase whose output is one enormous line: the error that quotes its
last lines is clipped before it is saved in the record, listed, printed by deploy and sent as an
alert. Before, a release printing 20 MB without a newline made a 40 MB error (deploy's stderr,
the record, every list-services); 300 MB took the deploy command to 2 GB of memory. (The whole
log is still read once by sources/builds.py: see the review report.) Real boot, real supervisord,
real useradd, the CLI as the operator runs it."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_a_release_phase_printing_one_huge_line_fails_with_a_bounded_error(maestro):
    bad = maestro.root / "sources" / "loud"
    bad.mkdir(parents=True)
    (bad / "index.html").write_text("x")
    (bad / "Procfile").write_text("release: head -c 20000000 /dev/zero | tr '\\0' 'x'; echo; echo the end; exit 1\n")
    maestro.boot()
    done = maestro.run("deploy", "--repo", str(bad), "--name", "loud", "--cmd", "python3 -m http.server $PORT",
                       "--yes", "--wait", "0", check=False)
    assert done.returncode == 1 and "release phase failed" in done.stderr and "the end" in done.stderr
    assert len(done.stderr) < 64 * 1024, len(done.stderr)
    assert "characters left out" in done.stderr
    (record,) = (maestro.root / "state" / "services").glob("loud.json")
    assert record.stat().st_size < 64 * 1024
    row = json.loads(maestro.run("list-services", "--json").stdout)
    assert len(json.dumps(row)) < 64 * 1024
