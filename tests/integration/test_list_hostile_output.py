"""list-services prints what services wrote (a PROVISIONING row's step, which names a command, a
Procfile command, a build's last lines in an error) with no control character: a service's
output never reaches the operator's terminal as escape sequences (retitle, clear, recolour,
fake rows). Real boot, real supervisord, real useradd; the CLI as the operator runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

# A hostile release phase: its command itself carries a window title (OSC), a screen clear (CSI)
# and a bell, raw in the Procfile, and it prints a line that looks like a build step; then it takes
# its time, so the row stays PROVISIONING. The step shown is root's record of the command (the
# steps file), never what the release printed.
HOSTILE_RELEASE = "printf '$ fake step\\n'; : '\x1b]0;owned\x07\x1b[2J\x1b[31mred'; sleep 30"


def test_a_provisioning_rows_step_carries_no_escape_sequence(maestro):
    folder = maestro.root / "sources" / "loud"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<h1>loud</h1>")
    (folder / "Procfile").write_text(f"release: {HOSTILE_RELEASE}\nworker: printf '\\033[2J'; sleep 3600\n")
    spec = maestro.root / "services.yml"
    spec.write_text(json.dumps({"services": [{"name": "loud", "repo": str(folder),
                                              "cmd": "python3 -m http.server $PORT"}]}))
    maestro.boot(wait=False, MAESTRO_SERVICES_FILE=str(spec))

    def hostile_step():
        done = maestro.run("list-services", "--json", check=False)
        rows = {r["name"]: r for r in json.loads(done.stdout)} if done.returncode == 0 else {}
        step = rows.get("loud", {}).get("step") or ""
        return step if "\x1b" in step else None

    step = wait_for(hostile_step, 60, 0.2, what="loud's release to run")
    # root's record of the command (the printed "$ fake step" has no "sleep 30"); JSON escapes it, ...
    assert step.startswith("release: ") and "sleep 30" in step, step
    table = maestro.run("list-services").stdout
    assert "loud" in table and "PROVISIONING" in table
    # ... the table too, but nothing in it a terminal would act on
    assert not [c for c in table if not c.isprintable() and c != "\n"], repr(table)


def _strict(constant: str):
    raise ValueError(f"{constant} is not JSON")


def test_a_build_that_prints_fake_step_times_leaves_list_services_json(maestro):
    """The controller sums a build log's ``# exit N after Xs`` lines, which a build's own output
    can write too: a ``nan`` there made every list-services --json say NaN, which no JSON parser
    but Python's reads (jq, Go, JavaScript all refuse the whole document)."""
    folder = maestro.root / "sources" / "liar"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<h1>liar</h1>")
    (folder / "railway.json").write_text(json.dumps({"build": {"buildCommand": "echo '# exit 0 after nans'"}}))
    spec = maestro.root / "services.yml"
    spec.write_text(json.dumps({"services": [{"name": "liar", "repo": str(folder),
                                              "cmd": "python3 -m http.server $PORT"}]}))
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running(["liar"])
    build_log = Path(maestro.env["MAESTRO_STATE_DIR"]) / "builds" / "liar.build.log"
    assert "# exit 0 after nans" in build_log.read_text()  # the build printed it

    def measured():
        rows = json.loads(maestro.list_json(), parse_constant=_strict)
        return rows[0] if rows[0].get("build_seconds") is not None else None

    row = wait_for(measured, 30, 0.5, what="the controller to measure liar's build")
    assert 0 <= row["build_seconds"] < 60
