"""Removing a service's programs needs no free space (ops/provision.py Provisioner.deactivate).

A service that failed before its activation keeps last boot's list of process programs; its
removal spares what others hold now. That must hold on a full runtime disk (a real, full tmpfs
in the session's private mount namespace): a service that fails there is removed like any
other, one line, never an OSError out of the boot's provisioning (which would end the boot, and
every other service with it).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from maestro_runtime.spec.model import SpecError
from maestro_runtime.state.records import ServiceRecord
from tests.fixtures.provisioners import bare_provisioner
from tests.integration.test_state_faults import _fill

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts a tmpfs")]


def test_a_failed_service_is_removed_on_a_full_runtime_disk_and_spares_anothers_program(tmp_path):
    provisioner = bare_provisioner(tmp_path)
    programs, store = provisioner.programs, provisioner.store
    launch = programs.launch_dir
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(launch)], check=True)
    try:
        # web had a worker and a clock last boot; web-worker is a service of its own now, running.
        (programs.conf_dir / "web-worker.conf").write_text("[program:web-worker]\n")
        programs.script("web-worker").write_text("#!/bin/sh\n")
        programs.script("web-clock").write_text("#!/bin/sh\n")
        (launch / "web.types").write_text("web-worker\nweb-clock\n")
        store.save(ServiceRecord(id="web-worker", name="web-worker", kind="env", origin="SERVICES[2]",
                                 source="", directory="", user="u", port=1))
        _fill(launch)

        provisioner.record_invalid("web", SpecError("SERVICES[1]", "port", "not a number"))

        assert (programs.conf_dir / "web-worker.conf").exists() and programs.script("web-worker").exists()
        assert not programs.script("web-clock").exists() and not (launch / "web.types").exists()
        assert store.load("web").error == "SERVICES[1]: port: not a number"
    finally:
        subprocess.run(["umount", "-l", str(launch)], check=False)
