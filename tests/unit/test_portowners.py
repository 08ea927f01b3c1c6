"""Who listens on a port (control/portowners.py) and what becomes of a squatter (supervision.squatted)."""

from __future__ import annotations

import socket
from dataclasses import replace
from types import SimpleNamespace

from maestro_runtime.control.backoff import Backoff
from maestro_runtime.control.policy import Policy
from maestro_runtime.control.portowners import listener_uids, listeners, squatters
from maestro_runtime.control.runstate import RunState
from maestro_runtime.control.supervision import squatted, step

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TABLE = HEADER + (
    "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 1 1 0\n"
    "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1002        0 2 1 0\n"  # a client
    "   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1003        0 3 1 0\n"
    "   3: garbage\n"
    "   4: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1004        0 4 1 0\n")


def test_listener_uids_reads_only_listening_sockets_of_the_ports():
    # 0x1F90 = 8080: the established socket of uid 1002 is no listener; 8081 is another port
    assert listener_uids(TABLE, {8080}) == {8080: {1001}}
    assert listener_uids(TABLE, {8080, 8081, 9}) == {8080: {1001}, 8081: {1003}}
    assert listener_uids(TABLE, {9}) == {}
    assert listener_uids("", {8080}) == {}
    v6 = HEADER + ("   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
                   "00000000:00000000 00:00000000 00000000  1005        0 5 1 0\n")
    assert listener_uids(v6, {8080}) == {8080: {1005}}


def test_listeners_sees_real_listening_sockets_and_their_user():
    with socket.socket() as four, socket.socket(socket.AF_INET6) as six:
        four.bind(("127.0.0.1", 0))
        six.bind(("::1", 0))
        ports = {four.getsockname()[1], six.getsockname()[1]}
        assert listeners(ports) == {}  # bound, not listening
        four.listen()
        six.listen()
        assert listeners(ports) == {port: {0} for port in ports}  # this test runs as root


def test_squatters_are_every_program_of_another_user_and_strangers_are_named():
    rec = lambda i, uid: SimpleNamespace(id=i, uid=uid)  # noqa: E731
    owner, same_user = rec("web", 1001), rec("admin", 1001)
    squatter, its_worker = rec("evil", 1002), rec("evil-worker", 1002)
    found, strangers = squatters([owner, same_user, squatter, its_worker], owner, {1001, 1002, 0})
    assert [r.id for r in found] == ["evil", "evil-worker"]  # the owner's own user never squats
    assert strangers == {0}
    assert squatters([owner, squatter], owner, {1001}) == ([], set())


def test_a_squatter_is_fatal_with_the_reason_and_its_stop_is_no_crash_to_restart():
    pol = Policy(restart="always", backoff=Backoff(1, 2, 10), max_restarts=0, restart_on_unhealthy=False,
                 essential=False, probe=None)
    running = RunState(phase="RUNNING", last_start=1000.0)
    state, actions = squatted(pol, running, 1010.0, "listened on port 8080 of service web")
    assert state.phase == "FATAL" and state.fatal_reason == "listened on port 8080 of service web"
    assert [(a.kind, a.event) for a in actions] == [("alert", "port_taken")]
    # supervisord then has it STOPPED (the run that started at 1000): nothing more happens, ever.
    stopped = {"statename": "STOPPED", "start": 1000.0, "stop": 1010.0, "exitstatus": 0, "pid": 0}
    for now in (1011.0, 1100.0, 5000.0):
        assert step(pol, state, stopped, now, False) == (state, [])
    _, essential = squatted(replace(pol, essential=True), running, 1010.0, "x")
    assert [a.kind for a in essential] == ["alert", "exit_container"]
