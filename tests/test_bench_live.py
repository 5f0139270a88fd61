"""The live section's contenders do what its report says (``bench/live.py``, small sizes).

Worker processes really drive the runs (each run succeeded, reported by a worker process that is not
this one); an answer sample is an answer the worker applied to a run it was driving; a timer sample
of a long delay was fired by the worker taking the run over, a short one within the drive that
parked it; the idle worker drove nothing; the CPU reading follows a process that spins.
"""
import os
import subprocess
import sys
import time

import pytest

from adapters import Engine
from bench import live
from bench.durability import FreshDb
from bench.engine_runs import RunDidNotSucceed


class Paths:
    """Fresh SQLite paths (``bench.durability.FreshDb``), remembering each one it gave."""

    def __init__(self, fresh):
        self.fresh, self.given = fresh, []

    def __call__(self) -> str:
        self.given.append(self.fresh())
        return self.given[-1]


@pytest.fixture
def fresh_db():
    with FreshDb() as fresh:
        yield Paths(fresh)


@pytest.fixture
def worker(fresh_db):
    db = fresh_db()
    Engine(db=db)
    w = live.started_worker(db, f"{db}.worker.log")
    yield db, w
    w.stop()


FAILING = {"name": "failing", "nodes": [{"id": "x", "type": "python", "call": "builtins:int"}]}  # int(None)


def test_the_ten_node_workflow_is_a_small_dag_of_noop_python_nodes_not_a_chain():
    wf = live.ten_node_workflow()
    preds: dict = {}
    for c in wf["connections"]:
        preds.setdefault(c["to"], []).append(c["from"])
    assert len(wf["nodes"]) == 10 and all(n["call"] == "bench.nodes:nothing" for n in wf["nodes"])
    assert len([n for n in wf["nodes"] if n["id"] not in preds]) > 1  # several roots
    assert any(len(p) > 1 for p in preds.values())  # and joins


def test_one_worker_process_drives_every_submitted_run_to_success(fresh_db):
    go, check = live.worker_drive(fresh_db, 12, live.ten_node_workflow(), 1)
    engine = Engine(db=fresh_db.given[-1])
    assert {r["status"] for r in engine.runs()} == {"queued"}  # submitted only: nothing ran here
    driven = check(go())
    (pid, drove), = driven.by_worker.items()
    assert pid != os.getpid()
    assert sorted(drove) == sorted(driven.run_ids) and all(ends == ["succeeded"] for ends in drove.values())
    assert len(driven.run_ids) == 12 and {r["status"] for r in engine.runs()} == {"succeeded"}
    assert driven.launched == {pid: 12}  # its last line: one drive a run


def test_two_worker_processes_share_the_runs_and_each_run_succeeds(fresh_db):
    go, check = live.worker_drive(fresh_db, 40, live.ten_node_workflow(), 2)
    driven = check(go())
    assert len(driven.by_worker) == 2 and os.getpid() not in driven.by_worker
    reported = {r for drove in driven.by_worker.values() for r in drove}
    assert reported == set(driven.run_ids)
    assert driven.extra >= 0
    assert all(driven.launched[pid] >= driven.drives(pid) for pid in driven.by_worker)  # refused ones log nothing


def test_the_engine_loop_runs_every_run_in_this_process(fresh_db):
    go, check = live.engine_loop(fresh_db, 5, live.ten_node_workflow())
    driven = check(go())
    assert len(driven.run_ids) == 5 and driven.by_worker == {}
    assert {r["status"] for r in Engine(db=fresh_db.given[-1]).runs()} == {"succeeded"}


def test_a_run_that_does_not_succeed_stops_the_benchmark(fresh_db):
    go, _ = live.engine_loop(fresh_db, 2, FAILING)
    with pytest.raises(RunDidNotSucceed, match="failing"):
        go()
    go, check = live.worker_drive(fresh_db, 2, FAILING, 1)
    with pytest.raises(RunDidNotSucceed, match="2 of 2 runs did not succeed"):
        check(go())


def test_answer_samples_are_answers_the_worker_applied_to_runs_it_drove(worker):
    db, w = worker
    samples = live.answer_samples(db, w, 3, batch=3)
    assert len(samples) == 3
    for s in samples:
        assert s.driver_pid == w.pid != os.getpid()
        assert s.applied_by == "another process"
        assert 0 < s.seconds < 5
    engine = Engine(db=db)
    answered = [r["run_id"] for r in engine.runs(workflow="live-answer")]
    live.wait_until(lambda: set(answered) <= set(w.drove()), "the worker's log", timeout=10)  # logged after the store
    assert all(w.drove()[r] == ["succeeded"] for r in answered)  # the worker drove each from start to end
    assert all(engine.status(r).record("after")["status"] == "succeeded" for r in answered)


def test_timer_samples_long_delays_fire_by_takeover_short_ones_within_the_drive(worker):
    db, w = worker
    samples = live.timer_samples(db, w, 4, long=1.2, short=0.2, gap=0.05)
    assert [(s.delay, s.by_takeover) for s in samples] == [(1.2, True), (0.2, False)] * 2
    for s in samples:
        assert 0 <= s.seconds < 1.0
        assert s.late_record == pytest.approx(0, abs=1e-6)  # the record is stamped with the due time
    drove = w.drove()
    long_runs = [r["run_id"] for r in Engine(db=db).runs(workflow="live-timer")][::2]
    assert all(drove[r] == ["waiting", "succeeded"] for r in long_runs)  # let go, then taken over


def test_the_idle_worker_drives_nothing_and_its_runs_stay_as_they_were(fresh_db):
    db = fresh_db()
    counts = live.idle_store(db, finished=3, waiting=2)
    assert counts == {"succeeded": 3 + 2, "waiting": 2 + 2}
    cpu, wall, w = live.idle_cpu(db, 2.0, settle=0.5)
    assert w.drove() == {} and 1.9 < wall < 10
    assert 0 <= cpu / wall < 0.2
    assert Engine(db=db).runs(status="waiting") and {r["status"] for r in Engine(db=db).runs()} == {"succeeded", "waiting"}


def test_cpu_seconds_follow_a_spinning_process_and_not_a_sleeping_one():
    spinning = subprocess.Popen([sys.executable, "-c", live.SPIN, str(10**10)])
    sleeping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        before = live.cpu_seconds(spinning.pid), live.cpu_seconds(sleeping.pid)
        time.sleep(1.0)
        spun, slept = live.cpu_seconds(spinning.pid) - before[0], live.cpu_seconds(sleeping.pid) - before[1]
    finally:
        spinning.kill()
        sleeping.kill()
        spinning.wait()
        sleeping.wait()
    assert 0.2 < spun <= 1.1  # a shared machine may give it less than a whole core
    assert slept < 0.05


def test_percentiles_are_nearest_rank_and_at_least_checks_pass_at_the_limit():
    values = list(range(1, 201))
    assert live.percentile(values, 99) == 198 and live.percentile(values, 50) == 100
    assert live.percentile([7], 99) == 7
    assert live.AtLeast("t", 1.4, 1.4).passed and not live.AtLeast("t", 1.39, 1.4).passed
    assert live.AtLeast("t", 1.5, 1.4).row()[2] == ">= 1.4x"


def test_a_worker_stuck_after_sigterm_is_reported_with_its_main_threads_stack(fresh_db, monkeypatch):
    stuck = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
             "print('12:00:00 worker 1: serving x.db', file=sys.stderr, flush=True)\n"
             "def hang_here():\n"
             "    time.sleep(60)\n"
             "hang_here()\n")
    monkeypatch.setattr(live, "worker_command", lambda db, *options: [sys.executable, "-c", stuck])
    db = fresh_db()
    w = live.started_worker(db, f"{db}.log")
    w.stop(timeout=1.0)
    assert w.proc.returncode is not None  # gone
    assert "in hang_here" in w.stuck
    (note,) = live.stuck_notes(w)
    assert note.startswith(f"DEFECT: worker {w.pid} did not exit")
