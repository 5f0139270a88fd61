"""step: the ``loop`` node type. Its body's instances are ``loop.node`` with the iteration appended to
the item path; ``until`` on the body sink's output ends it; ``max_iterations`` bounds it
(``loop_limit``); a failing body fails it; it parks (no slot) while its body runs."""
import pytest

from scheduler_core import NodeCancelRequested, RunFinished, WorkflowInvalid, compile_workflow
from scheduler_core import Workflow
from step_helpers import Run, edge, graph, node, of_type, start_of, starts, cancels


def task(id, **fields):
    return {"id": id, "type": "python", "call": "m:f", **fields}


def loop(id="L", nodes=(task("a"), task("b")), connections=({"from": "a", "to": "b"},), until="done",
         max_iterations=5):
    return node(id, "loop", config={"until": until, "max_iterations": max_iterations,
                                    "body": {"nodes": list(nodes), "connections": list(connections)}})


def started_loop(*edges, loop_node=None, trigger=None, **settings):
    run = Run(graph("L", *edges, nodes=[loop_node or loop()], **settings))
    run.start(trigger)
    return run


def iterate(run, i, value, loop_id="L", path=()):
    """Run iteration ``i`` of the default body (a -> b): a returns ``i``, b returns ``value``."""
    item = (*path, i)
    run.succeed(f"{loop_id}.a", i, item=item)
    return run.succeed(f"{loop_id}.b", value, item=item)


def test_a_loop_parks_and_its_body_roots_get_the_loop_input_as_iteration_0():
    run = started_loop(trigger={"n": 1})
    assert starts(run.commands) == [("L.a", (0,))]
    assert start_of(run.commands, "L.a", (0,)).input == {"n": 1}
    assert run.status("L") == "waiting" and run.in_flight == 1  # the loop itself holds no slot


def test_until_true_after_one_iteration_puts_the_body_output_on_result():
    run = started_loop("L -> after")
    commands = iterate(run, 0, {"done": True, "v": 1})
    assert run.status("L") == "succeeded" and run.record("L").ports == {"result": {"done": True, "v": 1}}
    assert starts(commands) == ["after"] and start_of(commands, "after").input == {"done": True, "v": 1}
    run.succeed("after")
    assert of_type(run.commands, RunFinished)[0].status == "succeeded"
    assert run.state.scopes[(run.state.graph.index["L"], ())] == 1


def test_until_true_after_n_iterations_each_iteration_gets_the_previous_output():
    run = started_loop("L -> after")
    for i in range(3):
        commands = iterate(run, i, {"done": i == 2, "i": i})
        if i < 2:
            assert starts(commands) == [("L.a", (i + 1,))]
            assert start_of(commands, "L.a", (i + 1,)).input == {"done": False, "i": i}
    assert run.status("L") == "succeeded" and run.record("L").ports["result"] == {"done": True, "i": 2}
    assert [run.status("L.b", (i,)) for i in range(3)] == ["succeeded"] * 3
    assert not run.has_record("L.a", (3,))


def test_until_uses_jmespath_truth_zero_is_true_and_empty_list_is_false():
    run = started_loop(loop_node=loop(until="v"))
    iterate(run, 0, {"v": []})
    assert run.status("L") == "waiting"
    iterate(run, 1, {"v": 0})
    assert run.status("L") == "succeeded"


def test_the_last_allowed_iteration_with_until_still_false_fails_the_loop_with_loop_limit():
    run = started_loop("L -> after", loop_node=loop(max_iterations=2))
    iterate(run, 0, {"done": False})
    commands = iterate(run, 1, {"done": False})
    assert run.status("L") == "failed" and run.record("L").error.type == "loop_limit"
    assert "max_iterations (2)" in run.record("L").error.message
    (finished,) = of_type(commands, RunFinished)
    assert finished.status == "failed" and finished.error.node == "L" and finished.error.type == "loop_limit"
    assert run.status("after") == "cancelled"


def test_a_failing_body_node_fails_the_loop_naming_it_and_under_continue_only_the_loop_branch():
    run = started_loop("L -> after", "other", on_error="continue")
    run.succeed("L.a", 1, item=(0,))
    run.succeed("L.b", {"done": False}, item=(0,))
    run.fail("L.a", item=(1,), error_type="KeyError", message="x")
    assert run.status("L.a", (1,)) == "failed"
    assert run.status("L") == "failed"
    assert run.record("L").error.type == "KeyError" and "L.a[1]" in run.record("L").error.message
    assert run.status("L.b", (1,)) == "cancelled"  # not reached when its loop failed
    assert run.status("after") == "skipped"
    assert starts(run.commands) == []
    run.succeed("other")
    (finished,) = of_type(run.commands, RunFinished)
    assert finished.status == "failed" and finished.error.node == "L"


def test_a_failing_body_node_under_fail_fast_fails_the_loop_and_the_run():
    run = started_loop()
    commands = run.fail("L.a", item=(0,))
    assert run.status("L") == "failed" and run.status("L.a", (0,)) == "failed"
    assert of_type(commands, RunFinished)[0].error.node == "L"
    assert run.status("L.b", (0,)) == "cancelled"


def test_a_body_node_retries_before_it_fails_the_loop():
    from scheduler_core import Retry
    run = started_loop(loop_node=loop(nodes=(task("a", retry={"max_attempts": 2}), task("b"))))
    run.fail("L.a", item=(0,))
    assert run.status("L") == "waiting" and run.status("L.a", (0,)) == "waiting"


def test_a_body_whose_sink_is_skipped_fails_the_loop_with_a_clear_error():
    body = ({"id": "c", "type": "if", "condition": "go"}, task("s"))
    run = started_loop(loop_node=loop(nodes=body, connections=({"from": "c", "to": "s", "port": "true"},)),
                       on_error="continue")
    run.succeed("L.c", ports={"false": 1}, item=(0,))
    assert run.status("L.s", (0,)) == "skipped"
    error = run.record("L").error
    assert run.status("L") == "failed" and error.type == "loop_body" and "L.s[0] was skipped" in error.message


def test_a_body_with_a_fan_out_gathers_within_each_iteration():
    body = ({"id": "f", "type": "foreach"}, task("w"), task("g"))
    connections = ({"from": "f", "to": "w", "port": "iteration"}, {"from": "w", "to": "g"})
    run = started_loop(loop_node=loop(nodes=body, connections=connections), trigger=[1, 2])
    run.succeed("L.f", ports={"result": [1, 2], "iteration": [1, 2]}, item=(0,))
    assert starts(run.commands) == [("L.w", (0, 0)), ("L.w", (0, 1))]
    run.succeed("L.w", "x", item=(0, 1))
    run.succeed("L.w", "y", item=(0, 0))
    assert start_of(run.commands, "L.g", (0,)).input == ["y", "x"]
    run.succeed("L.g", [3], item=(0,))
    run.succeed("L.f", ports={"result": [3], "iteration": [3]}, item=(1,))
    run.succeed("L.w", "z", item=(1, 0))
    run.succeed("L.g", {"done": 1}, item=(1,))
    assert run.status("L") == "succeeded" and run.record("L").ports["result"] == {"done": 1}


def test_a_hil_in_the_body_parks_its_iteration_and_is_answered_per_item():
    body = ({"id": "ask", "type": "hil"},)
    run = started_loop(loop_node=loop(nodes=body, connections=()))
    assert run.status("L.ask", (0,)) == "waiting" and run.state.idle
    run.provide("L.ask", {"done": False}, item=(0,))
    assert run.status("L.ask", (1,)) == "waiting"
    run.provide("L.ask", {"done": True}, item=(1,))
    assert run.status("L") == "succeeded"
    assert of_type(run.commands, RunFinished)[0].status == "succeeded"


def test_the_run_cap_and_a_pool_hold_inside_the_body_and_the_waiting_loop_takes_no_slot():
    body = (task("a", pool="p"), task("b", pool="p"), task("c"), task("m"))
    connections = ({"from": "a", "to": "m"}, {"from": "b", "to": "m"}, {"from": "c", "to": "m"})
    run = started_loop("other", loop_node=loop(nodes=body, connections=connections), max_parallel=2, pools={"p": 1})
    assert run.status("L") == "waiting" and run.in_flight == 2  # the loop holds none of the two slots
    in_pool = [k for k in starts(run.commands) if k[0] in ("L.a", "L.b")]
    assert len(in_pool) == 1  # the pool of one, inside the body
    seen = set(starts(run.commands))
    while ("L.m", (0,)) not in seen:
        running = sorted(run.state.running.keys())
        n, path = running[0]
        run.succeed(run.state.graph.ids[n], 1, item=path)
        assert run.in_flight <= 2
        assert sum(1 for k in run.state.running if run.state.graph.ids[k[0]] in ("L.a", "L.b")) <= 1
        seen |= set(starts(run.commands))
    assert seen >= {("L.a", (0,)), ("L.b", (0,)), ("L.c", (0,)), "other"}


def test_a_node_cancel_of_the_loop_stops_its_running_body_and_the_run_goes_on():
    run = started_loop("L -> after", "other")
    commands = run.step(NodeCancelRequested(node="L", at=1, reason="enough"))
    assert cancels(commands) == [("L.a", (0,))]
    assert run.status("L") == "cancelled" and run.status("L.a", (0,)) == "cancelled"
    assert run.status("L.b", (0,)) == "cancelled" and run.status("after") == "skipped"
    run.succeed("L.a", 1, item=(0,))  # a late result changes nothing
    assert not run.has_record("L.a", (1,))
    run.succeed("other")
    assert of_type(run.commands, RunFinished)[0].status == "succeeded"


def test_a_skipped_loop_skips_its_body_once_at_the_loop_path():
    run = Run(graph("c.true -> L", nodes=[node("c", "if", config={"condition": "x"}), loop()]))
    run.start()
    run.succeed("c", ports={"false": 1})
    assert run.status("L") == "skipped" and run.status("L.a") == "skipped" and run.status("L.b") == "skipped"
    assert of_type(run.commands, RunFinished)[0].status == "succeeded"


def test_a_cancel_of_the_run_cancels_the_loop_and_its_open_body():
    from scheduler_core import CancelRequested
    run = started_loop()
    run.step(CancelRequested(at=1, reason="stop"))
    assert run.status("L") == "cancelled" and run.status("L.a", (0,)) == "cancelled"
    assert run.status("L.b", (0,)) == "cancelled"


def test_a_resume_restarts_the_body_instance_that_was_running():
    run = started_loop()
    iterate(run, 0, {"done": False})
    commands = run.resume(at=5)
    assert starts(commands) == [("L.a", (1,))] and start_of(commands, "L.a", (1,)).redispatch
    iterate(run, 1, {"done": True})
    assert run.status("L") == "succeeded"


def test_nested_loops_count_iterations_per_outer_iteration():
    inner = {"id": "in", "type": "loop", "until": "done", "max_iterations": 3,
             "body": {"nodes": [task("x")], "connections": []}}
    run = started_loop(loop_node=loop("out", nodes=(inner, task("s")), connections=({"from": "in", "to": "s"},)))
    run.succeed("out.in.x", {"done": False}, item=(0, 0))
    run.succeed("out.in.x", {"done": True}, item=(0, 1))
    assert run.status("out.in", (0,)) == "succeeded"
    run.succeed("out.s", {"done": False}, item=(0,))
    assert starts(run.commands) == [("out.in.x", (1, 0))]
    run.succeed("out.in.x", {"done": True}, item=(1, 0))
    run.succeed("out.s", {"done": True}, item=(1,))
    assert run.status("out") == "succeeded"


def test_a_loop_inside_a_foreach_runs_one_loop_per_item():
    run = Run(graph("f.iteration -> L", edge("L -> g"), nodes=[node("f", "foreach"), loop()]))
    run.start()
    run.succeed("f", ports={"result": [1, 2], "iteration": [1, 2]})
    assert starts(run.commands) == [("L.a", (0, 0)), ("L.a", (1, 0))]
    iterate(run, 0, {"done": True, "k": 1}, path=(1,))
    iterate(run, 0, {"done": False}, path=(0,))
    iterate(run, 1, {"done": True, "k": 0}, path=(0,))
    assert start_of(run.commands, "g").input == [{"done": True, "k": 0}, {"done": True, "k": 1}]


def test_the_body_of_a_loop_per_item_of_a_capped_foreach_counts_against_its_cap():
    """A body runs as part of its loop's item: a foreach capped at 1 has one body instance running
    at a time over all of its items' loops, where each loop parks and holds no slot itself."""
    capped = node("f", "foreach", config={"max_parallel": 1})
    run = Run(graph("f.iteration -> L", "x", edge("L -> g"), nodes=[capped, loop()]))
    run.start()
    run.succeed("x")
    run.succeed("f", ports={"result": [1, 2, 3], "iteration": [1, 2, 3]})
    assert starts(run.commands) == [("L.a", (0, 0))]
    assert [run.status("L", (i,)) for i in range(3)] == ["waiting"] * 3  # every loop parked, each waits for the cap
    assert starts(run.succeed("L.a", 0, item=(0, 0))) == [("L.b", (0, 0))]
    assert starts(run.succeed("L.b", {"done": True}, item=(0, 0))) == [("L.a", (1, 0))]
    assert starts(run.succeed("L.a", 0, item=(1, 0))) == [("L.b", (1, 0))]


def _compile(*nodes, edges=()):
    return compile_workflow(Workflow(name="t", nodes=tuple(nodes), edges=tuple(edges)))


@pytest.mark.parametrize("body, message", [
    ({"nodes": [task("a"), task("b")], "connections": []}, "exactly one node"),
    ({"nodes": [], "connections": []}, "at least one node"),
    ({"nodes": [task("a")], "connections": [{"from": "a", "to": "zz"}]}, "unknown body node 'zz'"),
    ({"nodes": [task("a"), task("a")], "connections": []}, "duplicate id"),
])
def test_a_bad_body_is_reported_on_the_loop(body, message):
    bad = node("L", "loop", config={"until": "x", "max_iterations": 3, "body": body})
    with pytest.raises(WorkflowInvalid, match=message):
        _compile(bad)


@pytest.mark.parametrize("fields, message", [
    ({"until": "x[", "max_iterations": 3}, "not valid JMESPath"),
    ({"until": "x", "max_iterations": 0}, "max_iterations must be a whole number from 1"),
    ({"until": "x", "max_iterations": 10**9}, "max_iterations"),
    ({"until": "x", "max_iterations": 2.5}, "max_iterations"),
])
def test_bad_until_or_max_iterations_are_reported(fields, message):
    bad = node("L", "loop", config={**fields, "body": {"nodes": [task("a")]}})
    with pytest.raises(WorkflowInvalid, match=message):
        _compile(bad)


def test_top_level_connections_cannot_reach_into_a_body():
    from scheduler_core import Edge
    with pytest.raises(WorkflowInvalid, match="connected only inside its body"):
        _compile(loop(), node("x"), edges=(Edge("L.a", "x"),))


def test_an_until_that_cannot_be_evaluated_fails_the_loop_with_until():
    run = started_loop(loop_node=loop(until="length(@)"), on_error="continue")
    iterate(run, 0, 5)
    error = run.record("L").error
    assert run.status("L") == "failed" and error.type == "until" and "length(@)" in error.message
