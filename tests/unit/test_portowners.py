"""Who listens on a port (control/portowners.py) and what becomes of a squatter (supervision.squatted)."""

from __future__ import annotations

import socket
from dataclasses import replace
from types import SimpleNamespace

import pytest

from maestro_runtime.control.backoff import Backoff
from maestro_runtime.control.policy import Policy
from maestro_runtime.control.portowners import diag_replies, diag_request, listener_uids, listeners, squatters
from maestro_runtime.control.runstate import RunState
from maestro_runtime.control.supervision import squatted, step

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TABLE = HEADER + (
    "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 1 1 0\n"
    "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1002        0 2 1 0\n"  # a client
    "   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1003        0 3 1 0\n"
    "   3: garbage\n"
    "   4: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1004        0 4 1 0\n")


def test_listener_uids_reads_the_sockets_holding_the_ports():
    # 0x1F90 = 8080: a listener, and a socket connected from it; 8081 is another port
    assert listener_uids(TABLE, {8080}) == {8080: {1001, 1002}}
    assert listener_uids(TABLE, {8080, 8081, 9}) == {8080: {1001, 1002}, 8081: {1003}}
    assert listener_uids(TABLE, {9}) == {}
    assert listener_uids("", {8080}) == {}
    # Within the kernel's ephemeral range a connection may be anyone's outgoing one: listeners only.
    assert listener_uids(TABLE, {8080}, (8000, 9000)) == {8080: {1001}}
    timewait = HEADER + ("   0: 0100007F:1F90 0100007F:9C40 06 00000000:00000000 00:00000000 00000000     0"
                         "        0 0 1 0\n")
    assert listener_uids(timewait, {8080}) == {}
    v6 = HEADER + ("   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
                   "00000000:00000000 00:00000000 00000000  1005        0 5 1 0\n")
    assert listener_uids(v6, {8080}) == {8080: {1005}}


def _free_port(after: int = 20000) -> int:
    """Below the kernel's ephemeral range, as MAESTRO_PORT_RANGE's (default 8000-8999)."""
    for port in range(after, after + 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


def test_listeners_sees_real_listening_sockets_and_their_user():
    with socket.socket() as four, socket.socket(socket.AF_INET6) as six:
        ports = {_free_port(), _free_port(21000)}
        assert listeners(ports) == {}
        four.bind(("127.0.0.1", min(ports)))
        six.bind(("::1", max(ports)))
        four.listen()
        six.listen()
        assert listeners(ports) == {port: {0} for port in ports}  # this test runs as root


def test_listeners_sees_a_socket_that_binds_the_port_without_listening():
    # A squat that never listens: invisible in /proc/net/tcp, yet the owner's bind fails (review16b).
    with socket.socket() as sock:
        port = _free_port()
        sock.bind(("0.0.0.0", port))
        with socket.socket() as owner:
            owner.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError):
                owner.bind(("0.0.0.0", port))
        assert listeners({port}) == {port: {0}}


def test_listeners_sees_a_socket_connected_from_the_port():
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = _free_port()
        client.bind(("127.0.0.1", port))
        client.connect(server.getsockname())
        assert listeners({port}) == {port: {0}}


def test_the_sock_diag_query_filters_by_port_and_its_replies_are_read():
    request = diag_request(8080, socket.AF_INET)
    assert len(request) == 16 + 56 + 4 + 16 and request.count((8080).to_bytes(2, "little")) == 2
    reply = bytearray(16 + 72)
    reply[0:6] = (len(reply)).to_bytes(4, "little") + (20).to_bytes(2, "little")
    reply[17] = 10
    reply[16 + 64:16 + 68] = (1234).to_bytes(4, "little")
    done = (16).to_bytes(4, "little") + (3).to_bytes(2, "little") + bytes(10)
    assert diag_replies(bytes(reply) + done) == ([(10, 1234)], True)
    assert diag_replies(bytes(reply)) == ([(10, 1234)], False)
    error = ((20).to_bytes(4, "little") + (2).to_bytes(2, "little") + bytes(10)
             + (-22).to_bytes(4, "little", signed=True))
    with pytest.raises(OSError):
        diag_replies(error)


def test_squatters_are_every_program_of_another_user_and_strangers_are_named():
    rec = lambda i, uid: SimpleNamespace(id=i, uid=uid)  # noqa: E731
    owner, same_user = rec("web", 1001), rec("admin", 1001)
    squatter, its_worker = rec("evil", 1002), rec("evil-worker", 1002)
    found, strangers = squatters([owner, same_user, squatter, its_worker], owner, {1001, 1002, 0})
    assert [r.id for r in found] == ["evil", "evil-worker"]  # the owner's own user never squats
    assert strangers == {0}
    assert squatters([owner, squatter], owner, {1001}) == ([], set())
    # The controller's services, then every record (its tasks among them): each squatter once.
    task = rec("grabber", 1003)
    found, strangers = squatters([owner, squatter, owner, squatter, task], owner, {1002, 1003})
    assert [r.id for r in found] == ["evil", "grabber"] and strangers == set()


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
