"""The thread and asyncio runners: real concurrency, fail-fast cancellation, caps, timeouts, retries.

Sleeping nodes stand in for slow external calls. Timing bounds are generous ("ran at once",
"returned long before the slow sibling would have finished"), never tight absolute times.
"""
import io
import time

import pytest
from rich.console import Console

import nodes_for_tests as probes
from adapters import Engine
from adapters.report import render_table
from nodes_for_tests import task

PARALLEL = ["thread", "asyncio"]


def run(runner, workflow, **engine_options):
    """(result, wall seconds) of one run in memory."""
    t0 = time.monotonic()
    result = Engine(runner=runner, **engine_options).run(workflow, trigger={"id": 7})
    return result, time.monotonic() - t0


def statuses(result) -> dict:
    return {r["node"]: r["status"] for r in result.to_dict()["nodes"]}


def failing_sibling(*others):
    """A node that fails after 0.2 s, next to ``others`` that have no edges between them."""
    return {"nodes": [task("boom", "fail_after", params={"seconds": 0.2}), *others], "connections": []}


SEED = {  # the scenario flowcore exists for: an AI call feeding two slow actions, then a summary
    "name": "seed",
    "nodes": [task("ai", "sleep", params={"seconds": 0.1}),
              task("slack", "sleep", params={"seconds": 1.0}),
              task("notion", "sleep", params={"seconds": 1.0}),
              {"id": "summary", "type": "merge"}],
    "connections": [{"from": "ai", "to": "slack"}, {"from": "ai", "to": "notion"},
                    {"from": "slack", "to": "summary"}, {"from": "notion", "to": "summary"}],
}


@pytest.mark.parametrize("runner", PARALLEL)
def test_the_two_actions_after_one_node_run_at_once(runner):
    result, wall = run(runner, SEED)
    assert result.status == "succeeded"
    assert wall < 1.8  # one after the other they take 2.1 s
    slack, notion = result.record("slack"), result.record("notion")
    assert slack["started_at"] < notion["finished_at"] and notion["started_at"] < slack["finished_at"]
    assert result.record("summary")["output"] == [{"id": 7}, {"id": 7}]


@pytest.mark.parametrize("runner", PARALLEL)
def test_fail_fast_cancels_siblings_and_a_cooperative_node_sees_it(runner):
    result, wall = run(runner, failing_sibling(task("patient", "patient", params={"seconds": 5})))
    assert result.status == "failed"
    assert result.to_dict()["error"]["node"] == "boom"
    assert statuses(result) == {"boom": "failed", "patient": "cancelled"}
    assert ("patient", "cancelled") in probes.seen
    assert wall < 3.0  # the patient node alone would take 5 s
    assert result.abandoned == 0


@pytest.mark.parametrize("runner", PARALLEL)
def test_a_sibling_ignoring_cancellation_neither_delays_nor_changes_the_result(runner):
    result, wall = run(runner, failing_sibling(task("stubborn", "sleep", params={"seconds": 5})), grace=0.3)
    assert wall < 2.0  # the stubborn node sleeps 5 s
    assert result.status == "failed"
    assert statuses(result) == {"boom": "failed", "stubborn": "cancelled"}
    assert result.record("stubborn")["ports"] is None
    assert result.abandoned == 1
    assert result.state.finished_at - result.state.started_at < 1.5


@pytest.mark.parametrize("runner", PARALLEL)
def test_with_the_default_grace_the_run_still_returns_before_the_ignoring_sibling_ends(runner):
    result, wall = run(runner, failing_sibling(task("stubborn", "sleep", params={"seconds": 5})))
    assert wall < 4.0  # grace is 2 s; the stubborn node sleeps 5 s
    assert result.status == "failed" and result.abandoned == 1


def test_the_summary_counts_abandoned_threads():
    result, _ = run("thread", failing_sibling(task("stubborn", "sleep", params={"seconds": 5})), grace=0.2)
    out = io.StringIO()
    render_table(result.run_id, result.state, Console(file=out, width=120), abandoned=result.abandoned)
    assert "1 abandoned thread" in out.getvalue()


def test_a_coroutine_node_on_the_asyncio_runner_is_really_cancelled():
    result, wall = run("asyncio", failing_sibling(task("slow_co", "async_patient", params={"seconds": 5})))
    assert statuses(result) == {"boom": "failed", "slow_co": "cancelled"}
    assert ("slow_co", "CancelledError") in probes.seen
    assert wall < 3.0 and result.abandoned == 0


@pytest.mark.parametrize("runner", PARALLEL)
def test_one_failing_item_cancels_the_other_items(runner):
    workflow = {"nodes": [{"id": "each", "type": "foreach"},
                          task("work", "fail_or_wait", params={"bad": "b"}), task("gather", "echo")],
                "connections": [{"from": "each", "to": "work", "port": "iteration"},
                                {"from": "work", "to": "gather"}]}
    t0 = time.monotonic()
    result = Engine(runner=runner).run(workflow, trigger=["a", "b", "c"])
    assert time.monotonic() - t0 < 3.0  # the other items would wait 5 s
    assert result.status == "failed"
    assert [result.record("work", [i])["status"] for i in range(3)] == ["cancelled", "failed", "cancelled"]
    assert sorted(probes.seen) == [("work", "cancelled"), ("work", "cancelled")]
    assert result.record("gather")["status"] == "cancelled"


def test_the_serial_runner_notices_a_timeout_when_the_call_returns():
    result, _ = run("serial", {"nodes": [task("slow", "sleep", params={"seconds": 0.3}, timeout=0.1,
                                              retry={"max_attempts": 2})]})
    record = result.record("slow")
    assert result.status == "failed" and record["attempts"] == 2
    assert record["error"]["type"] == "timeout" and "0.1" in record["error"]["message"]
    assert record["ports"] is None


def counted(n, label, **fields):
    return [task(f"{label}{i}", "counted_sleep", params={"seconds": 0.2, "label": label}, **fields) for i in range(n)]


@pytest.mark.parametrize("runner", PARALLEL)
def test_never_more_in_flight_than_max_parallel(runner):
    result, _ = run(runner, {"nodes": counted(6, "n"), "connections": []}, max_parallel=2)
    assert result.status == "succeeded"
    assert probes.peak["n"] == 2


@pytest.mark.parametrize("runner", PARALLEL)
def test_a_pool_caps_its_own_nodes_while_others_run_freely(runner):
    workflow = {"settings": {"pools": {"ai": 1}}, "nodes": counted(3, "ai", pool="ai") + counted(3, "free"),
                "connections": []}
    result, _ = run(runner, workflow)
    assert result.status == "succeeded"
    assert probes.peak["ai"] == 1
    assert probes.peak["free"] >= 2


@pytest.mark.parametrize("runner", PARALLEL)
def test_a_foreach_max_parallel_caps_its_items(runner):
    workflow = {"nodes": [{"id": "each", "type": "foreach", "max_parallel": 2},
                          task("work", "counted_sleep", params={"seconds": 0.2, "label": "item"})],
                "connections": [{"from": "each", "to": "work", "port": "iteration"}]}
    result = Engine(runner=runner).run(workflow, trigger=list(range(6)))
    assert result.status == "succeeded"
    assert probes.peak["item"] == 2
    assert [result.record("work", [i])["output"] for i in range(6)] == list(range(6))


@pytest.mark.parametrize("runner", PARALLEL)
def test_a_node_timeout_fails_the_attempt_and_tells_the_code_to_stop(runner):
    result, wall = run(runner, {"nodes": [task("slow", "patient", params={"seconds": 5}, timeout=0.3)]})
    assert result.status == "failed"
    error = result.record("slow")["error"]
    assert error["type"] == "timeout" and "0.3" in error["message"]
    assert ("slow", "cancelled") in probes.seen
    assert wall < 3.0


def test_a_coroutine_past_its_timeout_is_cancelled_on_the_asyncio_runner():
    result, _ = run("asyncio", {"nodes": [task("slow", "async_patient", params={"seconds": 5}, timeout=0.3)]})
    assert result.record("slow")["error"]["type"] == "timeout"
    assert ("slow", "CancelledError") in probes.seen


def test_a_coroutine_blocking_its_event_loop_holds_the_run_no_longer_than_the_grace_period(monkeypatch):
    """The asyncio runner's close waited on its loop to cancel what was left, which a coroutine
    that blocks the loop never lets it do: the run ended 0.1 s in, and returned when the call did."""
    from runners import async_runner

    monkeypatch.setattr(async_runner, "LOOP_STOP_SECONDS", 0.2)
    result, wall = run("asyncio", {"nodes": [task("stuck", "async_blocking", params={"seconds": 2}, timeout=0.1)]},
                       grace=0.1)
    assert result.record("stuck")["error"]["type"] == "timeout"
    assert result.abandoned == 1
    assert wall < 1.5


def test_a_sync_attempt_that_returns_after_its_run_closed_the_loop_ends_quietly(monkeypatch):
    import threading

    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    result, _ = run("asyncio", {"nodes": [task("slow", "sleep", params={"seconds": 0.2}, timeout=0.05)]}, grace=0.05)
    assert result.abandoned == 1
    time.sleep(0.3)  # it returns meanwhile, in its daemon thread
    assert errors == []  # not "RuntimeError: Event loop is closed", printed with a traceback


def test_a_second_ctrl_c_while_the_cancelled_attempts_wind_down_stops_waiting_for_them():
    """The first Ctrl-C cancels the run; a second one during the grace period its attempts get gave
    up on the run's outcome: KeyboardInterrupt, after a second full grace period (no --json object)."""
    import _thread
    import threading

    for at in (0.2, 0.4):
        threading.Timer(at, _thread.interrupt_main).start()
    stubborn = {"nodes": [task("a", "sleep", params={"seconds": 2}), task("b", "sleep", params={"seconds": 2})]}
    result, wall = run("thread", stubborn, grace=1.5)
    assert result.status == "cancelled" and result.to_dict()["error"]["type"] == "cancelled"
    assert result.abandoned == 2
    assert wall < 1.2


def test_the_asyncio_runner_closes_its_event_loop():
    from runners.async_runner import AsyncioBackend

    backend = AsyncioBackend(None, "r")
    backend.close(0)
    assert backend.loop.is_closed()  # left open, it warned "unclosed event loop" (python -X dev) when collected


@pytest.mark.parametrize("runner", PARALLEL)
def test_a_thread_ignoring_its_timeout_holds_up_neither_its_retry_nor_the_run(runner):
    stuck = task("stuck", "sleep", params={"seconds": 5}, timeout=0.2, retry={"max_attempts": 2})
    workflow = {"nodes": [stuck, task("next", "echo"), task("other", "echo")],
                "connections": [{"from": "stuck", "to": "next"}],
                "settings": {"on_error": "continue"}}
    result, wall = run(runner, workflow, grace=0.3, max_parallel=1)
    assert wall < 3.0  # each attempt would sleep 5 s
    assert statuses(result) == {"stuck": "failed", "next": "skipped", "other": "succeeded"}
    assert result.record("stuck")["attempts"] == 2
    assert result.abandoned == 2


@pytest.mark.parametrize("runner", ["serial", *PARALLEL])
def test_a_flaky_node_succeeds_on_a_later_attempt(runner):
    node = task("flaky", "flaky", params={"failures": 2}, retry={"max_attempts": 3, "delay": 0.05})
    result, _ = run(runner, {"nodes": [node]})
    assert result.status == "succeeded"
    assert result.record("flaky")["attempts"] == 3
    assert result.record("flaky")["output"] == {"id": 7}


@pytest.mark.parametrize("runner", ["serial", *PARALLEL])
def test_a_node_that_keeps_failing_fails_the_run_after_its_last_attempt(runner):
    node = task("flaky", "flaky", params={"failures": 5}, retry={"max_attempts": 2, "delay": 0.05})
    result, _ = run(runner, {"nodes": [node]})
    record = result.record("flaky")
    assert result.status == "failed" and record["attempts"] == 2
    assert (record["error"]["type"], record["error"]["message"]) == ("RuntimeError", "attempt 2 fails")
    # the first attempt's error is kept in the history, beside the last one
    assert [(a["attempt"], a["status"], a["error"]["message"]) for a in record["history"]] == [
        (1, "failed", "attempt 1 fails"), (2, "failed", "attempt 2 fails")]


@pytest.mark.parametrize("runner", PARALLEL)
def test_a_retry_in_its_backoff_blocks_no_sibling(runner):
    workflow = {"nodes": [task("flaky", "flaky", retry={"max_attempts": 2, "delay": 0.6}),
                          task("quick", "sleep", params={"seconds": 0.1})]}
    result, _ = run(runner, workflow, max_parallel=1)
    assert result.status == "succeeded"
    assert result.record("quick")["finished_at"] < result.record("flaky")["finished_at"] - 0.3


@pytest.mark.parametrize("runner", PARALLEL)
def test_nodes_that_finish_at_once_leave_nothing_in_flight(runner):
    workflow = {"nodes": [{"id": f"n{i}", "type": "noop"} for i in range(60)]}
    result, wall = run(runner, workflow)
    assert result.status == "succeeded"
    assert result.abandoned == 0
    assert wall < 1.5  # a stale in-flight entry would hold the run for the whole grace period (2 s)
