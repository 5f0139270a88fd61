"""The stores: what a run keeps (definition, hash, options, one batch per step) and the lease rules.

Every behaviour is checked on both stores, since a Postgres store will have to pass the same tests.
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from adapters.engine import Engine, definition_hash
from adapters.store import (LEASE_SECONDS, Lease, LeaseHeld, MemoryStore, RunExists, RunInfo, SqliteStore, StoreError,
                            UnknownRun, decode_event, encode_event)
from adapters.leases import process_stat
from durable_nodes import dead_pid
from scheduler_core import (CancelConfirmed, CancelRequested, InputProvided, NodeFailed, NodeSucceeded,
                            Resumed, RunStarted, TimerFired)

EVERY_EVENT = [
    RunStarted(at=1.0, trigger={"a": [1, 2]}),
    NodeSucceeded(node="n", item=(2, 0), attempt=1, at=2.0, ports={"result": None, "x": [1]}, started_at=1.5),
    NodeFailed(node="m", attempt=2, at=3.0, error_type="ValueError", message="bad", started_at=2.5),
    TimerFired(timer="retry:3", at=4.0),
    InputProvided(node="ask", item=(1,), at=5.0, value="yes", port="send"),
    CancelRequested(at=6.0, reason="stop"),
    CancelConfirmed(node="m", attempt=2, at=7.0, abandoned=True),
    Resumed(at=8.0),
]
FIRST = EVERY_EVENT[:1]


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "flowcore.db"))
    yield s
    s.close()


def info(run_id="r1", definition=None):
    definition = definition or {"name": "w", "nodes": [{"id": "a", "type": "noop"}], "connections": []}
    return RunInfo(run_id=run_id, workflow="w", definition=definition, definition_hash=definition_hash(definition),
                   options={"runner": "serial", "max_parallel": 3, "path": "/x/w.yaml"})


def test_a_run_keeps_its_definition_hash_and_options(store):
    store.create_run(info(), FIRST, "f0")
    got = store.info("r1")
    assert got.definition == info().definition
    assert got.definition_hash == definition_hash(info().definition)
    assert got.options == {"runner": "serial", "max_parallel": 3, "path": "/x/w.yaml"}


def test_every_event_type_survives_the_log_unchanged(store):
    store.create_run(info(), EVERY_EVENT[:4], "f0")
    store.append("r1", 1, EVERY_EVENT[4:], "f1", {})
    _, batches, prints = store.load("r1")
    assert [list(b) for b in batches] == [EVERY_EVENT[:4], EVERY_EVENT[4:]]
    assert prints == ["f0", "f1"]


def test_event_encoding_round_trips_item_paths_as_tuples():
    for event in EVERY_EVENT:
        assert decode_event(encode_event(event)) == event


def test_a_second_run_with_the_same_id_is_refused_and_the_first_is_kept(store):
    store.create_run(info(), FIRST, "f0")
    with pytest.raises(RunExists, match="r1"):
        store.create_run(info(definition={"name": "other", "nodes": [], "connections": []}), FIRST, "g0")
    assert store.info("r1").definition == info().definition
    assert store.load("r1")[2] == ["f0"]


def test_a_batch_out_of_order_is_refused_and_nothing_of_it_is_kept(store):
    store.create_run(info(), FIRST, "f0")
    store.append("r1", 1, EVERY_EVENT[1:2], "f1", {"status": "running"})
    with pytest.raises(StoreError):
        store.append("r1", 1, EVERY_EVENT[2:3], "g1", {"status": "failed"})
    _, batches, prints = store.load("r1")
    assert ([list(b) for b in batches], prints) == ([FIRST, EVERY_EVENT[1:2]], ["f0", "f1"])
    assert store.info("r1").status == "running"


def test_a_run_is_created_together_with_its_first_batch(store):
    store.create_run(info(), FIRST, "f0")
    _, batches, prints = store.load("r1")
    assert ([list(b) for b in batches], prints) == ([FIRST], ["f0"])


def test_a_batch_and_the_run_summary_are_written_together(store):
    store.create_run(info(), FIRST, "f0")
    store.append("r1", 1, EVERY_EVENT[1:2], "f1", {"status": "running", "started_at": 1.0})
    assert store.info("r1").summary() == {"run_id": "r1", "workflow": "w", "status": "running",
                                          "started_at": 1.0, "finished_at": None}


def test_an_unknown_run_is_reported_as_such(store):
    with pytest.raises(UnknownRun, match="nope"):
        store.load("nope")


def test_runs_lists_every_run_in_the_order_they_were_created(store):
    for run_id in ("b", "a", "c"):
        store.create_run(info(run_id), FIRST, "f0")
    assert [r["run_id"] for r in store.runs()] == ["b", "a", "c"]
    assert store.runs()[0] == {"run_id": "b", "workflow": "w", "status": "running", "started_at": None,
                               "finished_at": None}


def test_sqlite_keeps_runs_across_store_instances(tmp_path):
    path = str(tmp_path / "flowcore.db")
    first = SqliteStore(path)
    first.create_run(info(), EVERY_EVENT, "f0")
    first.close()
    again = SqliteStore(path)
    assert again.load("r1")[1] == [EVERY_EVENT]


def test_sqlite_store_uses_wal_so_readers_never_wait_for_the_driver(tmp_path):
    store = SqliteStore(str(tmp_path / "flowcore.db"))
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "flowcore.db"
    path.write_bytes(b"this is not sqlite at all\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a usable flowcore database"):
        SqliteStore(str(path))
    assert path.read_bytes() == before


def test_a_path_that_cannot_be_opened_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        SqliteStore(str(tmp_path))  # a directory


# -- leases -----------------------------------------------------------------------------------------

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc (Linux)")


def test_a_live_driver_on_this_host_keeps_its_run(store):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            store.acquire("r1", Lease(pid=other.pid, host=socket.gethostname(), token="other"))
            with pytest.raises(LeaseHeld, match=f"process {other.pid}"):
                store.acquire("r1", Lease.mine())
        finally:
            other.kill()


def test_a_dead_driver_on_this_host_is_taken_over_at_once(store):
    store.acquire("r1", Lease(pid=dead_pid(), host=socket.gethostname(), token="dead"))
    store.acquire("r1", Lease.mine())


@needs_proc
def test_a_driver_whose_pid_another_process_took_since_is_taken_over_at_once(store):
    """The lease names the process by pid and start time: a live process with that pid that started
    at another time is not the driver."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            started = process_stat(other.pid).started
            host = socket.gethostname()
            store.acquire("r1", Lease(pid=other.pid, host=host, token=f"{other.pid}-1-{started}"))
            with pytest.raises(LeaseHeld):
                store.acquire("r1", Lease.mine())
            store.release("r1", Lease(pid=other.pid, host=host, token=f"{other.pid}-1-{started}"))
            store.acquire("r1", Lease(pid=other.pid, host=host, token=f"{other.pid}-1-{int(started) - 1}"))
            store.acquire("r1", Lease.mine())
        finally:
            other.kill()


@needs_proc
def test_a_driver_that_died_but_is_not_yet_reaped_is_taken_over_at_once(store):
    other = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while process_stat(other.pid).state != "Z":  # exited, not waited for
            assert time.monotonic() < deadline
            time.sleep(0.01)
        store.acquire("r1", Lease(pid=other.pid, host=socket.gethostname(), token="zombie"))
        store.acquire("r1", Lease.mine())
    finally:
        other.wait()


def test_a_lease_from_another_host_holds_until_it_runs_out(store):
    store.acquire("r1", Lease(pid=1, host="elsewhere.example", token="far"))
    with pytest.raises(LeaseHeld, match="elsewhere.example"):
        store.acquire("r1", Lease.mine())


def test_a_released_lease_frees_the_run(store):
    mine = Lease(pid=1, host="elsewhere.example", token="far")
    store.acquire("r1", mine)
    store.release("r1", mine)
    store.acquire("r1", Lease.mine())


def test_a_stale_lease_from_another_host_is_taken_over(tmp_path):
    path = str(tmp_path / "flowcore.db")
    store = SqliteStore(path)
    store.acquire("r1", Lease(pid=1, host="elsewhere.example", token="far"))
    stale = time.time() - LEASE_SECONDS - 1
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE leases SET heartbeat = ? WHERE run_id = 'r1'", (stale,))
    store.acquire("r1", Lease.mine())


def test_a_heartbeat_keeps_a_lease_from_another_host_fresh(tmp_path):
    path = str(tmp_path / "flowcore.db")
    store = SqliteStore(path)
    far = Lease(pid=1, host="elsewhere.example", token="far")
    store.acquire("r1", far)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE leases SET heartbeat = ? WHERE run_id = 'r1'", (time.time() - LEASE_SECONDS - 1,))
    store.heartbeat("r1", far)
    with pytest.raises(LeaseHeld):
        store.acquire("r1", Lease.mine())


def test_engine_with_no_db_keeps_everything_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = Engine(runner="serial")
    engine.run({"name": "w", "nodes": [{"id": "a", "type": "noop"}], "connections": []}, run_id="m1")
    assert isinstance(engine.store, MemoryStore)
    assert os.listdir(tmp_path) == []


def test_every_event_type_round_trips_through_the_stored_form():
    """What a store writes of an event reads back as the same event, for every event type (an
    optional field left None, such as a node cancel's ``item``, included)."""
    import attrs

    from adapters.store import decode_event, encode_event
    from scheduler_core import EVENT_TYPES

    samples = {"node": "n", "item": (2, 0), "attempt": 1, "at": 1.5, "ports": {"result": [1]}, "started_at": 1.0,
               "logs": ("a line",), "error_type": "ValueError", "message": "bad", "timer": "delay:1",
               "value": {"x": 1}, "port": "ok", "reason": "why", "abandoned": True, "max_parallel": 3,
               "trigger": {"t": 1}}
    for cls in EVENT_TYPES.values():
        fields = {f.name: samples[f.name] for f in attrs.fields(cls)}
        for event in (cls(**fields), cls(**{**fields, **({"item": None} if "item" in fields else {})})):
            if "item" in fields and event.item is None and cls.__name__ != "NodeCancelRequested":
                continue  # only a node cancel may leave its item out
            assert decode_event(json.loads(json.dumps(encode_event(event)))) == event, cls.__name__


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_process_that_lost_the_lease_cannot_append_to_the_run(tmp_path, kind):
    """Fencing: a driver that was frozen while another took the run over has its writes refused."""
    from adapters.store import LeaseLost, MemoryStore

    store = MemoryStore() if kind == "memory" else SqliteStore(str(tmp_path / "s.db"))
    store.create_run(info("r1"), EVERY_EVENT[:1], "f0")
    old = Lease(pid=os.getpid(), host=socket.gethostname(), token="old")
    new = Lease(pid=os.getpid(), host="elsewhere", token="new")
    store.acquire("r1", old)
    store.append("r1", 1, EVERY_EVENT[1:2], "f1", {}, lease=old)
    store.release("r1", old)
    store.acquire("r1", new)  # another took it over
    with pytest.raises(LeaseLost):
        store.append("r1", 2, EVERY_EVENT[2:3], "f2", {}, lease=old)
    store.append("r1", 2, EVERY_EVENT[2:3], "f2", {}, lease=new)
    assert len(store.load("r1")[1]) == 3
