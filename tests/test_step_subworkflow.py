"""The core's side of a ``subworkflow`` node (``ParkForChild``): it parks, asks for its child run
(``StartChild``), and the child's end (``ChildEnded``) succeeds, fails or cancels it; a node cancel
or the run's end asks for the child to be cancelled (``CancelChild``); a resume asks again."""
from scheduler_core import (CancelChild, CancelRequested, ChildEnded, NodeCancelRequested, RunFinished, StartChild,
                            replay)
from step_helpers import Run, cancelled_timers, graph, node, starts, timers

SUB = {"workflow": "child.yaml"}


def sub(id="s", **fields):
    return node(id, "subworkflow", config=SUB, **fields)


def child_starts(commands):
    return [(c.node, c.item, c.input) for c in commands if isinstance(c, StartChild)]


def child_cancels(commands):
    return [(c.node, c.item, c.reason) for c in commands if isinstance(c, CancelChild)]


def ended(name, status, item=(), at=1.0, **kw):
    return ChildEnded(node=name, item=tuple(item), at=at, status=status, **kw)


def test_a_subworkflow_node_parks_and_asks_for_its_child_with_its_input():
    run = Run(graph("a -> s", "s -> b", nodes=[sub()]))
    run.start({"x": 1}, at=0)
    commands = run.succeed("a", {"n": 3}, at=1)
    assert child_starts(commands) == [("s", (), {"n": 3})]
    assert starts(commands) == []  # it takes no slot and runs nothing on a runner
    assert run.status("s") == "waiting" and run.in_flight == 0
    assert not any(isinstance(c, RunFinished) for c in commands)  # a run waiting for a child is not done


def test_the_childs_output_goes_out_on_result_and_the_run_goes_on():
    run = Run(graph("s -> b", nodes=[sub()]))
    run.start({"x": 1}, at=0)
    commands = run.step(ended("s", "succeeded", ports={"result": 42}, at=2))
    assert run.status("s") == "succeeded" and run.record("s").ports == {"result": 42}
    assert starts(commands) == ["b"]
    assert run.record("s").finished_at == 2


def test_a_failed_child_fails_the_node_with_its_error_and_fails_the_run_under_fail_fast():
    run = Run(graph("s -> b", "c", nodes=[sub()]))
    run.start(at=0)
    commands = run.step(ended("s", "failed", error_type="subworkflow", message="node 'x' failed: boom", at=2))
    record = run.record("s")
    assert record.status == "failed" and tuple(record.error[:2]) == ("subworkflow", "node 'x' failed: boom")
    assert run.state.status == "failed" and run.state.error.node == "s"
    assert run.status("b") == "cancelled"
    assert any(isinstance(c, RunFinished) for c in commands)


def test_under_continue_a_failed_child_only_kills_its_branch():
    run = Run(graph("s -> b", "c", nodes=[sub()], on_error="continue"))
    run.start(at=0)
    run.step(ended("s", "failed", error_type="max_depth", message="too deep", at=1))
    assert run.status("b") == "skipped"
    run.succeed("c", at=2)
    assert run.state.status == "failed" and run.state.error.type == "max_depth"


def test_a_cancelled_child_cancels_the_node_without_failing_the_run():
    run = Run(graph("s -> b", "c", nodes=[sub()]))
    run.start(at=0)
    run.step(ended("s", "cancelled", error_type="cancelled", message="stop it", at=1))
    assert run.status("s") == "cancelled" and tuple(run.record("s").error[:2]) == ("cancelled", "stop it")
    assert run.status("b") == "skipped"
    run.succeed("c", at=2)
    assert run.state.status == "succeeded"


def test_a_node_cancel_asks_for_the_child_to_be_cancelled_and_a_late_end_is_ignored():
    run = Run(graph("s -> b", "c", nodes=[sub()]))
    run.start(at=0)
    commands = run.step(NodeCancelRequested(node="s", at=1, reason="no longer needed"))
    assert child_cancels(commands) == [("s", (), "no longer needed")]
    assert run.status("s") == "cancelled"
    run.step(ended("s", "succeeded", ports={"result": 1}, at=2))  # the child finished anyway
    assert run.status("s") == "cancelled"


def test_the_end_of_the_run_cancels_every_child_it_waits_for():
    run = Run(graph("f.iteration -> s", nodes=[node("f", "foreach"), sub()]))
    run.start(at=0)
    commands = run.succeed("f", ports={"result": [{}, {}], "iteration": [{}, {}]}, at=1)
    assert sorted(c[:2] for c in child_starts(commands)) == [("s", (0,)), ("s", (1,))]
    commands = run.step(CancelRequested(at=2, reason="stop"))
    assert child_cancels(commands) == [("s", (0,), "run cancelled"), ("s", (1,), "run cancelled")]
    assert run.status("s", (0,)) == run.status("s", (1,)) == "cancelled"


def test_a_resume_asks_again_for_every_child_still_waited_for():
    run = Run(graph("f.iteration -> s", nodes=[node("f", "foreach"), sub()]))
    run.start(at=0)
    run.succeed("f", ports={"result": [{"i": 0}, {"i": 1}], "iteration": [{"i": 0}, {"i": 1}]}, at=1)
    run.step(ended("s", "succeeded", item=(1,), ports={"result": 1}, at=2))
    assert child_starts(run.resume(at=3)) == [("s", (0,), {"i": 0})]


def test_the_childs_end_is_replayed_like_any_event():
    run = Run(graph("a -> s", "s -> b", nodes=[sub()]))
    run.start(at=0)
    run.succeed("a", {}, at=1)
    run.step(ended("s", "succeeded", ports={"result": "done"}, at=2))
    run.succeed("b", at=3)
    again = replay(run.state.graph, run.batches)
    assert again.records == run.state.records and again.status == run.state.status == "succeeded"


def test_the_end_of_a_child_for_a_node_the_run_lacks_changes_nothing():
    """(It may come through the inbox, where anything can be written.)"""
    run = Run(graph("s", nodes=[sub()]))
    run.start(at=0)
    before = run.state.records
    assert run.step(ended("nope", "succeeded", ports={"result": 1})) == ()
    assert run.state.records == before


def test_a_child_run_past_the_nodes_timeout_is_cancelled_and_the_node_fails_with_timeout():
    run = Run(graph("s -> b", "c", nodes=[sub(timeout=5)], on_error="continue"))
    commands = run.start(at=0)
    [timer] = timers(commands)
    assert timer.due == 5 and child_starts(commands) == [("s", (), None)]
    commands = run.fire(timer.timer, at=5)
    [(name, item, reason)] = child_cancels(commands)
    assert (name, item) == ("s", ()) and "timeout of 5 s" in reason
    record = run.record("s")
    assert record.status == "failed" and record.error.type == "timeout" and record.finished_at == 5
    assert run.status("b") == "skipped"
    run.step(ended("s", "cancelled", message=reason, at=6))  # the child's end, once it stopped: too late to matter
    assert run.record("s") == record
    run.succeed("c", at=7)
    assert run.state.status == "failed" and run.state.error.type == "timeout"


def test_a_child_that_ends_in_time_takes_its_timeout_timer_with_it():
    run = Run(graph("s -> b", nodes=[sub(timeout=5)]))
    [timer] = timers(run.start(at=0))
    commands = run.step(ended("s", "succeeded", ports={"result": 1}, at=2))
    assert cancelled_timers(commands) == [timer.timer] and run.status("s") == "succeeded"
    before = run.state.records
    run.fire(timer.timer, at=5)  # a runner that fires it anyway changes nothing
    assert run.state.records == before


def test_a_resume_asks_again_for_the_child_and_its_timeout_timer():
    run = Run(graph("s", nodes=[sub(timeout=5)]))
    [timer] = timers(run.start(at=0))
    commands = run.resume(at=1)
    assert child_starts(commands) == [("s", (), None)]
    assert [(t.timer, t.due) for t in timers(commands)] == [(timer.timer, 5)]
