"""Group commit (ops/groupcommit.py) and the account registry's coalesced writes, with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from maestro_runtime.ops.accounts import AccountError, AccountRegistry
from maestro_runtime.ops.groupcommit import GroupCommit


def run_threads(n, target):
    start = threading.Barrier(n)
    results, errors = {}, {}

    def one(i):
        start.wait()
        try:
            results[i] = target(i)
        except Exception as exc:
            errors[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


def test_callers_are_written_together_and_get_their_own_outcome():
    batches = []

    def write(keys):
        batches.append(list(keys))
        time.sleep(0.02)  # a write takes a while: the others queue meanwhile
        return {k: ValueError(f"bad {k}") if k % 5 == 0 else k * 10 for k in keys}

    commit = GroupCommit(write)
    results, errors = run_threads(32, commit.submit)
    assert results == {i: i * 10 for i in range(32) if i % 5}
    assert {i: str(e) for i, e in errors.items()} == {i: f"bad {i}" for i in range(0, 32, 5)}
    assert sorted(k for batch in batches for k in batch) == list(range(32))  # each key written once
    assert commit.writes == len(batches) < 32


def test_same_key_twice_is_written_once():
    seen = []
    commit = GroupCommit(lambda keys: (seen.extend(keys), {k: "ok" for k in keys})[1])
    results, _ = run_threads(8, lambda i: commit.submit("svc_shared"))
    assert set(results.values()) == {"ok"} and seen.count("svc_shared") == commit.writes


def test_a_failing_writer_never_leaves_the_others_waiting():
    def write(keys):
        time.sleep(0.01)
        raise KeyError("bug")

    results, errors = run_threads(8, GroupCommit(write).submit)
    assert not results and len(errors) == 8
    assert all(isinstance(e, (KeyError, RuntimeError)) for e in errors.values())


def test_registry_admissions_are_on_disk_when_admit_returns_in_few_writes(tmp_path, monkeypatch):
    registry = AccountRegistry(tmp_path / "accounts.json")
    monkeypatch.setattr("maestro_runtime.ops.accounts._entry", lambda user, prefix: None)  # no passwd
    saves = []
    real_save = registry._save

    def slow_save(holders):  # the real write (fsync), a little slower: admissions queue meanwhile
        saves.append(len(holders))
        time.sleep(0.01)
        real_save(holders)

    monkeypatch.setattr(registry, "_save", slow_save)

    def admit(i):
        registry.admit(f"svc_{i}", f"service {i}", explicit=False)
        return f"svc_{i}" in AccountRegistry(registry.path).load()  # durable before admit returned

    results, errors = run_threads(32, admit)
    assert not errors and all(results.values()) and len(results) == 32
    assert len(saves) < 32 and saves[-1] == 32
    assert set(AccountRegistry(registry.path).load()) == {f"svc_{i}" for i in range(32)}
    with pytest.raises(AccountError, match="already belongs to service 3"):
        registry.admit("svc_3", "service x", explicit=False)


def test_registry_write_failure_reaches_the_caller_and_is_written_later(tmp_path, monkeypatch):
    registry = AccountRegistry(tmp_path / "accounts.json")
    monkeypatch.setattr("maestro_runtime.ops.accounts._entry", lambda user, prefix: None)
    real_save, calls = registry._save, []

    def failing_once(holders):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device", str(registry.path))
        real_save(holders)

    monkeypatch.setattr(registry, "_save", failing_once)
    with pytest.raises(OSError, match="No space"):
        registry.admit("svc_a", "a", explicit=False)
    registry.admit("svc_b", "b", explicit=False)
    assert set(AccountRegistry(registry.path).load()) == {"svc_a", "svc_b"}
    assert registry.created("svc_a")
    registry.forget("svc_a")
    assert set(AccountRegistry(registry.path).load()) == {"svc_b"}
