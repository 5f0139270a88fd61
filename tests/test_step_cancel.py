"""step: cancels from people (one node, one item, the whole run, a run not started yet), refusals,
and a driver that drains.

A node cancel is no failure: what depends only on the cancelled instances is skipped, joins follow
the usual rule, and the run can still succeed.
"""
import pytest

from scheduler_core import (AwaitInput, CancelConfirmed, CancelNode, CancelRequested, CancelTimer, Draining, Error,
                            InputProvided, InvalidEvent, NodeCancelRequested, Refused, Retry, RunFinished,
                            StartNode, cancel_problem)
from step_helpers import Run, cancelled_timers, cancels, edge, graph, node, of_type, start_of, starts, timers


def cancel(run, name, item=None, at=None, reason="cancelled by request"):
    return run.step(NodeCancelRequested(node=name, item=item, at=run._at(at), reason=reason))


def refusals(commands) -> list:
    return [c.reason for c in of_type(commands, Refused)]


def fan_out(*edges, **settings):
    """``f`` fans out over its list into ``w`` per item, ``m`` after ``w`` per item, ``g`` gathers ``m``."""
    nodes = [node("f", "foreach", config=settings.pop("config", {}))]
    return Run(graph("f.iteration -> w", edge("w -> m", map=True), "m -> g", *edges, nodes=nodes, **settings))


def expand(run, items, at=1):
    return run.succeed("f", ports={"result": items, "iteration": items}, at=at)


# -- one node ---------------------------------------------------------------------------------------

def test_cancelling_a_running_instance_stops_it_records_it_cancelled_and_ignores_its_late_result():
    run = Run(graph("a -> b", "c"))
    run.start(at=0)
    commands = cancel(run, "a", at=2, reason="not needed")
    assert [(c.node, c.attempt, c.reason) for c in of_type(commands, CancelNode)] == [("a", 1, "not needed")]
    assert (run.status("a"), run.record("a").error, run.record("a").finished_at) == \
        ("cancelled", Error("cancelled", "not needed"), 2)
    assert run.status("b") == "skipped" and run.in_flight == 1
    assert run.succeed("a", "late", at=3, attempt=1) == ()
    assert run.step(CancelConfirmed(node="a", attempt=1, at=3)) == ()
    assert run.status("a") == "cancelled"
    run.succeed("c", at=4)
    assert (run.state.status, run.state.error) == ("succeeded", None)


def test_a_cancelled_attempt_frees_its_slot_at_once_and_its_timeout_timer_is_dropped():
    run = Run(graph("a", "b", nodes=[node("a", timeout=10)], max_parallel=1))
    (timer,) = timers(run.start(at=0))
    commands = cancel(run, "a", at=1)
    assert cancelled_timers(commands) == [timer.timer]
    assert starts(commands) == ["b"]


def test_cancelling_a_waiting_hil_drops_its_timeout_and_a_later_answer_is_refused():
    run = Run(graph("h -> next", "x", nodes=[node("h", "hil", config={"timeout": 60})]))
    (timer,) = timers(run.start(at=0))
    commands = cancel(run, "h", at=5)
    assert cancelled_timers(commands) == [timer.timer] and cancels(commands) == []
    assert (run.status("h"), run.status("next")) == ("cancelled", "skipped")
    assert refusals(run.provide("h", "yes", at=6)) == ["node h is not waiting for input"]


@pytest.mark.parametrize("parked", ["delay", "retry"])
def test_cancelling_an_instance_parked_for_a_timer_drops_the_timer(parked):
    if parked == "delay":
        run = Run(graph("p -> after", "x", nodes=[node("p", "delay", config={"seconds": 30})]))
        (timer,) = timers(run.start(at=0))
    else:
        run = Run(graph("p -> after", "x", nodes=[node("p", retry=Retry(max_attempts=3, delay=30.0))]))
        run.start(at=0)
        (timer,) = timers(run.fail("p", at=1))
    commands = cancel(run, "p", at=2)
    assert cancelled_timers(commands) == [timer.timer]
    assert (run.status("p"), run.status("after")) == ("cancelled", "skipped")
    assert run.fire(timer.timer, at=30) == ()


def test_cancelling_a_retry_held_for_its_stopping_attempt_releases_it():
    run = Run(graph("t", "x", nodes=[node("t", timeout=5, retry=Retry(max_attempts=2, delay=1.0))]))
    (timeout,) = timers(run.start(at=0))
    (retry,) = timers(run.fire(timeout.timer, at=5))
    run.fire(retry.timer, at=6)  # due, but attempt 1 is not confirmed stopped: held
    assert run.state.held
    cancel(run, "t", at=7)
    assert run.status("t") == "cancelled" and not run.state.held
    assert starts(run.confirm("t", attempt=1, at=8)) == []


def test_cancelling_a_ready_instance_takes_it_out_of_its_queue():
    run = Run(graph("a", "b", "c", max_parallel=1))
    assert starts(run.start(at=0)) == ["a"]
    commands = cancel(run, "b", at=1)
    assert commands == () and run.status("b") == "cancelled"
    assert (run.state.ready_count, run.in_flight) == (1, 1)
    assert starts(run.succeed("a", at=2)) == ["c"]
    run.succeed("c", at=3)
    assert run.state.status == "succeeded"


def test_a_node_not_reached_yet_is_cancelled_when_its_inputs_resolve_and_never_starts():
    run = Run(graph("a -> b", "b -> c", "c -> d"))
    run.start(at=0)
    cancel(run, "c", at=1, reason="skip c")
    assert not run.has_record("c") and cancel_problem(run.state, "c") is None
    run.succeed("a", at=2)
    commands = run.succeed("b", at=3)
    assert starts(commands) == [] and of_type(commands, RunFinished)[0].status == "succeeded"
    assert (run.status("c"), run.record("c").error, run.record("c").finished_at) == \
        ("cancelled", Error("cancelled", "skip c"), 3)
    assert run.status("d") == "skipped"


def test_a_node_cancelled_while_its_inputs_are_partly_resolved_is_cancelled_once_they_all_are():
    run = Run(graph("a -> j", "b -> j"))
    run.start(at=0)
    run.succeed("a", at=1)
    cancel(run, "j", item=(), at=2)
    assert not run.has_record("j")
    assert starts(run.succeed("b", at=3)) == []
    assert (run.status("j"), run.state.status) == ("cancelled", "succeeded")


def test_skips_spread_from_a_cancelled_node_and_a_join_another_branch_feeds_still_runs():
    run = Run(graph("a -> b", "a -> c", "b -> d", "b -> j", "c -> j", "d -> e"))
    run.start(at=0)
    run.succeed("a", "A", at=1)
    cancel(run, "b", at=2)
    assert (run.status("d"), run.status("e")) == ("skipped", "skipped")
    commands = run.succeed("c", "C", at=3)
    assert start_of(commands, "j").arrivals == (("c", "C"),)
    run.succeed("j", at=4)
    assert (run.state.status, run.state.error, run.state.first_failure) == ("succeeded", None, None)


def test_a_run_whose_every_branch_was_cancelled_still_succeeds():
    run = Run(graph("a -> b"))
    run.start(at=0)
    commands = cancel(run, "a", at=1)
    assert of_type(commands, RunFinished) == [RunFinished(status="succeeded", error=None)]
    assert (run.status("a"), run.status("b"), run.state.finished_at) == ("cancelled", "skipped", 1)


def test_cancelling_the_last_waiting_instance_ends_the_run():
    run = Run(graph("h", "a", nodes=[node("h", "hil")]))
    run.start(at=0)
    run.succeed("a", at=1)
    assert run.state.status == "running"
    commands = cancel(run, "h", at=2)
    assert of_type(commands, RunFinished)[0].status == "succeeded" and run.state.finished_at == 2


def test_a_fan_out_cancelled_before_it_ran_leaves_its_mapped_nodes_unexpanded():
    run = fan_out()
    run.start([1, 2], at=0)
    cancel(run, "f", at=1)
    assert [run.status(n) for n in ("f", "w", "m", "g")] == ["cancelled", "skipped", "skipped", "skipped"]
    assert run.state.status == "succeeded"


# -- items of a fan-out -----------------------------------------------------------------------------

def test_cancelling_one_item_cancels_only_that_instance_and_the_gather_gets_the_others():
    run = fan_out()
    run.start(at=0)
    expand(run, ["x", "y", "z"])
    commands = cancel(run, "w", item=(1,), at=2)
    assert cancels(commands) == [("w", (1,))]
    assert (run.status("w", (1,)), run.status("m", (1,))) == ("cancelled", "skipped")
    for i in (0, 2):
        run.succeed("w", i, item=(i,), at=3)
        commands = run.succeed("m", f"m{i}", item=(i,), at=4)
    assert start_of(commands, "g").input == ["m0", "m2"]
    run.succeed("g", at=5)
    assert run.state.status == "succeeded"


def test_cancelling_one_item_not_reached_yet_cancels_it_when_its_source_item_ends():
    run = fan_out()
    run.start(at=0)
    expand(run, ["x", "y"])
    cancel(run, "m", item=(0,), at=2)
    assert not run.has_record("m", (0,))
    assert starts(run.succeed("w", item=(0,), at=3)) == []
    assert run.status("m", (0,)) == "cancelled"
    assert starts(run.succeed("w", item=(1,), at=3)) == [("m", (1,))]


def test_cancelling_a_node_cancels_every_item_reached_or_not_and_items_of_a_later_fan_out():
    run = fan_out(max_parallel=2)
    run.start(at=0)
    cancel(run, "m", at=1)  # before the fan-out expanded: no item of m exists yet
    expand(run, [1, 2, 3], at=2)
    for i in range(3):
        run.succeed("w", item=(i,), at=3)
    assert [run.status("m", (i,)) for i in range(3)] == ["cancelled"] * 3
    assert run.status("g") == "skipped" and run.state.status == "succeeded"


def test_cancelling_every_item_stops_running_ones_and_dequeues_ready_ones():
    run = fan_out(max_parallel=2)
    run.start(at=0)
    expand(run, [1, 2, 3, 4])
    assert run.in_flight == 2 and run.state.ready_count == 2
    commands = cancel(run, "w", at=2)
    assert cancels(commands) == [("w", (0,)), ("w", (1,))]
    assert [run.status("w", (i,)) for i in range(4)] == ["cancelled"] * 4
    assert (run.state.ready_count, run.state.status) == (0, "succeeded")


def test_cancelling_an_item_in_a_capped_fan_out_lets_the_next_item_start_in_its_place():
    run = fan_out(config={"max_parallel": 1})
    run.start(at=0)
    expand(run, [1, 2, 3])
    assert run.status("w", (0,)) == "running"
    cancel(run, "w", item=(1,), at=2)  # the head of the group's queue
    assert starts(run.succeed("w", item=(0,), at=3)) == [("m", (0,))]  # item 0's next stage first (item order)
    assert starts(run.succeed("m", item=(0,), at=4)) == [("w", (2,))]


# -- refusals ---------------------------------------------------------------------------------------

def test_a_node_cancel_with_nothing_left_is_refused_and_changes_no_record():
    run = Run(graph("a -> b", "c"))
    run.start(at=0)
    run.succeed("a", at=1)
    records = run.state.records
    commands = cancel(run, "a", at=2)
    assert commands == (Refused(reason="nothing left to cancel: every instance of node 'a' has already ended",
                                stimulus="2.0"),)
    assert run.state.records == records and len(run.state.cancel_requests) == 0
    assert cancel_problem(run.state, "a") == commands[0].reason


@pytest.mark.parametrize("name, item, expected", [
    ("ghost", None, "there is no node 'ghost' in this workflow"),
    ("w", (0,), "nothing left to cancel: w[0] has already ended (succeeded)"),
    ("w", (5,), "there is no instance w[5] in this run (yet)"),
    ("w", (), "there is no instance w in this run (yet)"),
    ("w", None, None),
])
def test_a_node_cancel_that_does_not_fit_is_refused_with_the_reason(name, item, expected):
    run = fan_out()
    run.start(at=0)
    expand(run, [1, 2])
    run.succeed("w", item=(0,), at=2)
    assert cancel_problem(run.state, name, item) == expected
    assert refusals(cancel(run, name, item, at=3)) == ([expected] if expected else [])


def test_an_item_of_a_fan_out_that_has_not_expanded_yet_cannot_be_cancelled_alone():
    run = fan_out()
    run.start(at=0)
    assert cancel_problem(run.state, "w", (0,)) == "there is no instance w[0] in this run (yet)"
    assert cancel_problem(run.state, "w") is None


@pytest.mark.parametrize("event", [
    InputProvided(node="h", at=5, value=1),
    CancelRequested(at=5),
    NodeCancelRequested(node="h", at=5),
])
def test_requests_from_people_to_a_finished_run_are_refused(event):
    run = Run(graph("h", nodes=[node("h", "hil")]))
    run.start(at=0)
    run.provide("h", "ok", at=1)
    state = run.state
    assert run.step(event) == (Refused(reason="the run has already finished", stimulus="2.0"),)
    assert (run.state.records, run.state.status, run.state.finished_at) == (state.records, "succeeded", 1)


def test_a_refusal_names_the_event_it_refuses_among_the_events_of_its_step():
    run = Run(graph("h", "x", nodes=[node("h", "hil")]))
    run.start(at=0)
    commands = run.step(InputProvided(node="x", at=1), InputProvided(node="h", at=1, value="v"),
                        NodeCancelRequested(node="h", at=1))
    assert [(c.stimulus, c.reason) for c in of_type(commands, Refused)] == [
        ("1.0", "node x is not waiting for input"),
        ("1.2", "nothing left to cancel: every instance of node 'h' has already ended")]
    assert run.status("h") == "succeeded"


# -- the whole run ----------------------------------------------------------------------------------

def test_cancelling_a_running_run_cancels_what_runs_waits_or_never_started_with_no_node_in_its_error():
    run = Run(graph("a -> after", "b", "h", "d", nodes=[node("h", "hil"), node("d", "delay", config={"seconds": 9})],
                    max_parallel=1))
    run.start(at=0)
    commands = run.step(CancelRequested(at=2, reason="stop it"))
    assert cancels(commands) == ["a"] and len(cancelled_timers(commands)) == 1
    assert of_type(commands, RunFinished) == [RunFinished(status="cancelled", error=Error("cancelled", "stop it"))]
    assert run.state.error.node is None and run.state.finished_at == 2
    assert {r.node: r.status for r in run.state.records.values()} == dict.fromkeys(
        ["a", "after", "b", "h", "d"], "cancelled")


def test_cancelling_a_queued_run_records_every_instance_cancelled_and_it_never_starts():
    run = fan_out("a -> b")
    commands = run.step(CancelRequested(at=7, reason="changed my mind"))
    assert of_type(commands, RunFinished) == [RunFinished(status="cancelled",
                                                          error=Error("cancelled", "changed my mind"))]
    assert (run.state.status, run.state.started_at, run.state.finished_at) == ("cancelled", None, 7)
    assert run.state.error == Error("cancelled", "changed my mind", node=None)
    assert sorted((r.node, r.item, r.status) for r in run.state.records.values()) == [
        (n, (), "cancelled") for n in ("a", "b", "f", "g", "m", "w")]
    with pytest.raises(InvalidEvent, match="already ended"):
        run.start(at=8)


def test_a_node_cancelled_in_a_queued_run_is_cancelled_when_the_run_starts():
    run = Run(graph("a -> b", "c"))
    assert refusals(cancel(run, "a", at=0)) == []
    assert starts(run.start(at=1)) == ["c"]
    assert (run.status("a"), run.status("b")) == ("cancelled", "skipped")


# -- draining ---------------------------------------------------------------------------------------

def test_a_draining_driver_starts_nothing_but_still_records_results_and_fires_timers():
    run = Run(graph("a -> b", "d -> e", nodes=[node("d", "delay", config={"seconds": 5})]))
    (delay,) = timers(run.start(at=0))
    assert run.step(Draining(at=1)) == ()
    assert starts(run.succeed("a", at=2)) == [] and run.status("a") == "succeeded"
    assert starts(run.fire(delay.timer, at=5)) == [] and run.status("d") == "succeeded"
    assert (run.state.ready_count, run.in_flight, run.state.status) == (2, 0, "running")
    assert sorted(starts(run.resume(at=6))) == ["b", "e"]
    assert not run.state.draining


def test_draining_keeps_attempts_in_flight_and_a_new_driver_dispatches_them_again():
    run = Run(graph("a", "b", max_parallel=1))
    run.start(at=0)
    commands = run.step(Draining(at=1))
    assert commands == () and run.status("a") == "running"
    commands = run.resume(at=2)
    assert [(c.node, c.redispatch) for c in of_type(commands, StartNode)] == [("a", True)]
    assert starts(run.succeed("a", at=3)) == ["b"]


def test_transitions_of_a_cancel_carry_the_id_of_the_event_that_asked_for_it():
    trace: list = []
    run = Run(graph("a -> b", "c -> d", nodes=[node("c", "hil")]), trace)
    run.start(at=0)
    cancel(run, "a", at=1)
    cancel(run, "c", at=2)
    moves = [(run.state.graph.ids[key[0]], str(move), str(new), stimulus) for key, _, move, new, stimulus in trace
             if str(move) in ("cancel", "skip")]
    assert moves == [("a", "cancel", "cancelled", "1.0"), ("b", "skip", "skipped", "1.0"),
                     ("c", "cancel", "cancelled", "2.0"), ("d", "skip", "skipped", "2.0")]
    assert of_type(run.commands, AwaitInput) == []
