"""The instance lifecycle table: every declared move is exercised, a move it lacks raises at once,
and each record and command names the event (stimulus) that caused it."""
import attrs
import pytest

from scheduler_core import (LIFECYCLE, CancelRequested, ChildEnded, IllegalTransition, InvalidState, Move, NodeCancelRequested, Retry,
                            Status, validate_state)
from scheduler_core.lifecycle import next_status
from step_helpers import Run, edge, graph, node, start_of, timers


def _scenarios(trace: list) -> None:
    """Small runs that, between them, take every row of the lifecycle table."""
    # start, succeed; park a delay, its timer fires (waiting -> succeeded); skip the untaken branch
    run = Run(graph("a -> d", "c.true -> yes", "c.false -> no", nodes=[
        node("d", "delay", config={"seconds": 5}), node("c", "if", config={"condition": "v"})]), trace)
    run.start({"v": 1}, at=0)
    run.succeed("c", ports={"true": 1}, at=1)
    run.fire(timers(run.succeed("a", "x", at=1))[0].timer, at=6)
    # a failed attempt retried after a delay (running -> waiting -> pending -> running), then a final failure
    run = Run(graph("r", nodes=[node("r", retry=Retry(max_attempts=2, delay=1.0))], on_error="continue"), trace)
    run.start(at=0)
    run.fire(timers(run.fail("r", at=1))[0].timer, at=2)
    run.fail("r", at=3)
    # a select that fails fails its target before it starts (pending -> failed)
    run = Run(graph(edge("a -> b", select="abs(@)"), on_error="continue"), trace)
    run.start(at=0)
    run.succeed("a", "not a number", at=1)
    # a crash: the new process re-dispatches what was running (running -> running)
    run = Run(graph("a"), trace)
    run.start(at=0)
    run.resume(at=1)
    # a cancel of the whole run: running, waiting (parked) and pending (never started) instances
    run = Run(graph("a", "b", "h", nodes=[node("h", "hil")], max_parallel=1), trace)
    run.start(at=0)
    run.step(CancelRequested(at=1, reason="stop"))
    # a node cancel: a running, a parked and a ready instance of a fan-out's items
    run = Run(graph("f.iteration -> w", nodes=[node("f", "foreach"), node("w", "wait")], max_parallel=1), trace)
    run.start(at=0)
    run.succeed("f", ports={"result": [1], "iteration": [1]}, at=1)
    run.step(NodeCancelRequested(node="w", at=2))
    # a loop whose last allowed iteration ends with until still false (waiting -> failed)
    run = Run(graph("L", nodes=[node("L", "loop", config={"until": "done", "max_iterations": 1, "body": {
        "nodes": [{"id": "a", "type": "python", "call": "m:f"}]}})]), trace)
    run.start(at=0)
    run.succeed("L.a", {"done": False}, item=(0,), at=1)
    # a subworkflow's child run failed (waiting -> failed)
    run = Run(graph("s", nodes=[node("s", "subworkflow", config={"workflow": "child.yaml"})]), trace)
    run.start(at=0)
    run.step(ChildEnded(node="s", at=1, status="failed", error_type="subworkflow", message="boom"))
    # an end node: succeeds once ready (pending -> succeeded) and ends the run
    run = Run(graph("a -> e", nodes=[node("e", "end")]), trace)
    run.start(at=0)
    run.succeed("a", "done", at=1)


def test_every_declared_transition_is_exercised():
    trace: list = []
    _scenarios(trace)
    taken = {(old, move) for _, old, move, _, _ in trace}
    assert set(LIFECYCLE) - taken == set(), "declared moves no scenario takes"
    assert taken <= set(LIFECYCLE)
    for _, old, move, new, _ in trace:
        assert LIFECYCLE[(old, move)] == new


def test_a_move_the_table_lacks_raises_at_once():
    with pytest.raises(IllegalTransition, match="no move 'start' from 'succeeded'"):
        next_status(Status.SUCCEEDED, Move.START, "a")
    for status in (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED):
        assert not any(s == status for s, _ in LIFECYCLE), f"{status} is terminal: no move leaves it"


def test_records_and_commands_name_the_event_that_caused_them():
    run = Run(graph("a -> b"))
    run.start(at=0)  # step 0: event 0.0 started the run; the start of a was decided after it, in step 0
    assert start_of(run.commands, "a").stimulus == "0"
    assert run.record("a").stimulus == "0"
    run.succeed("a", at=1)  # step 1: its event 1.0
    assert run.record("a").stimulus == "1.0"
    assert start_of(run.commands, "b").stimulus == "1"


def test_validate_state_finds_a_state_whose_parts_disagree():
    """(``Run`` validates the state after every step of every step test; here, it must also fail.)"""
    run = Run(graph("a", "b"))
    run.start(at=0)
    validate_state(run.state)
    key = (run.state.graph.index["a"], ())
    lost = attrs.evolve(run.state, running=run.state.running.delete(key))
    with pytest.raises(InvalidState, match="running_count"):
        validate_state(lost)
    stale = attrs.evolve(run.state, records=run.state.records.set(key, run.record("a")._replace(status=Status.WAITING)))
    with pytest.raises(InvalidState, match="in flight as attempt 1 but its record"):
        validate_state(stale)


def test_the_architecture_doc_shows_the_lifecycle_table_as_the_code_has_it():
    import pathlib
    import re

    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \|", doc, flags=re.M))
    assert rows == {(str(s), str(m), str(n)) for (s, m), n in LIFECYCLE.items()}
