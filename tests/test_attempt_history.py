"""Every instance keeps the history of its attempts, an error raised by node code keeps its
traceback, and a result that comes after a cancel is kept, marked late, changing nothing else.

DESIGN.md "Semantics" (Failure, Record) and the ``--json`` shape: ``nodes[*].history`` is a list of
attempts numbered from 1 (``attempt, status, started_at, finished_at, error, ports``; ``late`` for
a result that came after its attempt was cancelled or timed out), and an instance's ``error`` is
``{type, message}`` plus ``traceback`` when node code raised it.
"""
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

import history_nodes
from adapters import Engine
from adapters.cli import main
from adapters.report import render_table
from adapters.snapshots import decode_state, encode_state
from scheduler_core import Attempt, Error, NodeCancelRequested, Retry, Status, validate_state
from step_helpers import Run, graph, node, timers

TESTS = Path(__file__).resolve().parent
LOOK_UP_RAISES_AT = inspect.getsourcelines(history_nodes.look_up)[1] + 3  # the line of ``found[key]``


def task(node_id, fn, **fields):
    return {"id": node_id, "type": "python", "call": f"history_nodes:{fn}", **fields}


def record(result, name, item=None):
    return next(r for r in result.to_dict()["nodes"] if r["node"] == name and r["item"] == item)


def attempts(rec):
    return [(a["attempt"], a["status"], a["late"]) for a in rec["history"]]


# -- the core: history without threads ------------------------------------------------------------------

def test_the_errors_of_earlier_attempts_are_kept_in_the_history():
    run = Run(graph("a -> b", nodes=[node("a", retry=Retry(max_attempts=3))]))
    run.start(at=0)
    run.fire(timers(run.fail("a", message="first", at=1))[0].timer, at=2)
    run.fire(timers(run.fail("a", message="second", at=3))[0].timer, at=4)
    run.succeed("a", "done", at=5)
    r = run.record("a")
    assert (r.status, r.attempts, r.error) == (Status.SUCCEEDED, 3, None)
    assert r.history == (Attempt(1, Status.FAILED, 0, 1, Error("ValueError", "first")),
                         Attempt(2, Status.FAILED, 2, 3, Error("ValueError", "second")))
    validate_state(run.state)


def test_a_late_result_after_a_node_cancel_is_kept_and_routes_nothing():
    run = Run(graph("a -> b"))
    run.start(at=0)
    run.step(NodeCancelRequested(node="a", at=1))
    assert run.status("b") == "skipped"
    before = run.state
    assert run.step(run.succeeded("a", "posted", at=2)) == ()
    r = run.record("a")
    assert r.status == Status.CANCELLED and run.status("b") == "skipped" and run.state.status == before.status
    assert r.history == (Attempt(1, Status.SUCCEEDED, None, 2, None, {"result": "posted"}, True),)
    validate_state(run.state)


def test_a_duplicate_of_a_result_that_was_heard_is_not_a_late_result():
    run = Run(graph("a -> b"))
    run.start(at=0)
    done = run.succeeded("a", 1, at=1)
    run.step(done)
    run.step(done)
    assert run.record("a").history == ()


def test_the_result_of_a_timed_out_attempt_is_kept_beside_its_timeout():
    run = Run(graph("a", nodes=[node("a", timeout=5.0, retry=Retry(max_attempts=2))]))
    run.fire(timers(run.start(at=0))[0].timer, at=5)  # attempt 1 times out, its retry waits
    run.step(run.succeeded("a", "slow", attempt=1, at=6))
    kinds = [(a.attempt, a.status, a.late, a.error and a.error.type) for a in run.record("a").history]
    assert kinds == [(1, Status.FAILED, False, "timeout"), (1, Status.SUCCEEDED, True, None)]
    validate_state(run.state)


# -- runners: tracebacks -------------------------------------------------------------------------------

@pytest.mark.parametrize("runner", ["serial", "thread", "asyncio", "process"])
def test_a_key_error_keeps_the_users_file_and_line_and_no_engine_frame(runner):
    result = Engine(runner=runner).run({"nodes": [task("look", "look_up")]}, trigger={"a": 1})
    error = record(result, "look")["error"]
    assert (error["type"], error["message"]) == ("KeyError", "'missing_key'")
    tb = error["traceback"]
    assert f'history_nodes.py", line {LOOK_UP_RAISES_AT}, in look_up' in tb
    assert tb.splitlines()[1].endswith("in look_up")  # it starts at the user's function
    assert "adapters" + os.sep not in tb and "runners" + os.sep not in tb
    assert tb.endswith("KeyError: 'missing_key'\n")
    assert result.to_dict()["error"] == {"node": "look", "type": "KeyError", "message": "'missing_key'"}


@pytest.mark.parametrize("runner", ["thread", "serial"])
def test_a_timeout_has_no_traceback(runner):
    wf = {"nodes": [task("slow", "hang", params={"seconds": 2.0}, timeout=0.1)]}
    result = Engine(runner=runner).run(wf)
    error = record(result, "slow")["error"]
    assert error["type"] == "timeout" and "traceback" not in error
    assert all(a["error"] is None or "traceback" not in a["error"] for a in record(result, "slow")["history"])


def test_an_error_the_engine_raises_for_a_node_has_no_traceback():
    wf = {"nodes": [{"id": "pick", "type": "foreach", "items": "missing"}]}  # the items are not a list
    result = Engine(runner="thread").run(wf, trigger={"missing": 3})
    error = record(result, "pick")["error"]
    assert "needs a list of items" in error["message"] and "traceback" not in error


def test_each_retry_keeps_its_own_traceback():
    wf = {"nodes": [task("flaky", "fail_until", params={"succeed_at": 3}, retry={"max_attempts": 3, "delay": 0.01})]}
    result = Engine(runner="thread").run(wf, trigger=7)
    rec = record(result, "flaky")
    assert rec["status"] == "succeeded" and rec["output"] == 7 and rec["error"] is None
    assert attempts(rec) == [(1, "failed", False), (2, "failed", False), (3, "succeeded", False)]
    messages = [a["error"]["message"] for a in rec["history"][:2]]
    assert messages == ["attempt 1 of 2 failing", "attempt 2 of 2 failing"]
    assert all("in fail_until" in a["error"]["traceback"] for a in rec["history"][:2])
    assert rec["history"][2]["ports"] == {"result": 7}


# -- late results --------------------------------------------------------------------------------------

@pytest.mark.parametrize("runner", ["thread", "asyncio", "dask"])
def test_a_result_after_fail_fast_is_kept_in_the_history_and_changes_nothing_else(runner):
    history_nodes.posted.clear()
    wf = {"nodes": [task("look", "look_up", params={"after": 0.2}), task("post", "post_after", params={"seconds": 0.6}),
                    {"id": "after", "type": "noop"}],
          "connections": [{"from": "post", "to": "after"}]}
    result = Engine(runner=runner, grace=5.0).run(wf, trigger={"a": 1})
    assert history_nodes.posted.is_set()  # the side effect happened...
    run = result.to_dict()
    assert run["status"] == "failed" and run["error"]["node"] == "look"
    post = record(result, "post")
    assert post["status"] == "cancelled" and post["output"] is None  # ...the record stays cancelled...
    assert attempts(post) == [(1, "cancelled", False), (1, "succeeded", True)]  # ...and the history says so
    late = post["history"][1]
    assert late["ports"] == {"result": {"posted": {"a": 1}}} and late["finished_at"] > run["finished_at"]
    assert record(result, "after")["status"] == "cancelled" and run["sequence"] == []
    post_row = next(line for line in table_of(result).splitlines() if line.startswith("post "))
    assert "cancelled" in post_row and "late: {'posted'" in post_row  # the table says so too


def test_a_late_result_is_logged_so_a_fresh_process_reads_it(tmp_path):
    db = str(tmp_path / "runs.db")
    wf = {"nodes": [task("look", "look_up", params={"after": 0.1}),
                    task("post", "post_after", params={"seconds": 0.3})]}
    Engine(runner="thread", db=db, grace=5.0).run(wf, trigger={"a": 1}, run_id="r1")
    shown = status_in_a_fresh_process(db, "r1")
    post = next(r for r in shown["nodes"] if r["node"] == "post")
    assert attempts(post) == [(1, "cancelled", False), (1, "succeeded", True)]
    look = next(r for r in shown["nodes"] if r["node"] == "look")
    assert f"line {LOOK_UP_RAISES_AT}, in look_up" in look["error"]["traceback"]
    assert look["history"][0]["error"] == look["error"]


# -- durability ----------------------------------------------------------------------------------------

def status_in_a_fresh_process(db, run_id) -> dict:
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-m", "adapters.cli", "status", run_id, "--db", db, "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_history_survives_the_store_and_a_snapshot(tmp_path):
    db = str(tmp_path / "runs.db")
    wf = {"nodes": [task("flaky", "fail_until", params={"succeed_at": 3},
                         retry={"max_attempts": 2, "delay": 0.01})]}
    result = Engine(runner="thread", db=db).run(wf, trigger=1, run_id="r1")
    here = result.to_dict()
    assert attempts(record(result, "flaky")) == [(1, "failed", False), (2, "failed", False)]
    assert status_in_a_fresh_process(db, "r1")["nodes"] == here["nodes"]
    state = result.state
    assert decode_state(encode_state(state), state.graph) == state


def test_a_store_written_before_histories_opens_with_one_attempt_per_record(tmp_path, capsys):
    old = TESTS / "data" / "store-d5463c7.db"
    db = str(tmp_path / "old.db")
    shutil.copyfile(old, db)
    assert main(["runs", "--db", db, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert runs
    for run in runs:
        assert main(["status", run["run_id"], "--db", db, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        for r in shown["nodes"]:
            assert [a["attempt"] for a in r["history"]] == list(range(1, r["attempts"] + 1))
            assert all(not a["late"] for a in r["history"])


# -- the text view ---------------------------------------------------------------------------------------

def table_of(result, width=80) -> str:
    out = io.StringIO()
    render_table(result.run_id, result.state, Console(file=out, width=width, color_system=None))
    return out.getvalue()


def test_the_footer_names_every_failed_instance_by_its_item_and_where_it_raised():
    wf = {"nodes": [{"id": "each", "type": "foreach"}, task("work", "look_up")],
          "connections": [{"from": "each", "to": "work", "port": "iteration"}], "settings": {"on_error": "continue"}}
    result = Engine(runner="thread").run(wf, trigger=[{"a": 1}, {"missing_key": 2}, {"b": 3}])
    text = table_of(result)
    footer = text[text.index("failed in"):]
    assert f"work[0]: KeyError: 'missing_key' (history_nodes.py:{LOOK_UP_RAISES_AT} in look_up)" in footer
    assert "work[2]: KeyError" in footer and "work[1]" not in footer and "work: " not in footer
    assert f"history_nodes.py:{LOOK_UP_RAISES_AT} in look_up" in footer.split("raised")[1]  # the last frames
    assert "return found[key]" in footer and "Traceback" not in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_many_failures_are_summed_up_within_80_columns():
    wf = {"nodes": [{"id": "each", "type": "foreach"}, task("work_with_a_rather_long_name", "look_up")],
          "connections": [{"from": "each", "to": "work_with_a_rather_long_name", "port": "iteration"}],
          "settings": {"on_error": "continue"}}
    result = Engine(runner="thread").run(wf, trigger=[{"key": "x" * 100}] * 12)
    text = table_of(result)
    footer = text[text.index("failed in"):].splitlines()
    named = [line for line in footer if line.startswith("work_with_a_rather_long_name[")]
    assert len(named) == 5 and "… 7 more failed: work_with_a_rather_long_name[5]" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_the_story_of_an_instance_shows_each_attempt_and_its_traceback(tmp_path, capsys):
    db = str(tmp_path / "runs.db")
    wf = {"nodes": [task("flaky", "fail_until", params={"succeed_at": 2}, retry={"max_attempts": 2, "delay": 0.01})]}
    Engine(runner="thread", db=db).run(wf, trigger=1, run_id="r1")
    assert main(["status", "r1", "--db", db, "--node", "flaky"]) == 0
    out = capsys.readouterr().out
    assert "attempt 1: failed" in out and "ValueError: attempt 1 of 1 failing" in out
    assert "in fail_until" in out and "attempt 2: succeeded" in out
    assert main(["status", "r1", "--db", db, "--node", "flaky", "--json"]) == 0
    told = json.loads(capsys.readouterr().out)
    assert [a["status"] for a in told["attempts"]] == ["failed", "succeeded"]
    assert "in fail_until" in told["attempts"][0]["error"]["traceback"]


def test_a_late_result_takes_no_longer_than_the_grace_to_wait_for():
    wf = {"nodes": [task("look", "look_up", params={"after": 0.1}),
                    task("post", "post_after", params={"seconds": 3.0})]}
    t0 = time.monotonic()
    result = Engine(runner="thread", grace=0.3).run(wf, trigger={"a": 1})
    assert time.monotonic() - t0 < 2.5  # the slow node sleeps 3 s: its result is not waited for
    assert attempts(record(result, "post")) == [(1, "cancelled", False)] and result.abandoned == 1
