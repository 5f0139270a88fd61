"""step: foreach fan-out, map chains, gathers, nesting, empty lists and a foreach's own max_parallel."""
from scheduler_core import RunFinished
from step_helpers import Run, edge, graph, node, of_type, start_of, starts

FOREACH = node("f", "foreach")


def items(values):
    return {"result": values, "iteration": values}


def fan_out(*edges, values=(10, 20, 30), **settings):
    """A started run whose foreach ``f`` has produced ``values``."""
    run = Run(graph(*edges, nodes=[FOREACH], **settings))
    run.start()
    run.succeed("f", ports=items(list(values)))
    return run


def test_foreach_starts_one_instance_per_item_all_at_once_with_the_item_as_input():
    run = fan_out("f.iteration -> w")
    assert starts(run.commands) == [("w", (0,)), ("w", (1,)), ("w", (2,))]
    assert [start_of(run.commands, "w", (i,)).input for i in range(3)] == [10, 20, 30]


def test_foreach_puts_the_whole_list_on_result():
    run = fan_out("f.iteration -> w", "f -> whole")
    assert start_of(run.commands, "whole").input == [10, 20, 30]


def test_map_instance_starts_when_its_source_instance_is_done_without_waiting_for_others():
    run = fan_out("f.iteration -> a", edge("a -> b", map=True))
    assert starts(run.succeed("a", "A1", item=(1,))) == [("b", (1,))]
    assert start_of(run.commands, "b", (1,)).input == "A1"
    assert run.status("a", (0,)) == "running"


def test_gather_waits_for_every_item_and_gets_results_in_item_order():
    run = fan_out("f.iteration -> w", "w -> g")
    assert starts(run.succeed("w", "r2", item=(2,))) == []
    assert starts(run.succeed("w", "r0", item=(0,))) == []
    assert starts(run.succeed("w", "r1", item=(1,))) == ["g"]
    assert start_of(run.commands, "g").input == ["r0", "r1", "r2"]


def test_gather_at_the_end_of_a_map_chain_runs_once_after_all_items():
    run = fan_out("f.iteration -> a", edge("a -> b", map=True), "b -> g", values=(1, 2))
    for i in (1, 0):
        run.succeed("a", f"a{i}", item=(i,))
    run.succeed("b", "b1", item=(1,))
    assert starts(run.succeed("b", "b0", item=(0,))) == ["g"]
    assert start_of(run.commands, "g").input == ["b0", "b1"]


def test_gather_leaves_out_items_that_did_not_succeed():
    run = fan_out("f.iteration -> w", "w -> g", on_error="continue")
    run.succeed("w", "r2", item=(2,))
    run.fail("w", item=(0,))
    assert start_of(run.succeed("w", "r1", item=(1,)), "g").input == ["r1", "r2"]


def test_gather_leaves_out_items_whose_branch_was_skipped():
    run = fan_out("f.iteration -> c", edge("c.true -> w", map=True), "w -> g")
    run.succeed("c", ports={"false": 0}, item=(0,))
    run.succeed("c", ports={"true": 1}, item=(1,))
    run.succeed("c", ports={"true": 2}, item=(2,))
    assert run.status("w", (0,)) == "skipped"
    run.succeed("w", "w2", item=(2,))
    assert start_of(run.succeed("w", "w1", item=(1,)), "g").input == ["w1", "w2"]


def test_a_gather_is_skipped_when_no_item_succeeded():
    run = fan_out("f.iteration -> w", "w -> g", on_error="continue", values=(1, 2))
    run.fail("w", item=(0,))
    run.fail("w", item=(1,))
    assert run.status("g") == "skipped"


def test_select_on_a_gather_edge_applies_to_each_item_before_gathering():
    run = fan_out("f.iteration -> w", edge("w -> g", select="v"), values=(1, 2))
    run.succeed("w", {"v": "b"}, item=(1,))
    assert start_of(run.succeed("w", {"v": "a"}, item=(0,)), "g").input == ["a", "b"]


def test_a_select_failing_on_a_gather_edge_fails_the_gather_instead_of_starting_it():
    run = fan_out("f.iteration -> w", edge("w -> g", select="abs(@)"), values=(1, 2))
    run.succeed("w", "not a number", item=(0,))
    commands = run.succeed("w", -3, item=(1,))
    assert starts(commands) == []
    assert (run.status("g"), run.record("g").error.type) == ("failed", "select")
    assert of_type(commands, RunFinished)[0].status == "failed"


def test_an_empty_list_skips_the_mapped_nodes_and_a_gather_out_of_them_delivers_an_empty_list():
    run = fan_out("f.iteration -> a", edge("a -> b", map=True), "b -> g", "g -> after", values=())
    assert starts(run.commands) == ["g"]
    assert start_of(run.commands, "g").input == []
    records = {(r.node, r.item): r.status for r in run.state.records.values()}
    assert records == {("f", ()): "succeeded", ("a", ()): "skipped", ("b", ()): "skipped", ("g", ()): "running"}
    run.succeed("g", "nothing to do")
    assert run.status("after") == "running"


def test_a_gather_after_an_empty_list_takes_its_select_and_joins_another_input():
    run = fan_out("f.iteration -> w", edge("w -> g", select="abs(@)"), "f -> g", values=())
    assert starts(run.commands) == ["g"]
    assert start_of(run.commands, "g").input == [[], []]  # the gather's [] and f's own list, in edge order


def test_a_gather_whose_items_all_failed_is_dead_not_empty():
    run = fan_out("f.iteration -> w", "w -> g", values=(1, 2), on_error="continue")
    run.fail("w", item=(0,))
    commands = run.fail("w", item=(1,))
    assert starts(commands) == [] and run.status("g") == "skipped"


def test_a_skipped_foreach_skips_its_mapped_nodes_once_without_item():
    run = Run(graph("s.yes -> f", "f.iteration -> w", "w -> g", nodes=[FOREACH]))
    run.start()
    run.succeed("s", ports={})
    assert [run.status(n) for n in "fwg"] == ["skipped"] * 3


def test_a_foreach_given_something_other_than_a_list_fails():
    run = Run(graph("f.iteration -> w", nodes=[FOREACH]))
    run.start()
    run.succeed("f", ports={"result": "abc", "iteration": "abc"})
    assert (run.status("f"), run.record("f").error.type) == ("failed", "foreach")
    assert "list" in run.record("f").error.message


def test_a_nested_foreach_keys_instances_by_item_paths():
    run = Run(graph("f.iteration -> inner", "inner.iteration -> w", "w -> g1", "g1 -> g0",
                    nodes=[FOREACH, node("inner", "foreach")]))
    run.start()
    run.succeed("f", ports=items([["a", "b"], ["c"]]))
    run.succeed("inner", ports=items(["c"]), item=(1,))
    assert starts(run.commands) == [("w", (1, 0))]
    run.succeed("inner", ports=items(["a", "b"]), item=(0,))
    assert starts(run.commands) == [("w", (0, 0)), ("w", (0, 1))]
    assert start_of(run.commands, "w", (0, 1)).input == "b"
    assert starts(run.succeed("w", "C", item=(1, 0))) == [("g1", (1,))]
    assert start_of(run.commands, "g1", (1,)).input == ["C"]
    run.succeed("g1", "G1", item=(1,))
    run.succeed("w", "A", item=(0, 0))
    assert start_of(run.succeed("w", "B", item=(0, 1)), "g1", (0,)).input == ["A", "B"]
    assert start_of(run.succeed("g1", "G0", item=(0,)), "g0").input == ["G0", "G1"]


def test_a_foreachs_max_parallel_caps_its_items_and_refills_as_one_frees():
    run = Run(graph("f.iteration -> w", "x", nodes=[node("f", "foreach", config={"max_parallel": 2})]))
    run.start()
    commands = run.succeed("f", ports=items([1, 2, 3, 4]))
    assert starts(commands) == [("w", (0,)), ("w", (1,))]
    assert starts(run.succeed("w", item=(1,))) == [("w", (2,))]
    assert starts(run.succeed("x")) == []


def test_a_foreachs_max_parallel_covers_every_node_of_its_map_chain():
    run = Run(graph("f.iteration -> a", edge("a -> b", map=True), nodes=[node("f", "foreach", config={"max_parallel": 1})]))
    run.start()
    run.succeed("f", ports=items([1, 2]))
    assert starts(run.commands) == [("a", (0,))]
    assert starts(run.succeed("a", item=(0,))) == [("b", (0,))]  # item order across stages: item 0 completes first
    assert starts(run.succeed("b", item=(0,))) == [("a", (1,))]
    assert starts(run.succeed("a", item=(1,))) == [("b", (1,))]


def test_one_failing_item_fails_the_run_and_cancels_the_other_items():
    run = fan_out("f.iteration -> w", "w -> g")
    commands = run.fail("w", item=(1,))
    assert sorted(c.item for c in commands if type(c).__name__ == "CancelNode") == [(0,), (2,)]
    assert [run.status("w", (i,)) for i in range(3)] == ["cancelled", "failed", "cancelled"]
    assert run.status("g") == "cancelled"


def test_with_continue_a_failing_item_skips_only_its_own_chain():
    run = fan_out("f.iteration -> a", edge("a -> b", map=True), "b -> g", on_error="continue", values=(1, 2))
    run.fail("a", item=(0,))
    assert run.status("b", (0,)) == "skipped"
    assert starts(run.succeed("a", item=(1,))) == [("b", (1,))]
    assert starts(run.succeed("b", "B1", item=(1,))) == ["g"]
    assert start_of(run.commands, "g").input == ["B1"]


def test_under_a_cap_a_per_item_chain_completes_item_after_item_not_breadth_first():
    """Issue 14: 20 items of "download then send" under a cap of 4. Breadth-first would start every
    download before any send (no item done end to end until the fifth round); item order finishes
    items 0-3 in the second round."""
    run = Run(graph("f.iteration -> download", edge("download -> send", map=True), nodes=[FOREACH], max_parallel=4))
    run.start()
    run.succeed("f", ports=items(list(range(20))))
    rounds = [sorted(starts(run.commands))]
    while run.in_flight:
        running = rounds[-1]
        commands = ()
        for name, item in running:
            commands += run.succeed(name, item=item)
        rounds.append(sorted(starts(commands)))
    assert rounds[0] == [("download", (i,)) for i in range(4)]
    assert rounds[1] == [("send", (i,)) for i in range(4)]
    assert rounds[2] == [("download", (i,)) for i in range(4, 8)]
    assert run.state.status == "succeeded" and len(rounds) == 11


def test_a_node_on_a_longer_path_outside_the_fan_out_still_starts_before_its_items():
    run = Run(graph("f.iteration -> w", "a -> long", nodes=[FOREACH, node("long", estimate=10.0)], max_parallel=2))
    run.start()
    run.succeed("f", ports=items([1, 2, 3]))
    assert starts(run.commands) == [("w", (0,))]
    assert starts(run.succeed("a")) == ["long"]  # the critical path first, items or not
