"""The hand-over from the entrypoint to engine.parent: a stop signal that arrives between the exec
and the parent's handlers must stop supervisord, not kill the parent and orphan it.

Real processes: a stand-in for the entrypoint's last step (it starts a child standing in for
supervisord, blocks the stop signals as the entrypoint does, receives SIGTERM, then execs the real
engine.parent). No supervisord answers on the socket: parent's parallel stop is skipped with a
warning and the signal goes to its child, as with a real supervisord.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

HANDOVER = textwrap.dedent("""
    import os, signal, subprocess, sys
    from maestro_runtime.engine import parent
    child = subprocess.Popen(["sleep", "60"])
    signal.pthread_sigmask(signal.SIG_BLOCK, parent.FORWARDED)  # what the entrypoint does
    os.kill(os.getpid(), signal.SIGTERM)  # docker stop, right at the hand-over: pending
    os.execv(sys.executable, [sys.executable, "-m", "maestro_runtime.engine.parent", "/nonexistent.sock",
                              str(child.pid)])
""")


def test_a_stop_signal_pending_across_the_exec_stops_the_child_and_the_parent():
    proc = subprocess.run([sys.executable, "-c", HANDOVER], capture_output=True, text=True, timeout=30)
    # The child got the forwarded SIGTERM and the parent exited with its status (not killed itself).
    assert proc.returncode == 128 + 15, (proc.returncode, proc.stderr)
    assert "parallel stop skipped" in proc.stderr
