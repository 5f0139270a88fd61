"""Control flow beyond "wait for all", through ``step`` alone: join rules (``any``,
``{at_least: K}``), ``cancel_rest``, gather quorums, ``end`` and ``fail`` nodes and ``cancel`` lists.
No threads, no clock: every step's state is checked by ``validate_state`` (``step_helpers.Run``)."""
import pytest

from scheduler_core import CancelTimer, NodeCancelRequested, Retry, RunFinished, replay
from step_helpers import Run, cancels, edge, graph, node, of_type, start_of, starts


def _join(kind="any", cancel_rest=False, **fields):
    return node("j", join=kind, cancel_rest=cancel_rest, **fields)


def _finished(commands):
    found = of_type(commands, RunFinished)
    return found[0] if found else None


def _replays_to_the_same_records(run):
    again = replay(run.state.graph, run.batches)
    assert dict(again.records.items()) == dict(run.state.records.items())
    assert again.status == run.state.status


# -- join: any ------------------------------------------------------------------------------------

def test_join_any_runs_once_with_the_first_value_and_ignores_the_later_inputs():
    run = Run(graph("a -> j", "b -> j", "j -> z", nodes=[_join()]))
    run.start()
    commands = run.succeed("b", "fast", at=1)
    assert starts(commands) == ["j"]
    assert start_of(commands, "j").input == "fast"  # the value itself, not a list
    assert starts(run.succeed("a", "slow", at=2)) == []  # ignored: j already runs
    assert starts(run.succeed("j", "fast", at=3)) == ["z"]
    assert _finished(run.succeed("z", "fast", at=4)).status == "succeeded"
    assert run.record("j").attempts == 1 and run.record("a").status == "succeeded"
    _replays_to_the_same_records(run)


def test_join_any_whose_every_input_is_dead_is_skipped():
    run = Run(graph("a -> j", "b -> j", "j -> z", nodes=[_join()], on_error="continue"))
    run.start()
    run.fail("a", at=1)
    assert run.status("j") is None  # b may still deliver
    run.fail("b", at=2)
    assert run.status("j") == "skipped" and run.status("z") == "skipped"
    assert _finished(run.commands).status == "failed"


def test_join_any_runs_on_the_one_input_that_delivers_after_the_others_died():
    run = Run(graph("a -> j", "b -> j", nodes=[_join()], on_error="continue"))
    run.start()
    run.fail("a", at=1)
    assert start_of(run.succeed("b", "late", at=2), "j").input == "late"


# -- join: at_least --------------------------------------------------------------------------------

def test_join_at_least_runs_once_k_delivered_with_the_values_in_the_order_the_core_took_them():
    run = Run(graph("a -> j", "b -> j", "c -> j", nodes=[_join(2)]))
    run.start()
    assert starts(run.succeed("c", "C", at=1)) == []
    commands = run.succeed("a", "A", at=2)
    assert start_of(commands, "j").input == ["C", "A"]  # taken order, not edge order
    assert start_of(commands, "j").arrivals == (("c", "C"), ("a", "A"))
    assert starts(run.succeed("b", "B", at=3)) == []
    run.succeed("j", "x", at=4)
    assert run.state.status == "succeeded"
    _replays_to_the_same_records(run)


def test_join_at_least_is_skipped_as_soon_as_fewer_than_k_can_still_deliver():
    run = Run(graph("a -> j", "b -> j", "c -> j", "j -> z", nodes=[_join(2)], on_error="continue"))
    run.start()
    run.fail("a", at=1)
    assert run.status("j") is None
    run.fail("b", at=2)
    assert run.status("j") == "skipped" and run.status("z") == "skipped"  # c still runs: it cannot make two
    assert run.status("c") == "running"
    run.succeed("c", "C", at=3)  # its value is ignored
    assert run.status("j") == "skipped" and run.state.status == "failed"


def test_join_at_least_all_of_its_inputs_is_all_in_arrival_order():
    run = Run(graph("a -> j", "b -> j", nodes=[_join(2)]))
    run.start()
    run.succeed("b", "B", at=1)
    assert start_of(run.succeed("a", "A", at=2), "j").input == ["B", "A"]


def test_join_any_with_a_cancel_request_waiting_for_it_is_cancelled_not_started():
    run = Run(graph("a -> j", "b -> j", nodes=[_join()]))
    run.start()
    run.step(NodeCancelRequested(node="j", at=1))
    assert starts(run.succeed("a", "A", at=2)) == []
    assert run.status("j") == "cancelled"
    run.succeed("b", "B", at=3)
    assert run.state.status == "succeeded"


# -- cancel_rest --------------------------------------------------------------------------------------

def _discriminator():
    """u1 runs, a runs, q is queued (cap 2), w is parked, u2 is not reached; all lead only to j."""
    return graph("a -> j", "u1 -> u2", "u2 -> j", "q -> j", "w -> j", "j -> z",
                 nodes=[node("a"), node("u1", estimate=5), node("q"), node("w", "wait"),
                        _join(cancel_rest=True)], max_parallel=2)


def test_cancel_rest_cancels_running_parked_queued_and_unreached_instances_when_the_join_fires():
    run = Run(_discriminator())
    assert sorted(starts(run.start())) == ["a", "u1"]
    assert run.status("q") is None and run.status("w") == "waiting"
    commands = run.succeed("a", "first", at=1)
    assert cancels(commands) == ["u1"]
    assert starts(commands) == ["j"]  # the freed slots go to j, not to the cancelled q
    for name in ("u1", "u2", "q", "w"):
        record = run.record(name)
        assert record.status == "cancelled", name
        assert record.error.type == "cancelled" and "cancel_rest" in record.error.message
    assert run.record("a").status == "succeeded"
    run.succeed("u1", "too late", at=2, attempt=1)  # a late result changes nothing
    assert run.record("u1").status == "cancelled"
    run.succeed("j", "first", at=3)
    assert _finished(run.succeed("z", "first", at=4)).status == "succeeded"  # cancelled is no failure
    _replays_to_the_same_records(run)


def test_cancel_rest_spares_a_branch_that_also_leads_to_another_sink():
    run = Run(graph("a -> j", "b -> j", "b -> report", nodes=[_join(cancel_rest=True)]))
    run.start()
    assert cancels(run.succeed("a", "A", at=1)) == []
    assert run.status("b") == "running"


def test_cancel_rest_drops_a_retry_waiting_for_its_delay():
    run = Run(graph("a -> j", "b -> j", nodes=[node("b", retry=Retry(max_attempts=3, delay=10)),
                                               _join(cancel_rest=True)]))
    run.start()
    run.fail("b", at=1)
    assert run.status("b") == "waiting"
    commands = run.succeed("a", "A", at=2)
    assert of_type(commands, CancelTimer) and run.status("b") == "cancelled"


def test_at_least_with_cancel_rest_fires_at_k_and_cancels_the_rest():
    run = Run(graph("a -> j", "b -> j", "c -> j", nodes=[_join(2, cancel_rest=True)]))
    run.start()
    run.succeed("a", "A", at=1)
    commands = run.succeed("c", "C", at=2)
    assert cancels(commands) == ["b"] and start_of(commands, "j").input == ["A", "C"]


def test_a_join_inside_a_fan_out_cancels_only_its_own_items_branches():
    g = graph("f.iteration -> x", "f.iteration -> y", edge("x -> j", map=True), edge("y -> j", map=True),
              nodes=[node("f", "foreach"), _join(cancel_rest=True)])
    run = Run(g)
    run.start()
    run.succeed("f", ports={"result": [1, 2], "iteration": [1, 2]}, at=1)
    commands = run.succeed("x", "x0", item=(0,), at=2)
    assert cancels(commands) == [("y", (0,))]
    assert start_of(commands, "j", (0,)).input == "x0"
    assert run.status("y", (1,)) == "running" and run.status("x", (1,)) == "running"
    run.succeed("y", "y1", item=(1,), at=3)
    assert run.status("x", (1,)) == "cancelled"
    _replays_to_the_same_records(run)


def test_cancel_rest_reaches_the_items_of_a_fan_out_that_only_feeds_the_join():
    g = graph("a -> j", "f.iteration -> w", "w -> g", "g -> j",
              nodes=[node("f", "foreach"), node("g", "merge"), _join(cancel_rest=True)])
    run = Run(g)
    run.start()
    run.succeed("f", ports={"result": [1, 2, 3], "iteration": [1, 2, 3]}, at=1)
    commands = run.succeed("a", "A", at=2)
    assert sorted(cancels(commands)) == [("w", (0,)), ("w", (1,)), ("w", (2,))]
    assert run.status("g") == "cancelled" and run.state.status == "running"


def test_cancel_rest_before_a_fan_out_expanded_cancels_its_items_when_they_appear():
    g = graph("a -> j", "s -> f", "f.iteration -> w", "w -> g", "g -> j", "s -> elsewhere",
              nodes=[node("f", "foreach"), node("g", "merge"), _join(cancel_rest=True)])
    run = Run(g)
    run.start()
    run.succeed("a", "A", at=1)  # f, w and g lead only to j; s does not (it feeds 'elsewhere')
    assert run.status("s") == "running" and run.status("f") is None and run.status("w") is None
    assert starts(run.succeed("s", [1, 2], at=2)) == ["elsewhere"]  # f is cancelled as it is reached
    assert [run.status(n) for n in ("f", "w", "g")] == ["cancelled"] * 3
    assert len(run.state.joined) == 0  # j's last input resolved: nothing left to ignore


# -- gather quorum --------------------------------------------------------------------------------------

def _quorum_gather(k, cancel_rest=False):
    return graph("f.iteration -> w", edge("w -> g", at_least=k, cancel_rest=cancel_rest),
                 nodes=[node("f", "foreach")])


def test_a_gather_with_at_least_runs_its_target_once_k_items_succeeded_with_them_in_item_order():
    run = Run(_quorum_gather(2))
    run.start()
    run.succeed("f", ports={"result": [0, 1, 2, 3], "iteration": [0, 1, 2, 3]}, at=1)
    run.succeed("w", "w2", item=(2,), at=2)
    commands = run.succeed("w", "w0", item=(0,), at=3)
    assert start_of(commands, "g").input == ["w0", "w2"]
    assert cancels(commands) == []  # without cancel_rest the other items run on
    run.succeed("w", "w1", item=(1,), at=4)
    run.succeed("w", "w3", item=(3,), at=5)
    run.succeed("g", "done", at=6)
    assert run.state.status == "succeeded" and run.record("g").attempts == 1
    _replays_to_the_same_records(run)


def test_a_gather_quorum_with_cancel_rest_cancels_the_items_not_yet_ended():
    run = Run(_quorum_gather(2, cancel_rest=True))
    run.start()
    run.succeed("f", ports={"result": [0, 1, 2], "iteration": [0, 1, 2]}, at=1)
    run.succeed("w", "w1", item=(1,), at=2)
    commands = run.succeed("w", "w2", item=(2,), at=3)
    assert cancels(commands) == [("w", (0,))] and start_of(commands, "g").input == ["w1", "w2"]
    assert run.record("w", (0,)).status == "cancelled"
    run.succeed("g", "done", at=4)
    assert run.state.status == "succeeded"


def test_a_gather_quorum_out_of_reach_resolves_dead_and_skips_its_target():
    g = graph("f.iteration -> w", edge("w -> g", at_least=2), nodes=[node("f", "foreach")], on_error="continue")
    run = Run(g)
    run.start()
    run.succeed("f", ports={"result": [0, 1, 2], "iteration": [0, 1, 2]}, at=1)
    run.fail("w", item=(0,), at=2)
    assert run.status("g") is None
    run.fail("w", item=(1,), at=3)
    assert run.status("g") == "skipped" and run.status("w", (2,)) == "running"
    run.succeed("w", "w2", item=(2,), at=4)
    assert run.state.status == "failed" and run.status("g") == "skipped"


# -- end and fail ----------------------------------------------------------------------------------------

def test_end_succeeds_at_once_and_ends_the_run_succeeded_cancelling_the_rest():
    run = Run(graph("a -> e", "b -> c", "h", nodes=[node("e", "end"), node("h", "hil")]))
    run.start()
    commands = run.succeed("a", "enough", at=1)
    assert cancels(commands) == ["b"] and starts(commands) == []
    assert _finished(commands).status == "succeeded" and _finished(commands).error is None
    e = run.record("e")
    assert e.status == "succeeded" and e.ports == {"result": "enough"}
    assert {run.status(n) for n in ("b", "c", "h")} == {"cancelled"}
    run.succeed("b", "late", at=2, attempt=1)
    assert run.record("b").status == "cancelled"
    _replays_to_the_same_records(run)


def test_end_under_continue_ends_the_run_succeeded_even_with_failed_branches_open():
    run = Run(graph("a -> e", "b", "c", nodes=[node("e", "end")], on_error="continue"))
    run.start()
    run.fail("b", at=1)
    commands = run.succeed("a", "x", at=2)
    assert _finished(commands).status == "succeeded" and run.status("c") == "cancelled"
    assert run.status("b") == "failed"  # what happened stays recorded


def test_a_skipped_end_ends_nothing():
    run = Run(graph("c.true -> e", "c.false -> other", nodes=[node("c", "if", config={"condition": "@"}),
                                                              node("e", "end")]))
    run.start(False)
    run.succeed("c", ports={"false": False}, at=1)
    assert run.status("e") == "skipped" and run.state.status == "running"
    run.succeed("other", "o", at=2)
    assert run.state.status == "succeeded"


def test_end_under_fail_fast_does_not_run_after_a_failure_ended_the_run():
    run = Run(graph("a -> e", "b", nodes=[node("e", "end")]))
    run.start()
    run.fail("b", at=1)
    assert run.state.status == "failed"
    run.succeed("a", "x", at=2, attempt=1)
    assert run.state.status == "failed" and run.status("e") == "cancelled"


# -- cancel lists -------------------------------------------------------------------------------------------

def test_a_cancel_list_cancels_the_named_nodes_open_instances_when_its_node_succeeds():
    run = Run(graph("a", "b -> c", "d -> c", nodes=[node("a", cancel=("b",))]))
    run.start()
    commands = run.succeed("a", "stop b", at=1)
    assert cancels(commands) == ["b"]
    assert run.record("b").error.message == "cancelled by node 'a' (its cancel list)"
    run.succeed("d", "D", at=2)
    assert run.status("c") == "running"  # the join follows the usual rule: d delivered
    run.succeed("c", "C", at=3)
    assert run.state.status == "succeeded"


def test_a_cancel_list_naming_a_finished_node_changes_nothing():
    run = Run(graph("b -> a", nodes=[node("a", cancel=("b",))]))
    run.start()
    run.succeed("b", "B", at=1)
    commands = run.succeed("a", "A", at=2)
    assert cancels(commands) == [] and run.record("b").status == "succeeded"
    assert run.state.status == "succeeded"


def test_a_cancel_list_cancels_a_node_not_reached_yet_when_it_is():
    run = Run(graph("a", "b -> c", nodes=[node("a", cancel=("c",))]))
    run.start()
    run.succeed("a", "A", at=1)
    assert starts(run.succeed("b", "B", at=2)) == []
    assert run.status("c") == "cancelled" and run.state.status == "succeeded"


def test_a_failed_node_cancels_nothing():
    run = Run(graph("a", "b", nodes=[node("a", cancel=("b",))], on_error="continue"))
    run.start()
    run.fail("a", at=1)
    assert run.status("b") == "running"


def test_a_cancel_list_inside_a_fan_out_cancels_the_named_node_in_the_same_item_only():
    g = graph("f.iteration -> a", "f.iteration -> b", nodes=[node("f", "foreach"), node("a", cancel=("b",))])
    run = Run(g)
    run.start()
    run.succeed("f", ports={"result": [0, 1], "iteration": [0, 1]}, at=1)
    assert cancels(run.succeed("a", "a0", item=(0,), at=2)) == [("b", (0,))]
    assert run.status("b", (1,)) == "running"


@pytest.mark.parametrize("field,value", [("join", "any"), ("join", 2)])
def test_a_join_rule_on_a_node_with_one_input_is_a_problem(field, value):
    from scheduler_core import WorkflowInvalid
    with pytest.raises(WorkflowInvalid, match="needs a node with at least two inputs; it has 1"):
        graph("a -> j", nodes=[node("j", **{field: value})])


def test_a_gather_quorum_out_of_a_fan_out_of_no_items_is_dead_not_an_empty_list():
    g = graph("f.iteration -> w", edge("w -> g", at_least=1), "f.iteration -> v", "v -> h",
              nodes=[node("f", "foreach")])
    run = Run(g)
    run.start()
    run.succeed("f", ports={"result": [], "iteration": []}, at=1)
    assert run.status("g") == "skipped"  # fewer than 1 item can deliver
    assert start_of(run.commands, "h").input == []  # a plain gather delivers the empty list
