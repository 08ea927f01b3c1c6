"""The benchmark harness in quick mode produces complete results (no timing thresholds: CI is noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import needs_root

pytestmark = [pytest.mark.integration, needs_root]
REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_is_complete(tmp_path):
    prefix = tmp_path / "quick"
    # --no-rebuild: the rebuild figure needs PyPI, which CI may not reach.
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--no-rebuild", "--out", str(prefix)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(prefix.with_suffix(".json").read_text())
    for n, boot in result["boot"].items():
        for key in ("maestro", "floor", "entrypoint_exec", "provision"):
            assert boot[key] and boot[key]["runs"] >= 1, (n, key)
        assert boot["ratio"] > 0
        for peer in result["config"]["peers"]:  # the installed ones (make bench-deps installs them)
            assert boot["peers"][peer] and boot["peers"][peer]["runs"] >= 1, (n, peer)
        if result["config"]["peers"]:
            assert boot["fastest_peer"] and boot["ratio_fastest_peer"] > 0
    assert result["scaling"]["maestro_ms_per_service"] is not None
    for figure in result["healthcheck"].values():
        assert figure["wall"] and figure["cpu"] and figure["curl_serial_wall"]
    for figure in result["list_services"].values():
        assert figure["wall"] and figure["supervisorctl_status_wall"]
    assert result["remove_service"]["wall"] and result["deploy"]["until_answers"]
    dns = result["unresolvable_allowlist"]  # firewall off: a resolver that never answers is never asked
    assert dns["remove"] and dns["deploy"] and dns["dns_queries"]["high"] == 0
    assert result["memory"]["added_rss_mib_per_service"] is not None
    assert {"services_rss", "supervisord_rss", "total_pss"} <= set(result["memory"]["by_role_mib"])
    table = prefix.with_suffix(".md").read_text()
    assert "| N | maestro | bare supervisord (floor) | ratio |" in table
