"""What a service prints reaches a terminal with no escape it could act on: the container's log
stream (a \\r went back over the ``[name]`` prefix, so a service could print a line that shows as
another service's or a ``[maestro]`` one), ``maestro logs`` (its output and its build log), and
the errors deploy prints (they quote a failed release phase's last lines). Colours stay, and end
with their line. Real boot, real supervisord and log listener, real useradd; the CLI as the
operator runs it."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

# A clipboard write (OSC 52), a screen clear, a carriage return back over the prefix, a bidi override.
HOSTILE = r"\033]52;c;b3duZWQ=\007\033[2J\r2026-01-01T00:00:00.000Z [maestro][error] forged\342\200\256 \033[31mred"
SGR = re.compile(r"\x1b\[[0-9;:]*m")


def acted_on(text: str) -> list[str]:
    """The characters a terminal would act on, colours aside."""
    return [c for c in SGR.sub("", text) if not c.isprintable() and c not in "\n\t"]


def test_output_and_release_errors_carry_no_escape_to_the_terminal(maestro):
    folder = maestro.root / "sources" / "loud"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<h1>loud</h1>")
    spec = maestro.root / "services.yml"
    spec.write_text(json.dumps({"services": [{
        "name": "loud", "repo": str(folder),
        "cmd": f"printf '{HOSTILE}\\n'; exec python3 -m http.server $PORT"}]}))
    maestro.boot(MAESTRO_SERVICES_FILE=str(spec))
    maestro.wait_running(["loud"])

    # the container's stream: the line is loud's, its escapes shown, not performed
    line = wait_for(lambda: next((x for x in maestro.log().splitlines() if "forged" in x), None), 20,
                    what="loud's line in the container log")
    assert re.match(r"\S+ \[loud\] \\x1b\]52;c;b3duZWQ=\\x07\\x1b\[2J\\r2026-01-01T00:00:00.000Z \[maestro\]"
                    r"\[error\] forged\\u202e \x1b\[31mred\x1b\[0m$", line), repr(line)
    assert not acted_on(maestro.log())
    # the service's own file keeps what it wrote; maestro logs shows it as the stream does
    assert "\x1b]52;c;" in (maestro.root / "state" / "logs" / "loud.log").read_text()
    shown = maestro.run("maestro", "logs", "loud").stdout
    assert "forged" in shown and "\\x1b]52" in shown and not acted_on(shown), repr(shown)

    # a deploy whose release phase fails quotes its last lines: escaped too
    bad = maestro.root / "sources" / "bad"
    bad.mkdir(parents=True)
    (bad / "index.html").write_text("<h1>bad</h1>")
    (bad / "Procfile").write_text(f"release: printf '{HOSTILE}\\n'; exit 3\n")
    done = maestro.run("deploy", "--repo", str(bad), "--name", "bad", "--cmd", "python3 -m http.server $PORT",
                       "--yes", "--wait", "0", check=False)
    assert done.returncode != 0 and "release phase failed" in done.stderr, done.stderr
    assert "forged" in done.stderr and not acted_on(done.stderr + done.stdout), repr(done.stderr)
    build = maestro.run("maestro", "logs", "bad", "--build", check=False).stdout
    assert "forged" in build and not acted_on(build), repr(build)
