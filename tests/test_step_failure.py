"""step: fail-fast (cancel everything, record every open instance, ignore late results) and on_error: continue."""
from scheduler_core import (Attempt, CancelNode, Error, CancelRequested, CancelTimer, Retry, RunFinished, Status,
                            sequence_keys)
from step_helpers import Run, cancels, edge, graph, node, of_type, starts

BOOM = Error("ValueError", "boom", node="a")


def test_fail_fast_fails_the_run_in_the_step_that_sees_the_failure():
    run = Run(graph("a", "b"))
    run.start(at=0)
    commands = run.fail("a", at=4)
    assert of_type(commands, RunFinished) == [RunFinished(status="failed", error=BOOM)]
    assert commands[-1] == RunFinished(status="failed", error=BOOM)
    assert (run.state.status, run.state.error, run.state.finished_at) == ("failed", BOOM, 4)


def test_fail_fast_cancels_every_in_flight_instance():
    run = Run(graph("a", "b", "c"))
    run.start()
    commands = run.fail("b")
    assert sorted(cancels(commands)) == ["a", "c"]
    assert {c.reason for c in of_type(commands, CancelNode)} == {"run failed"}
    assert [run.status(n) for n in "abc"] == ["cancelled", "failed", "cancelled"]


def test_fail_fast_records_never_started_instances_as_cancelled():
    run = Run(graph("a -> b", "b -> c", "x -> j", "a -> j"))
    run.start()
    run.succeed("a")
    run.fail("x")
    assert [run.status(n) for n in ("b", "c", "j")] == ["cancelled"] * 3
    assert run.record("c").attempts == 0


def test_fail_fast_records_a_mapped_node_that_never_expanded_once_without_item():
    run = Run(graph("a", "f.iteration -> w", "w -> g", nodes=[node("f", "foreach")]))
    run.start()
    run.fail("a")
    mapped = sorted((r.node, r.item, r.status) for r in run.state.records.values() if r.node in "wg")
    assert mapped == [("g", (), "cancelled"), ("w", (), "cancelled")]


def test_fail_fast_records_every_item_of_a_map_chain_that_never_started():
    run = Run(graph("f.iteration -> b", edge("b -> c", map=True), nodes=[node("f", "foreach")]))
    run.start()
    run.succeed("f", ports={"result": [1, 2, 3], "iteration": [1, 2, 3]})
    run.succeed("b", item=(0,))
    run.fail("b", item=(1,))
    assert [run.status("c", (i,)) for i in range(3)] == ["cancelled"] * 3


def test_nothing_starts_after_fail_fast_even_in_the_same_batch():
    run = Run(graph("a -> b", "c", max_parallel=2))
    run.start()
    commands = run.step(run.succeeded("a"), run.failed("c"))
    assert starts(commands) == []
    assert run.status("b") == "cancelled"


def test_no_queued_instance_starts_after_fail_fast():
    run = Run(graph("a", "b", "c", max_parallel=1))
    run.start()
    assert starts(run.fail("a")) == []
    assert [run.status(n) for n in "bc"] == ["cancelled", "cancelled"]


def test_late_results_after_fail_fast_change_nothing_but_the_history():
    run = Run(graph("a -> c", "b"))
    run.start()
    run.fail("b", at=1)
    before = run.state
    assert run.step(run.succeeded("a", "late", at=2), run.failed("a", at=3)) == ()
    # the first result of the cancelled attempt is kept, marked late; a second one of it is dropped
    assert run.record("a") == before.records[(0, ())]._replace(
        history=(Attempt(1, Status.SUCCEEDED, None, 2, None, {"result": "late"}, True),))
    assert run.status("a") == "cancelled" and run.status("c") == "cancelled"
    assert (sequence_keys(run.state), run.state.error, run.state.finished_at) == ([], before.error, 1)


def test_fail_fast_cancels_timers_and_closes_parked_instances():
    nodes = [node("d", "delay", config={"seconds": 5}), node("h", "hil"), node("r", retry=Retry(max_attempts=3))]
    run = Run(graph("x", nodes=nodes))
    run.start()
    run.fail("r")
    commands = run.fail("x")
    assert len(of_type(commands, CancelTimer)) == 2
    assert [run.status(n) for n in "dhr"] == ["cancelled"] * 3
    assert run.record("r").attempts == 1


def test_continue_skips_only_what_depends_on_the_failure():
    run = Run(graph("a -> b", "b -> c", "x -> y", on_error="continue"))
    run.start()
    assert starts(run.fail("a")) == []
    assert [run.status(n) for n in "bc"] == ["skipped", "skipped"]
    assert starts(run.succeed("x")) == ["y"]


def test_continue_lets_a_join_run_on_its_other_input():
    run = Run(graph("a -> j", "b -> j", on_error="continue"))
    run.start()
    run.fail("a")
    assert starts(run.succeed("b", "B")) == ["j"]
    assert run.commands[0].input == "B"


def test_continue_fails_the_run_at_the_end_with_the_first_error():
    run = Run(graph("a", "b", "c", on_error="continue"))
    run.start()
    assert of_type(run.fail("a", message="first"), RunFinished) == []
    run.fail("b", message="second")
    commands = run.succeed("c")
    error = Error("ValueError", "first", node="a")
    assert of_type(commands, RunFinished) == [RunFinished(status="failed", error=error)]
    assert run.status("c") == "succeeded"


def test_cancel_requested_cancels_the_run_and_everything_open():
    run = Run(graph("a -> b", "c"))
    run.start()
    commands = run.step(CancelRequested(at=1, reason="stop"))
    assert sorted(cancels(commands)) == ["a", "c"]
    assert of_type(commands, RunFinished)[0].status == "cancelled"
    assert [run.status(n) for n in "abc"] == ["cancelled"] * 3


def test_a_failed_record_keeps_its_error_and_attempts():
    run = Run(graph("a"))
    run.start(at=0)
    run.fail("a", at=2, error_type="KeyError", message="'k'")
    record = run.record("a")
    assert (record.status, record.error, record.attempts, record.finished_at) == ("failed", Error("KeyError", "'k'"), 1, 2)



def test_a_failed_select_under_fail_fast_leaves_no_sibling_target_open():
    run = Run(graph("a -> c", edge("a -> b", select="abs(@)"), "a -> e"))
    run.start()
    commands = run.succeed("a", "not a number")
    assert starts(commands) == [] and of_type(commands, RunFinished)[0].error.type == "select"
    assert {n: run.status(n) for n in "bce"} == {"b": "failed", "c": "cancelled", "e": "cancelled"}
    assert run.state.ready_count == 0


def test_a_duplicate_result_is_ignored():
    run = Run(graph("a -> b"))
    run.start()
    event = run.succeeded("a", 1)
    run.step(event)
    assert run.step(event) == ()
    assert run.record("b").status == "running"
