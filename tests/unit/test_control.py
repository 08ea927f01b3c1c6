"""The controller's pure core: backoff, supervision steps, probe verdicts, alerts, metrics."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from maestro_runtime.control import probes
from maestro_runtime.control.alerts import SIGNATURE_HEADER, Alerts, RateLimit, verify
from maestro_runtime.control.backoff import Backoff
from maestro_runtime.control.policy import Policy, Probe
from maestro_runtime.control.runstate import RunState, RunStateStore
from maestro_runtime.control.supervision import display_state, step
from maestro_runtime.engine.log_listener import LinePrefixer, ServiceLogs, serve


def policy(**kw) -> Policy:
    base = dict(restart="always", backoff=Backoff(1, 2, 10), max_restarts=3, restart_on_unhealthy=False,
                essential=False, probe=None)
    return Policy(**{**base, **kw})


def info(state: str, start: float, stop: float = 0.0, code: int = 0) -> dict:
    return {"statename": state, "start": start, "stop": stop, "exitstatus": code, "pid": 0}


def test_backoff_grows_with_jitter_and_cap():
    b, r = Backoff(1, 2, 5), random.Random(1)
    delays = [b.delay(n, r) for n in range(6)]
    for got, want in zip(delays, (1, 2, 4, 5, 5, 5), strict=True):
        assert want * 0.9 <= got <= min(5, want * 1.1)
    assert Backoff(1, 2, 5).delay(10_000) <= 5  # no overflow


def run_crash_loop(pol: Policy, runs: int):
    """Simulate a service that dies at once every time; return the state and every action."""
    state, now, actions, start = RunState(), 1000.0, [], 1000.0
    state, _ = step(pol, state, info("RUNNING", start), now, False)
    for _ in range(runs * 20):
        now += 0.5
        state, acts = step(pol, state, info("EXITED", start, start + 0.1, 3), now, False)
        actions += acts
        if any(a.kind == "start" for a in acts):
            start = now
            state, _ = step(pol, state, info("RUNNING", start), now, False)
    return state, actions


def test_crash_loop_restarts_then_gives_up_once():
    state, actions = run_crash_loop(policy(), 10)
    assert [a.kind for a in actions].count("start") == 3
    assert [a.event for a in actions if a.kind == "alert"].count("gave_up") == 1
    assert state.phase == "FATAL" and state.restarts == 3 and state.last_exit_code == 3
    assert not any(a.kind == "exit_container" for a in actions)
    _, essential = run_crash_loop(policy(essential=True), 10)
    assert [a.kind for a in essential].count("exit_container") == 1


def test_max_restarts_zero_is_forever_and_never_means_never():
    state, actions = run_crash_loop(policy(max_restarts=0, backoff=Backoff(0.5, 1, 0.5)), 10)
    assert state.phase != "FATAL" and [a.kind for a in actions].count("start") > 5
    state, actions = run_crash_loop(policy(restart="never"), 3)
    assert state.phase == "EXITED" and not [a for a in actions if a.kind == "start"]


def test_on_failure_leaves_a_clean_exit_alone():
    pol = policy(restart="on-failure")
    state, _ = step(pol, RunState(), info("RUNNING", 10), 11, False)
    state, actions = step(pol, state, info("EXITED", 10, 12, 0), 13, False)
    assert state.phase == "EXITED" and actions == []
    state, actions = step(pol, RunState(), info("EXITED", 20, 21, 1), 22, False)
    assert state.phase == "BACKOFF" and [a.event for a in actions] == ["exited"]


def test_operator_stop_wins_and_a_fresh_start_resets_the_count():
    pol = policy()
    state = RunState(phase="FATAL", attempts=3, restarts=3, handled_start=5)
    stopped, actions = step(pol, state, info("EXITED", 5, 6, 3), 100, True)
    assert stopped.phase == "STOPPED" and actions == []
    started, _ = step(pol, state, info("RUNNING", 200), 201, False)
    assert started.phase == "RUNNING" and started.attempts == 0 and started.restarts == 3
    assert display_state(RunState(phase="BACKOFF"), "EXITED") == "BACKOFF"
    assert display_state(RunState(phase="RUNNING"), "RUNNING") == "RUNNING"


def test_a_long_run_resets_the_backoff():
    pol = policy()
    state = RunState(phase="RUNNING", attempts=2, last_start=1)
    state, _ = step(pol, state, info("EXITED", 1, 121, 1), 121, False)
    assert state.attempts == 0 and state.phase == "BACKOFF" and state.next_restart_at <= 121 + 1.1


PROBE = Probe("http", "/", None, None, interval=1, timeout=1, retries=3, start_period=10)


def test_probe_verdicts():
    assert probes.http_verdict(b"HTTP/1.0 404 Not Found\r\n", None).ok
    assert not probes.http_verdict(b"HTTP/1.0 503 Busy\r\n", None).ok
    assert not probes.http_verdict(b"HTTP/1.0 200 OK\r\n", 204).ok
    assert not probes.http_verdict(b"SSH-2.0\r\n", None).ok


def test_unhealthy_after_retries_once_then_recovered_once():
    bad, good = probes.Result(False, "HTTP 503"), probes.Result(True, "HTTP 200")
    state = RunState(phase="RUNNING", last_start=0)
    events = []
    for now, result in [(1, bad), (2, bad), (20, good), (21, bad), (22, bad), (23, bad), (24, bad), (25, good)]:
        change = probes.judge(state, PROBE, result, now, restart_on_unhealthy=True)
        state = change.state
        events.append((change.event, change.restart))
    # failures inside start_period do not count; three in a row turn it unhealthy; one success recovers
    assert [e for e in events if e[0]] == [("unhealthy", True), ("recovered", False)]
    assert state.health == "healthy"
    restarted = probes.new_run(RunState(health="unhealthy", health_alerted=True))
    assert restarted.health == "starting" and restarted.health_alerted  # the recovery is still announced


def test_rate_limit():
    limit = RateLimit(60)
    assert limit.allow("a", "exited", 0) and not limit.allow("a", "exited", 59)
    assert limit.allow("b", "exited", 1) and limit.allow("a", "gave_up", 2) and limit.allow("a", "exited", 61)


def test_alerts_never_block_and_are_signed():
    gate, got = threading.Event(), []

    def slow_post(body: bytes, headers: dict[str, str]) -> int:
        gate.wait(5)  # a webhook that hangs
        got.append((body, headers))
        return 200

    alerts = Alerts("http://127.0.0.1:9/x", "k", post=slow_post, queue_size=2)
    began = time.monotonic()
    results = [alerts.emit("exited", f"s{i}", "exit 3") for i in range(5)]
    assert time.monotonic() - began < 0.5  # enqueue only
    assert results[:2] == [True, True] and alerts.dropped >= 2
    gate.set()
    alerts.close()
    body, headers = got[0]
    assert verify("k", body, headers[SIGNATURE_HEADER]) and json.loads(body)["version"] == 1


def test_alerts_retry_then_give_up():
    calls = []

    def failing(body, headers):
        calls.append(1)
        raise OSError("refused")

    alerts = Alerts("http://127.0.0.1:9/x", post=failing, retries=1)
    alerts.emit("gave_up", "a")
    alerts.close(wait=5)
    assert len(calls) == 2


def test_runstate_store_round_trip(tmp_path):
    store = RunStateStore(tmp_path)
    store.save("api", RunState(phase="FATAL", restarts=4))
    assert store.load("api").restarts == 4 and store.load("other") == RunState()
    store.set_stopped("api", True)
    assert store.stopped("api")
    store.set_stopped("api", False)
    assert not store.stopped("api")


def test_listener_reads_characters_not_bytes(tmp_path):
    """The envelope's len counts characters: ▲ is one character and three bytes."""
    def event(name: str, data: str) -> str:
        payload = f"processname:{name} groupname:{name} pid:1 channel:stdout\n{data}"
        return f"ver:3.0 server:s serial:1 pool:l poolserial:1 eventname:PROCESS_LOG_STDOUT len:{len(payload)}\n" \
               + payload

    stream = io.StringIO(event("web", "▲ ready ✓\n") + event("api", "plain\n") + event("web", "next\n"))
    protocol, out = io.StringIO(), io.BytesIO()
    serve(stream, protocol, {"stdout": out, "stderr": out}, ServiceLogs(tmp_path, 1 << 20, 2))
    lines = out.getvalue().decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["[web] ▲ ready ✓", "[api] plain", "[web] next"]
    assert protocol.getvalue().count("RESULT 2\nOK") == 3
    assert (tmp_path / "web.log").read_text().endswith(" out next\n")


def test_prefixer_keeps_partial_lines():
    p = LinePrefixer()
    assert p.feed("a", "stdout", "hal") == [] and p.feed("a", "stdout", "f\nx") == ["half"]


def test_metrics_are_valid_prometheus_text():
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from maestro_runtime.control.metrics import SnapshotCollector

    rows = [{"name": "busy", "status": "RUNNING", "health": "healthy", "restarts": 2, "cpu_seconds": 12.5,
             "memory_rss": 1234567, "build_seconds": 3.0}, {"name": "off", "status": "STOPPED"}]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: {"version": "1.0", "services": rows}))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("maestro_service_up", (("service", "busy"),))] == 1
    assert values[("maestro_service_up", (("service", "off"),))] == 0
    assert values[("maestro_service_restarts_total", (("service", "busy"),))] == 2
    assert values[("maestro_service_cpu_seconds_total", (("service", "busy"),))] == 12.5
    assert values[("maestro_service_memory_rss_bytes", (("service", "busy"),))] == 1234567
    assert values[("maestro_service_state", (("service", "off"), ("state", "STOPPED")))] == 1
    assert values[("maestro_service_last_build_duration_seconds", (("service", "busy"),))] == 3
    assert "maestro_runtime_info" in families


def test_two_runs_in_the_same_second_are_two_ends():
    """supervisord's start times are whole seconds: a restart within the second must still be seen."""
    pol = policy(backoff=Backoff(0.2, 1, 0.2))
    state, _ = step(pol, RunState(), info("RUNNING", 100), 100.1, False)
    state, actions = step(pol, state, info("EXITED", 100, 100, 3), 100.2, False)
    assert state.phase == "BACKOFF" and [a.event for a in actions] == ["exited"]
    state, actions = step(pol, state, info("EXITED", 100, 100, 3), 100.5, False)
    assert [a.kind for a in actions] == ["start"]
    # The new run started and ended within the same second, between two looks.
    state, actions = step(pol, state, info("EXITED", 100, 100, 3), 100.9, False)
    assert state.phase == "BACKOFF" and state.attempts == 1 and state.next_restart_at is not None
    state, actions = step(pol, state, info("EXITED", 100, 100, 3), 101.0, False)
    assert actions == []  # handled once


def test_a_boot_after_fatal_starts_a_fresh_count_even_when_unseen_alive():
    state = RunState(phase="FATAL", attempts=3, restarts=3, handled_start=50)
    state, actions = step(policy(), state, info("EXITED", 200, 200, 3), 201, False)
    assert state.phase == "BACKOFF" and state.attempts == 0 and not [a for a in actions if a.event == "gave_up"]


def test_a_web_service_ending_cleanly_at_once_is_fatal_not_restarted():
    from maestro_runtime.control.supervision import QUICK_CLEAN_EXIT

    web = policy(listens=True, startsecs=1.0, essential=True)
    seen, _ = step(web, RunState(), info("RUNNING", 100), 100.2, False)
    state, actions = step(web, seen, info("EXITED", 100, 101, 0), 101.3, False)
    assert state.phase == "FATAL" and state.fatal_reason == QUICK_CLEAN_EXIT and state.restarts == 0
    assert [(a.kind, a.event) for a in actions] == [("alert", "gave_up"), ("exit_container", "")]
    assert step(policy(listens=True, restart="on-failure"), seen, info("EXITED", 100, 100, 0), 101, False)[0].phase \
        == "FATAL"
    # restart: never accepts an end; a run that lasted, or one a probe saw serving, is an ordinary end.
    assert step(policy(listens=True, restart="never"), seen, info("EXITED", 100, 100, 0), 101, False)[0].phase \
        == "EXITED"
    assert step(web, seen, info("EXITED", 100, 105, 0), 106, False)[0].phase == "BACKOFF"
    served = replace(seen, health="healthy")
    assert step(web, served, info("EXITED", 100, 101, 0), 102, False)[0].phase == "BACKOFF"
    # Not a web program (a Procfile worker, or no port): the policy alone decides.
    assert step(policy(), seen, info("EXITED", 100, 100, 0), 101, False)[0].phase == "BACKOFF"
    # Running again clears the reason.
    again, _ = step(web, state, info("RUNNING", 200), 200.5, False)
    assert again.phase == "RUNNING" and again.fatal_reason == ""


def test_a_run_killed_by_a_signal_keeps_its_name():
    from maestro_runtime.control.runstate import describe_exit

    seen, _ = step(policy(), RunState(), info("RUNNING", 100), 100.2, False)
    killed = {**info("EXITED", 100, 150, -1), "signal": "SIGKILL"}
    state, actions = step(policy(), seen, killed, 151, False)
    assert state.last_exit_signal == "SIGKILL" and describe_exit(state) == "killed by SIGKILL"
    assert [a.detail for a in actions if a.event == "exited"] == ["killed by SIGKILL"]
    # getAllProcessInfo (no maestro.processStates) has no name for it.
    state, _ = step(policy(), seen, info("EXITED", 100, 150, -1), 151, False)
    assert state.last_exit_signal is None and describe_exit(state) == "killed by a signal"
    assert RunState.from_dict(state.to_dict()) == state  # kept across restarts in runstate/<id>.json


def test_process_states_client_reads_the_json_and_says_none_on_a_fault(tmp_path):
    """A stand-in for supervisord's HTTP answer (the real one is in tests/integration): the client
    parses maestro.processStates' string and returns None on a fault, so callers fall back."""
    import socket

    from maestro_runtime.control import rpc

    def serve_once(path, body: bytes):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)

        def answer():
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n" + body)
            conn.close()
            server.close()

        threading.Thread(target=answer, daemon=True).start()

    rows = [{"name": "api", "statename": "EXITED", "exitstatus": -1, "signal": "SIGTERM", "spawnerr": "<&>"}]
    text = json.dumps(rows).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    serve_once(tmp_path / "a.sock", b"<?xml version='1.0'?><methodResponse><params><param><value><string>"
               + text.encode() + b"</string></value></param></params></methodResponse>")
    assert rpc.fetch(tmp_path / "a.sock", 5) == rows
    serve_once(tmp_path / "b.sock", b"<?xml version='1.0'?><methodResponse><fault><value><struct><member><name>"
               b"faultCode</name><value><int>1</int></value></member></struct></value></fault></methodResponse>")
    assert rpc.fetch(tmp_path / "b.sock", 5) is None
    assert rpc.fetch(tmp_path / "none.sock", 5) is None
    assert rpc.signal_name(9) == "SIGKILL" and rpc.signal_name(200) == "signal 200"


def test_unhealthy_restarts_back_off_then_give_up_once():
    """restart_on_unhealthy: each stop for failing probes waits the backoff before the start,
    counts as a restart in a row, and max_restarts of them give up (FATAL, one gave_up alert)."""
    from maestro_runtime.control.supervision import unhealthy

    pol = policy(restart_on_unhealthy=True, max_restarts=2, probe=PROBE)
    state, now, start, starts, alerts = RunState(), 1000.0, 1000.0, [], []
    state, _ = step(pol, state, info("RUNNING", start), now, False)
    for _ in range(3):
        now += 70  # longer than STABLE_AFTER, but never healthy: the restarts in a row go on counting
        state, _ = step(pol, replace(state, health="unhealthy"), info("RUNNING", start), now, False)
        state, actions = unhealthy(pol, state, now, random.Random(0))
        alerts += [a.event for a in actions if a.kind == "alert"]
        if state.phase == "FATAL":
            break
        assert state.phase == "BACKOFF" and state.next_restart_at > now
        state, acts = step(pol, state, info("STOPPED", start, now), now, False)
        assert not acts  # stopped by the controller: not yet
        now = state.next_restart_at
        state, acts = step(pol, state, info("STOPPED", start, now), now, False)
        starts += [a.kind for a in acts]
        start = now
        state, _ = step(pol, state, info("RUNNING", start), now, False)
    assert starts == ["start", "start"] and alerts == ["gave_up"]
    assert state.phase == "FATAL" and "unhealthy" in state.fatal_reason and state.restarts == 2
    # supervisord's STOPPED afterwards leaves the verdict as it is
    assert step(pol, state, info("STOPPED", start, now + 1), now + 2, False)[0].phase == "FATAL"
