"""Live runs through the Python API, in one process: submit, the worker, answers and cancels through
the inbox, whoever drives the run.

Each test runs twice: on a SQLite store of its own and on a PostgreSQL schema of its own (skipped,
naming FLOWCORE_TEST_POSTGRES, where no server is given); ``engine(tmp_path)`` opens the test's
store. Where two parties are needed (a driver and someone
answering), the driver runs in a thread of this process: the lease rules treat it as a live
process's, which is what an answer from another process meets (the CLI tests do that with real
processes).
"""
import contextlib
import threading
import time

import pytest

from adapters import Engine, RequestPending, RunInterrupted, RunRefused, Worker
from adapters.store import open_store
from nodes_for_tests import task

STORES: dict = {}  # a test's tmp_path -> its store's address (the ``store_kind`` fixture sets it)


@pytest.fixture(autouse=True, params=["sqlite", "postgres"])
def store_kind(request, tmp_path):
    STORES[tmp_path] = (str(tmp_path / "live.db") if request.param == "sqlite"
                        else request.getfixturevalue("postgres_url"))
    yield request.param
    STORES.pop(tmp_path, None)

ASK = {"name": "ask",
       "nodes": [{"id": "ask", "type": "hil", "prompt": "Ship?", "choices": ["ship", "hold"], "timeout": 30},
                 task("shipped", "echo"), task("held", "echo"), task("timed_out", "echo")],
       "connections": [{"from": "ask", "to": "shipped", "port": "ship"}, {"from": "ask", "to": "held", "port": "hold"},
                       {"from": "ask", "to": "timed_out", "port": "timeout"}]}


def statuses(result) -> dict:
    return {r["node"]: r["status"] for r in result.to_dict()["nodes"] if r["item"] is None}


def _exists(e, run_id) -> bool:
    return any(r["run_id"] == run_id for r in e.runs())


def engine(tmp_path, **kw) -> Engine:
    return Engine(db=STORES[tmp_path], **kw)


def eventually(condition, timeout=20.0, every=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return False


def test_a_submitted_run_is_queued_until_a_worker_starts_it(tmp_path):
    e = engine(tmp_path)
    wf = {"name": "chain", "nodes": [task("a", "add"), task("b", "double")], "connections": [{"from": "a", "to": "b"}]}
    run_id = e.submit(wf, trigger=1, run_id="q1")
    assert run_id == "q1"
    queued = e.status("q1")
    assert queued.status == "queued" and queued.to_dict()["started_at"] is None
    assert [r["run_id"] for r in e.runs(status="queued")] == ["q1"]
    with pytest.raises(RunRefused, match="already exists"):
        e.submit(wf, run_id="q1")
    assert Worker(e).run_once() == 1
    done = e.status("q1")
    assert done.status == "succeeded" and done.record("b")["output"] == 4
    assert e.runs(status="queued") == [] and [r["run_id"] for r in e.runs(workflow="chain")] == ["q1"]


def test_runs_filters_by_status_and_workflow_and_keeps_the_newest(tmp_path):
    e = engine(tmp_path)
    one = {"name": "one", "nodes": [task("a", "echo")]}
    two = {"name": "two", "nodes": [task("a", "echo")]}
    for i in range(3):
        e.submit(one, run_id=f"one-{i}")
    e.run(two, run_id="two-0")
    assert [r["run_id"] for r in e.runs(workflow="one")] == ["one-0", "one-1", "one-2"]
    assert [r["run_id"] for r in e.runs(workflow="one", limit=2)] == ["one-1", "one-2"]
    assert [r["run_id"] for r in e.runs(status="succeeded")] == ["two-0"]


def test_an_answer_reaches_a_run_another_driver_is_lingering_on(tmp_path):
    driver, asker = engine(tmp_path, linger=30), engine(tmp_path)
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("run", driver.run(ASK, run_id="r")))
    t.start()
    assert eventually(lambda: asker.store.driver("r") is not None and _exists(asker, "r")
                      and statuses(asker.status("r"))["ask"] == "waiting")
    answered = asker.resume("r", node="ask", port="ship", input="go", wait=20)
    assert answered.applied_by  # the lingering driver applied it
    t.join(20)
    assert results["run"].status == "succeeded"
    assert statuses(results["run"]) == {"ask": "succeeded", "shipped": "succeeded", "held": "skipped",
                                        "timed_out": "skipped"}


def test_an_answer_given_after_the_timeout_fell_due_is_refused_and_the_timeout_branch_runs(tmp_path):
    e = engine(tmp_path, linger=0)
    wf = {**ASK, "nodes": [{**ASK["nodes"][0], "timeout": 0.2}, *ASK["nodes"][1:]]}
    assert e.run(wf, run_id="late").status == "waiting"  # nobody drives it when the timeout falls due
    time.sleep(0.4)
    with pytest.raises(RunRefused, match="timed out"):
        e.resume("late", node="ask", port="ship", input="too late")
    after = e.status("late")
    assert after.status == "succeeded"
    assert statuses(after) == {"ask": "succeeded", "shipped": "skipped", "held": "skipped", "timed_out": "succeeded"}
    assert e.store.pending("late") == []


def test_an_answer_given_before_the_timeout_fell_due_wins_even_if_applied_later(tmp_path):
    e = engine(tmp_path, linger=0)
    wf = {**ASK, "nodes": [{**ASK["nodes"][0], "timeout": 0.5}, *ASK["nodes"][1:]]}
    e.run(wf, run_id="early")
    # written to the inbox now, before the timeout; applied only after it fell due, by a later driver
    store = open_store(STORES[tmp_path])
    store.post("early", "answer", {"node": "ask", "item": [], "port": "ship", "value": "x"}, at=time.time())
    time.sleep(0.7)
    Worker(e, linger=0).run_once()
    assert statuses(e.status("early"))["shipped"] == "succeeded"


@contextlib.contextmanager
def driven_elsewhere(e, run_id: str):
    """Meanwhile, a live driver of the run that never looks into its inbox."""
    lease = e._acquire(run_id)
    try:
        yield
    finally:
        e.store.release(run_id, lease)


def test_a_request_another_driver_does_not_apply_in_time_stays_in_the_inbox(tmp_path):
    e = engine(tmp_path, linger=0)
    e.run(ASK, run_id="slow")
    with driven_elsewhere(e, "slow"), pytest.raises(RequestPending, match="stays in the run's inbox"):
        e.resume("slow", node="ask", port="ship", input="x", wait=0.2)
    assert [r.kind for r in e.store.pending("slow")] == ["answer"]
    Worker(e, linger=0).run_once()  # the next driver applies it
    assert e.status("slow").status == "succeeded" and e.store.pending("slow") == []


def test_a_wait_for_another_driver_cut_short_by_ctrl_c_leaves_the_request_in_the_inbox(tmp_path):
    """Ctrl-C while waiting: the request is pending, as when the wait runs out (the command exits 3,
    not 1 as for a run that failed or was cancelled)."""
    import _thread

    e = engine(tmp_path, linger=0)
    e.run(ASK, run_id="slow")
    with driven_elsewhere(e, "slow"):
        threading.Timer(0.2, _thread.interrupt_main).start()
        with pytest.raises(RequestPending, match="interrupted while waiting.*stays in the run's inbox"):
            e.resume("slow", node="ask", port="ship", input="x", wait=10)
    assert [r.kind for r in e.store.pending("slow")] == ["answer"]


def test_an_answer_to_an_instance_that_is_not_waiting_is_refused_at_once_and_not_written(tmp_path):
    e = engine(tmp_path, linger=0)
    wf = {**ASK, "nodes": [*ASK["nodes"], {"id": "other", "type": "hil"}]}
    e.run(wf, run_id="r")
    e.resume("r", node="ask", port="hold", input=1)
    with pytest.raises(RunRefused, match="not waiting"):
        e.resume("r", node="ask", port="ship", input=2)
    with pytest.raises(RunRefused, match="offers no choices"):
        e.resume("r", node="other", port="maybe", input=2)
    with pytest.raises(RunRefused, match="no node"):
        e.cancel("r", node="nope")
    with pytest.raises(RunRefused, match="nothing left to cancel"):
        e.cancel("r", node="held")
    assert e.store.pending("r") == []  # none of them was written to the inbox


def test_cancel_of_a_queued_run_records_every_instance_cancelled(tmp_path):
    e = engine(tmp_path)
    wf = {"name": "chain", "nodes": [task("a", "echo"), task("b", "echo")], "connections": [{"from": "a", "to": "b"}]}
    e.submit(wf, run_id="q")
    result = e.cancel("q", reason="changed my mind")
    assert result.status == "cancelled"
    assert result.to_dict()["error"] == {"node": None, "type": "cancelled", "message": "changed my mind"}
    assert set(statuses(result).values()) == {"cancelled"} and result.to_dict()["started_at"] is None
    assert Worker(e).run_once() == 0  # nothing left for a worker
    with pytest.raises(RunRefused, match="already finished"):
        e.cancel("q")


def test_cancel_of_one_node_of_a_queued_run_is_applied_before_anything_starts(tmp_path):
    e = engine(tmp_path)
    wf = {"name": "two", "nodes": [task("a", "echo"), task("b", "echo"), task("after_a", "echo")],
          "connections": [{"from": "a", "to": "after_a"}]}
    e.submit(wf, run_id="q", trigger=5)
    assert e.cancel("q", node="a").applied_by == "queued"
    Worker(e).run_once()
    done = e.status("q")
    assert done.status == "succeeded"  # a cancel by request is not a failure
    assert statuses(done) == {"a": "cancelled", "b": "succeeded", "after_a": "skipped"}
    assert done.record("a")["attempts"] == 0  # it never started


def test_cancel_of_a_waiting_node_no_one_drives_lets_the_run_go_on(tmp_path):
    e = engine(tmp_path, linger=0)
    wf = {"name": "w", "nodes": [{"id": "ask", "type": "hil"}, task("after", "echo"), task("other", "echo")],
          "connections": [{"from": "ask", "to": "after"}]}
    assert e.run(wf, run_id="w").status == "waiting"
    result = e.cancel("w", node="ask", reason="not needed")
    assert result.status == "succeeded"
    assert statuses(result) == {"ask": "cancelled", "after": "skipped", "other": "succeeded"}
    assert result.record("ask")["error"] == {"type": "cancelled", "message": "not needed"}
    with pytest.raises(RunRefused, match="finished"):
        e.cancel("w", node="ask")


def test_cancel_of_a_run_a_worker_drives_cancels_its_running_attempt(tmp_path):
    e = engine(tmp_path)
    wf = {"name": "long", "nodes": [task("slow", "patient", params={"seconds": 20})]}
    e.submit(wf, run_id="long")
    worker = Worker(engine(tmp_path))
    t = threading.Thread(target=worker.run_forever)
    t.start()
    try:
        assert eventually(lambda: e.status("long").status == "running" and e.store.driver("long") is not None)
        started = time.monotonic()
        result = e.cancel("long", reason="enough", wait=20)
        assert result.applied_by and time.monotonic() - started < 10
        assert eventually(lambda: e.status("long").status == "cancelled")
        assert statuses(e.status("long")) == {"slow": "cancelled"}
    finally:
        worker.stop()
        t.join(20)


def test_a_stopped_worker_drains_its_runs_and_another_worker_finishes_them(tmp_path):
    e = engine(tmp_path)
    wf = {"name": "pair", "nodes": [task("first", "sleep", params={"seconds": 0.6}), task("second", "echo")],
          "connections": [{"from": "first", "to": "second"}]}
    e.submit(wf, run_id="p", trigger=7)
    first = Worker(engine(tmp_path), grace=5)
    t = threading.Thread(target=first.run_forever)
    t.start()
    assert eventually(lambda: e.store.driver("p") is not None and statuses(e.status("p"))["first"] == "running")
    first.stop()
    t.join(20)
    assert not t.is_alive()
    drained = e.status("p")
    # the attempt in flight finished within the grace period and was recorded; nothing new started
    assert statuses(drained) == {"first": "succeeded", "second": "pending"} and drained.status == "running"
    assert e.store.driver("p") is None
    Worker(engine(tmp_path)).run_once()
    assert e.status("p").status == "succeeded" and e.status("p").record("second")["output"] == 7


def test_a_delay_no_one_drives_fires_when_a_worker_polls_after_its_due_time(tmp_path):
    e = engine(tmp_path, linger=0)
    wf = {"name": "later", "nodes": [{"id": "wait_a_bit", "type": "delay", "seconds": 1.2}, task("then", "echo")],
          "connections": [{"from": "wait_a_bit", "to": "then"}]}
    assert e.run(wf, run_id="d", trigger="x").status == "waiting"
    info = e.store.info("d")
    assert info.status == "waiting" and info.wake_at is not None
    assert Worker(e, linger=0).run_once() == 0  # not due yet: nothing to drive
    worker = Worker(engine(tmp_path), linger=0)
    t = threading.Thread(target=worker.run_forever)
    t.start()
    try:
        assert eventually(lambda: e.status("d").status == "succeeded")
    finally:
        worker.stop()
        t.join(20)
    delay = e.status("d").record("wait_a_bit")
    assert delay["finished_at"] - (info.wake_at) < 1.0  # fired by the worker's poll, soon after it fell due


def test_a_driver_frozen_before_its_last_summary_write_leaves_the_new_drivers_summary(tmp_path, store_kind):
    """A's drive ended (the run waits for an answer) and A froze before writing the run's summary; its
    lease ran out (as seen from another host) and B took over and finished the run. A's late summary
    write is refused: the run stays listed as succeeded."""
    wf = {"name": "w", "nodes": [{"id": "ask", "type": "hil"}, task("then", "echo")],
          "connections": [{"from": "ask", "to": "then"}]}
    a = engine(tmp_path, linger=0)
    freeze, frozen = threading.Event(), threading.Event()
    real_update = a.store.update

    def frozen_update(run_id, summary, **kw):
        frozen.set()
        freeze.wait(30)
        real_update(run_id, summary, **kw)
    a.store.update = frozen_update
    outcome = {}

    def drive():
        try:
            outcome["a"] = a.run(wf, run_id="r").status
        except Exception as exc:  # noqa: BLE001 - what A meets is the test's subject
            outcome["a"] = exc
    t = threading.Thread(target=drive)
    t.start()
    assert frozen.wait(20)
    _lease_ran_out(store_kind, STORES[tmp_path], "r")
    b = engine(tmp_path, linger=0)
    assert b.resume("r", node="ask", input=1).status == "succeeded"
    freeze.set()
    t.join(20)
    assert isinstance(outcome["a"], RunInterrupted) and "no longer holds the run's lease" in str(outcome["a"])
    assert [r["status"] for r in b.runs()] == ["succeeded"]


def _lease_ran_out(kind: str, db: str, run_id: str) -> None:
    """Make the run's lease one of another host whose heartbeat stopped long ago."""
    if kind == "sqlite":
        import sqlite3

        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE leases SET host = 'frozen.example', heartbeat = 0 WHERE run_id = ?", (run_id,))
    else:
        import pg_support

        pg_support.execute(db, "UPDATE leases SET host = 'frozen.example', heartbeat = 0 WHERE run_id = %s", (run_id,))


def test_a_cancel_waiting_for_a_worker_that_stops_instead_applies_it_itself(tmp_path):
    e = engine(tmp_path)
    wf = {"name": "slow", "nodes": [task("a", "sleep", params={"seconds": 1.0}), task("b", "echo")],
          "connections": [{"from": "a", "to": "b"}]}
    e.submit(wf, run_id="s")
    worker = Worker(engine(tmp_path), grace=0.5)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    eventually(lambda: e.status("s").record("a")["status"] == "running")
    worker.stop()  # it drains: it applies no request any more, and lets the run go once its grace is over
    time.sleep(0.15)  # (its drive has looked at its inbox for the last time)
    t0 = time.monotonic()
    result = e.cancel("s", reason="not now", wait=10)
    thread.join()
    assert time.monotonic() - t0 < 5  # it did not wait out its 10 s for a process that had let the run go
    assert result.status == "cancelled" and result.to_dict()["error"]["message"] == "not now"
