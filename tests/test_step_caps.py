"""step: max_parallel and pool caps hold exactly, slots refill at once, and ready instances start in priority order."""
from step_helpers import Run, graph, node, starts


def test_max_parallel_is_never_exceeded_and_a_freed_slot_is_refilled_in_the_same_step():
    run = Run(graph("a", "b", "c", "d", "e", max_parallel=2))
    assert starts(run.start()) == ["a", "b"]
    assert starts(run.succeed("a")) == ["c"]
    assert run.in_flight == 2
    assert starts(run.step(run.succeeded("b"), run.succeeded("c"))) == ["d", "e"]
    assert run.in_flight == 2


def test_the_default_cap_is_eight():
    run = Run(graph(*[f"n{i}" for i in range(10)]))
    assert len(starts(run.start())) == 8


def test_a_failure_under_continue_frees_its_slot():
    run = Run(graph("a", "b", max_parallel=1, on_error="continue"))
    run.start()
    assert starts(run.fail("a")) == ["b"]


def test_a_pool_cap_holds_while_other_nodes_use_the_free_slots():
    nodes = [node("ai1", pool="ai"), node("ai2", pool="ai"), node("ai3", pool="ai"), node("x"), node("y")]
    run = Run(graph(nodes=nodes, pools={"ai": 2}, max_parallel=4))
    assert starts(run.start()) == ["ai1", "ai2", "x", "y"]
    assert starts(run.succeed("x")) == []
    assert starts(run.succeed("ai1")) == ["ai3"]


def test_pool_and_run_caps_both_hold():
    nodes = [node("ai1", pool="ai"), node("ai2", pool="ai"), node("x")]
    run = Run(graph(nodes=nodes, pools={"ai": 2}, max_parallel=1))
    assert starts(run.start()) == ["ai1"]
    assert starts(run.succeed("ai1")) == ["ai2"]


def test_the_longest_remaining_path_starts_first_then_declaration_order():
    run = Run(graph("d", "a -> b", "b -> c", max_parallel=1))
    assert starts(run.start()) == ["a"]
    assert starts(run.succeed("a")) == ["b"]
    assert starts(run.succeed("b")) == ["d"]
    assert starts(run.succeed("d")) == ["c"]


def test_cost_estimates_weigh_the_critical_path():
    nodes = [node("short"), node("heavy", estimate=5.0)]
    run = Run(graph("short -> s2", nodes=nodes, max_parallel=1))
    assert starts(run.start()) == ["heavy"]


def test_ties_are_broken_by_declaration_order():
    run = Run(graph("c", "a", "b", max_parallel=1))
    assert starts(run.start()) == ["c"]
    assert starts(run.succeed("c")) == ["a"]
    assert starts(run.succeed("a")) == ["b"]


def test_ties_between_items_are_broken_by_item_index():
    run = Run(graph("f.iteration -> w", nodes=[node("f", "foreach")], max_parallel=1))
    run.start()
    items = list(range(12))
    order = [starts(run.succeed("f", ports={"result": items, "iteration": items}))]
    for i in range(11):
        order.append(starts(run.succeed("w", item=(i,))))
    assert order == [[("w", (i,))] for i in range(12)]


def test_within_a_fan_out_item_order_comes_before_declaration_order():
    run = Run(graph("f.iteration -> b", "f.iteration -> a", nodes=[node("f", "foreach")], max_parallel=1))
    run.start()
    order = starts(run.succeed("f", ports={"result": [1, 2], "iteration": [1, 2]}))
    for _ in range(3):
        name, item = order[-1]
        order += starts(run.succeed(name, item=item))
    assert order == [("b", (0,)), ("a", (0,)), ("b", (1,)), ("a", (1,))]


def test_a_ready_instance_of_higher_priority_overtakes_earlier_ready_ones():
    run = Run(graph("x1", "x2", "a -> b", "b -> c", max_parallel=1))
    assert starts(run.start()) == ["a"]
    assert starts(run.succeed("a")) == ["b"]


def test_priority_picks_among_pools_with_room():
    nodes = [node("p1", pool="p"), node("p2", pool="p"), node("q")]
    run = Run(graph("p2 -> tail", "tail -> end", nodes=nodes, pools={"p": 1}, max_parallel=2))
    assert starts(run.start()) == ["p2", "q"]
    assert starts(run.succeed("q")) == []
    assert starts(run.succeed("p2")) == ["tail", "p1"]


def test_a_parked_instance_holds_no_slot():
    run = Run(graph("d", "a", "b", nodes=[node("d", "delay", config={"seconds": 10})], max_parallel=1))
    assert starts(run.start()) == ["a"]
    assert run.status("d") == "waiting"
    assert run.in_flight == 1



def test_ready_instances_that_wait_for_a_slot_are_reported_pending_with_their_items():
    from adapters.report import run_dict
    from step_helpers import edge

    g = graph(edge("each.iteration -> x"), nodes=[node("each", type="foreach")], max_parallel=1)
    run = Run(g)
    run.start(trigger=[10, 20, 30])
    assert starts(run.succeed("each", ports={"iteration": [10, 20, 30], "result": [10, 20, 30]})) == [("x", (0,))]
    report = {(r["node"], tuple(r["item"] or ())): r["status"] for r in run_dict("r", run.state)["nodes"]}
    assert report == {("each", ()): "succeeded", ("x", (0,)): "running", ("x", (1,)): "pending",
                      ("x", (2,)): "pending"}
