"""The stores: what a run keeps (definition, hash, options, one batch per step), the inbox, which runs
need a driver, and the lease rules.

One suite for every store: each test that takes the ``store`` fixture runs in memory, on SQLite and
on PostgreSQL (skipped, naming FLOWCORE_TEST_POSTGRES, where no server is given), so the stores
cannot drift apart; ``durable_store`` is the two that keep runs on disk.
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
from adapters.store import (LEASE_SECONDS, Lease, LeaseHeld, LeaseLost, MemoryStore, RunExists, RunInfo, Snapshot,
                            SqliteStore, StoreError, UnknownRun, decode_event, encode_event, open_store)
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


def make_store(kind: str, request, tmp_path):
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(str(tmp_path / "flowcore.db"))
    return open_store(request.getfixturevalue("postgres_url"))  # a schema of this test's own


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path):
    s = make_store(request.param, request, tmp_path)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgres"])
def durable_store(request, tmp_path):
    s = make_store(request.param, request, tmp_path)
    yield s
    s.close()


def age_lease(store, run_id: str, heartbeat: float) -> None:
    """Set the heartbeat of the run's lease, as a driver that stopped beating would have left it."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE leases SET heartbeat = ? WHERE run_id = ?", (heartbeat, run_id))
    else:
        import pg_support

        pg_support.execute(store.url, "UPDATE leases SET heartbeat = %s WHERE run_id = %s", (heartbeat, run_id))


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


def test_a_stale_lease_from_another_host_is_taken_over(durable_store):
    store = durable_store
    store.acquire("r1", Lease(pid=1, host="elsewhere.example", token="far"))
    assert store.driver("r1") is not None
    age_lease(store, "r1", time.time() - LEASE_SECONDS - 1)
    assert store.driver("r1") is None
    store.acquire("r1", Lease.mine())


def test_a_heartbeat_keeps_a_lease_from_another_host_fresh(durable_store):
    store = durable_store
    far = Lease(pid=1, host="elsewhere.example", token="far")
    store.acquire("r1", far)
    age_lease(store, "r1", time.time() - LEASE_SECONDS - 1)
    store.heartbeat("r1", far)
    with pytest.raises(LeaseHeld):
        store.acquire("r1", Lease.mine())


def test_a_heartbeat_or_release_by_a_process_that_lost_the_lease_changes_nothing(durable_store):
    store = durable_store
    old, new = Lease(pid=1, host="elsewhere.example", token="old"), Lease(pid=2, host="far.example", token="new")
    store.acquire("r1", old)
    age_lease(store, "r1", time.time() - LEASE_SECONDS - 1)
    store.acquire("r1", new)  # taken over
    store.heartbeat("r1", old)
    store.release("r1", old)
    assert store.driver("r1") == new


def test_the_host_id_can_be_set_and_then_only_the_heartbeat_tells(store, monkeypatch):
    """With FLOWCORE_HOST_ID, processes of one machine are on distinct hosts: a lease of another host
    id holds until its heartbeat runs out, whether or not its pid lives here."""
    monkeypatch.setenv("FLOWCORE_HOST_ID", "host-a")
    me = Lease.mine()
    assert me.host == "host-a"
    store.acquire("r1", Lease(pid=dead_pid(), host="host-b", token="b"))
    with pytest.raises(LeaseHeld, match="host-b"):
        store.acquire("r1", me)
    assert store.driver("r1").token == "b"
    store.acquire("r2", Lease(pid=dead_pid(), host="host-a", token="a"))  # this host: its pid is checked
    store.acquire("r2", me)


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
               "trigger": {"t": 1}, "traceback": 'Traceback (most recent call last):\n  File "n.py", line 1\n'}
    for cls in EVENT_TYPES.values():
        fields = {f.name: samples[f.name] for f in attrs.fields(cls)}
        for event in (cls(**fields), cls(**{**fields, **({"item": None} if "item" in fields else {})})):
            if "item" in fields and event.item is None and cls.__name__ != "NodeCancelRequested":
                continue  # only a node cancel may leave its item out
            assert decode_event(json.loads(json.dumps(encode_event(event)))) == event, cls.__name__


def test_a_failure_logged_before_tracebacks_were_kept_reads_back_without_one():
    from adapters.store import decode_event
    from scheduler_core import NodeFailed

    old = {"type": "NodeFailed", "node": "n", "item": [], "attempt": 1, "at": 2.0, "error_type": "KeyError",
           "message": "'k'", "started_at": 1.0, "logs": []}  # as an older flowcore wrote it
    assert decode_event(old) == NodeFailed(node="n", attempt=1, at=2.0, error_type="KeyError", message="'k'",
                                           started_at=1.0)


def test_a_process_that_lost_the_lease_cannot_append_to_the_run(store):
    """Fencing: a driver that was frozen while another took the run over has its writes refused."""
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


def test_a_write_after_the_lease_was_let_go_is_refused_and_one_without_a_lease_is_not(store):
    store.create_run(info("r1"), FIRST, "f0")
    mine = Lease(pid=os.getpid(), host="elsewhere", token="mine")
    store.acquire("r1", mine)
    store.release("r1", mine)
    seq = store.post("r1", "cancel", {"reason": "stop"}, at=1.0)
    with pytest.raises(LeaseLost):
        store.append("r1", 1, EVERY_EVENT[1:2], "f1", {"status": "failed"}, done=[(seq, "applied", None)], lease=mine)
    assert store.info("r1").status == "running" and len(store.load("r1")[1]) == 1  # nothing of it was kept
    assert [r.seq for r in store.pending("r1")] == [seq]
    store.append("r1", 1, EVERY_EVENT[1:2], "f1", {})  # a store's own caller (the first step of a run) fences nothing


# -- queued runs, the inbox, and which runs need a driver -------------------------------------------

def queued(run_id: str, trigger=None) -> RunInfo:
    import attrs

    return attrs.evolve(info(run_id), status="queued", trigger=trigger)


def test_a_queued_run_has_no_batch_yet_and_keeps_its_trigger(store):
    store.create_run(queued("q", trigger={"n": [1, 2]}), [], "")
    got = store.info("q")
    assert (got.status, got.trigger, got.started_at) == ("queued", {"n": [1, 2]}, None)
    assert store.load("q")[1:] == ([], [])
    store.append("q", 0, FIRST, "f0", {"status": "running", "started_at": 1.0})
    assert store.load("q")[2] == ["f0"] and store.info("q").status == "running"


def test_requests_wait_in_the_inbox_until_a_logged_step_marks_them(store):
    store.create_run(info("r1"), FIRST, "f0")
    store.create_run(info("r2"), FIRST, "f0")
    a = store.post("r1", "answer", {"node": "ask", "item": [], "port": None, "value": {"ok": [1]}}, at=10.0)
    b = store.post("r1", "cancel_node", {"node": "x", "item": None, "reason": "no"}, at=11.0)
    c = store.post("r1", "cancel", {"reason": "stop"}, at=12.0)
    other = store.post("r2", "cancel", {"reason": "other run"}, at=13.0)
    assert len({a, b, c, other}) == 4
    assert [(r.seq, r.kind, r.body, r.at) for r in store.pending("r1")] == [
        (a, "answer", {"node": "ask", "item": [], "port": None, "value": {"ok": [1]}}, 10.0),
        (b, "cancel_node", {"node": "x", "item": None, "reason": "no"}, 11.0),
        (c, "cancel", {"reason": "stop"}, 12.0)]
    store.append("r1", 1, EVERY_EVENT[4:5], "f1", {}, done=[(a, "applied", None), (b, "refused", "x has ended")])
    assert [r.seq for r in store.pending("r1")] == [c]
    assert (store.request(a).state, store.request(a).reason) == ("applied", None)
    assert (store.request(b).state, store.request(b).reason) == ("refused", "x has ended")
    assert store.request(a).run_id == "r1" and store.request(b).body == {"node": "x", "item": None, "reason": "no"}
    store.refuse_pending("r1", "the run has already finished")
    assert store.pending("r1") == [] and store.request(c).reason == "the run has already finished"
    assert [r.seq for r in store.pending("r2")] == [other]  # another run's inbox is its own


def test_a_step_that_fails_to_be_logged_marks_no_request(store):
    store.create_run(info("r1"), FIRST, "f0")
    seq = store.post("r1", "cancel", {"reason": "stop"}, at=1.0)
    with pytest.raises(StoreError):
        store.append("r1", 0, EVERY_EVENT[5:6], "dup", {}, done=[(seq, "applied", None)])  # step 0 is logged
    assert [r.seq for r in store.pending("r1")] == [seq]


def test_a_request_to_an_unknown_run_is_refused(store):
    with pytest.raises(UnknownRun, match="nope"):
        store.post("nope", "cancel", {"reason": "x"}, at=1.0)


def test_due_runs_are_those_that_need_a_driver_oldest_first(store):
    now = time.time()
    me = Lease.mine()
    far = Lease(pid=1, host="elsewhere.example", token="far")
    store.create_run(queued("a_queued"), [], "")
    store.create_run(info("b_running_no_driver"), FIRST, "f0")
    store.create_run(info("c_waiting_due"), FIRST, "f0")
    store.update("c_waiting_due", {"status": "waiting", "wake_at": now - 1})
    store.create_run(info("d_waiting_later"), FIRST, "f0")
    store.update("d_waiting_later", {"status": "waiting", "wake_at": now + 10})
    store.create_run(info("e_waiting_asked"), FIRST, "f0")
    store.update("e_waiting_asked", {"status": "waiting"})
    store.post("e_waiting_asked", "answer", {"node": "ask", "item": [], "port": None, "value": 1}, at=now)
    store.create_run(info("f_driven_elsewhere"), FIRST, "f0")
    store.acquire("f_driven_elsewhere", far)
    store.post("f_driven_elsewhere", "cancel", {"reason": "x"}, at=now)  # its driver applies it
    store.create_run(info("g_succeeded"), FIRST, "f0")
    store.update("g_succeeded", {"status": "succeeded", "finished_at": now})
    store.create_run(info("h_waiting_nothing"), FIRST, "f0")
    store.update("h_waiting_nothing", {"status": "waiting"})
    store.create_run(info("i_mine"), FIRST, "f0")
    store.acquire("i_mine", me)
    due = ["a_queued", "b_running_no_driver", "c_waiting_due", "e_waiting_asked", "i_mine"]
    assert store.due_runs(now, me, 10) == due
    assert store.due_runs(now, me, 2) == due[:2]
    assert store.due_runs(now, me, 10, skip={"a_queued", "i_mine"}) == due[1:4]
    assert store.due_runs(now + 20, me, 10) == due[:3] + ["d_waiting_later"] + due[3:]
    store.release("f_driven_elsewhere", far)
    assert "f_driven_elsewhere" in store.due_runs(now, me, 10)


def test_runs_filter_by_status_and_workflow_and_keep_the_newest(store):
    import attrs

    for i, (workflow, status) in enumerate([("one", "queued"), ("two", "running"), ("one", "succeeded"),
                                            ("one", "queued"), ("two", "queued")]):
        run = attrs.evolve(info(f"r{i}"), workflow=workflow, status=status)
        store.create_run(run, [] if status == "queued" else FIRST, "f0")
    ids = lambda rows: [r["run_id"] for r in rows]  # noqa: E731
    assert ids(store.runs()) == ["r0", "r1", "r2", "r3", "r4"]
    assert ids(store.runs(status="queued")) == ["r0", "r3", "r4"]
    assert ids(store.runs(workflow="one")) == ["r0", "r2", "r3"]
    assert ids(store.runs(status="queued", workflow="one")) == ["r0", "r3"]
    assert ids(store.runs(status="queued", limit=2)) == ["r3", "r4"]
    assert ids(store.runs(limit=1)) == ["r4"]
    assert store.runs(status="failed") == [] and store.runs(workflow="none") == []


def test_a_snapshot_is_kept_and_a_later_one_replaces_it(store):
    store.create_run(info("r1"), FIRST, "f0")
    assert store.snapshot("r1") is None
    store.save_snapshot("r1", Snapshot(index=1, version="v1", data='{"a": "\\u00e9 \\n"}\n[1]'))
    store.save_snapshot("r1", Snapshot(index=3, version="v2", data="é and more\n"))
    assert store.snapshot("r1") == Snapshot(index=3, version="v2", data="é and more\n")
    assert store.snapshot("r2") is None


def test_a_summary_update_changes_the_run_row_only(store):
    store.create_run(info("r1"), FIRST, "f0")
    store.update("r1", {"status": "waiting", "started_at": 1.5, "wake_at": 99.5, "options": {"runner": "thread"}})
    got = store.info("r1")
    assert (got.status, got.started_at, got.wake_at, got.options) == ("waiting", 1.5, 99.5, {"runner": "thread"})
    assert got.definition == info().definition and got.definition_intact()
    assert store.load("r1")[2] == ["f0"]


def test_a_live_driver_is_named_until_it_lets_go(store):
    assert store.driver("r1") is None
    far = Lease(pid=1, host="elsewhere.example", token="far")
    store.acquire("r1", far)
    assert store.driver("r1") == far
    store.heartbeat("r1", far)
    store.release("r1", far)
    assert store.driver("r1") is None


def test_a_summary_update_under_a_lost_lease_is_refused(store):
    """A driver frozen between its last step and writing the run's summary must not overwrite the
    summary of the process that took the run over."""
    store.create_run(info("r1"), FIRST, "f0")
    old, new = Lease(pid=1, host="old.example", token="old"), Lease(pid=2, host="new.example", token="new")
    store.acquire("r1", old)
    store.update("r1", {"status": "running"}, lease=old)
    store.release("r1", old)
    store.acquire("r1", new)
    store.update("r1", {"status": "succeeded", "finished_at": 2.0}, lease=new)
    with pytest.raises(LeaseLost):
        store.update("r1", {"status": "waiting", "wake_at": None}, lease=old)
    assert store.info("r1").status == "succeeded"


def test_next_wake_is_the_earliest_timer_of_a_waiting_run(store):
    assert store.next_wake() is None
    for run_id, status, wake_at in [("a", "waiting", 50.0), ("b", "waiting", 20.0), ("c", "waiting", None),
                                    ("d", "running", 5.0), ("e", "succeeded", 1.0)]:
        store.create_run(info(run_id), FIRST, "f0")
        store.update(run_id, {"status": status, "wake_at": wake_at})
    assert store.next_wake() == 20.0


def test_due_runs_look_past_a_page_of_runs_others_drive(store):
    """Many due runs held by live drivers elsewhere come first; the free one behind them is found."""
    far = Lease(pid=1, host="elsewhere.example", token="far")
    for i in range(120):
        store.create_run(queued(f"held-{i:03d}"), [], "")
        store.acquire(f"held-{i:03d}", far)
    store.create_run(queued("free"), [], "")
    assert store.due_runs(time.time(), Lease.mine(), 1) == ["free"]


def test_a_request_written_by_hand_whose_body_is_not_json_reads_as_none(durable_store):
    """Both SQL stores read the inbox alike (``store.SqlStatements``): a row someone wrote by hand with
    a body that is not JSON is pending with body None (the inbox refuses it), never an error."""
    durable_store.create_run(info("r1"), FIRST, "f0")
    seq = durable_store.post("r1", "cancel", {"reason": "stop"}, at=1.0)
    if isinstance(durable_store, SqliteStore):
        with sqlite3.connect(durable_store.path) as conn:
            conn.execute("UPDATE inbox SET body = ? WHERE seq = ?", ("{not json", seq))
    else:
        import pg_support

        pg_support.execute(durable_store.url, "UPDATE inbox SET body = %s WHERE seq = %s", ("{not json", seq))
    assert [(r.seq, r.body) for r in durable_store.pending("r1")] == [(seq, None)]
