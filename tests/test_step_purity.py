"""step is a function: it never mutates the state it is given, and replaying the logged batches rebuilds the run.

One scenario touches most of the vocabulary (fan-out, map chain, gather, join, timeout, retry,
delay, hil, resume), another the requests from people (cancels, refusals, a late answer) and a
draining driver; the tests replay their event batches and compare.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from scheduler_core import (CancelRequested, Draining, InputProvided, NodeCancelRequested, NodeSucceeded, Refused,
                            ReplayDiverged, Retry, State, fingerprint, initial_state, replay, sequence_keys, step)
from step_helpers import Run, edge, graph, node, timers

HERE = Path(__file__).resolve().parent


def scenario() -> Run:
    nodes = [node("t", timeout=5.0, retry=Retry(max_attempts=2, delay=1.0)), node("f", "foreach"),
             node("d", "delay", config={"seconds": 3}), node("slow", "delay", config={"seconds": 30}),
             node("h", "hil", config={"choices": ["approve", "no"], "timeout": 100})]
    g = graph("f.iteration -> w", edge("w -> m", map=True), "m -> g", "t -> j", "g -> j", "j -> d", "d -> h",
              "h.approve -> end", "slow -> end", nodes=nodes)
    run = Run(g)
    slow, timeout = sorted(timers(run.start([1, 2, 3], at=0)), key=lambda t: t.due, reverse=True)
    run.succeed("f", ports={"result": [1, 2, 3], "iteration": [1, 2, 3]}, at=1)
    run.step(run.succeeded("w", "w2", item=(2,), at=2), run.succeeded("w", "w0", item=(0,), at=2))
    (retry,) = timers(run.fire(timeout.timer, at=5))
    run.fire(retry.timer, at=6)
    run.confirm("t", attempt=1, at=6.5)
    run.succeed("m", "m2", item=(2,), at=7)
    run.succeed("w", "w1", item=(1,), at=7)
    run.resume(at=7.5)
    run.succeed("m", "m1", item=(1,), at=8)
    run.succeed("m", "m0", item=(0,), at=8)
    run.succeed("g", "G", at=9)
    run.succeed("t", "T", at=10)
    (delay,) = timers(run.succeed("j", "J", at=11))
    run.fire(delay.timer, at=14)
    run.resume(at=20)
    run.provide("h", "yes", port="approve", at=21)
    run.fire(slow.timer, at=30)
    run.succeed("end", at=31)
    return run


def live_scenario() -> Run:
    """Requests from people and a driver that drains: node cancels (running, parked, ready, not
    reached, one item, a node cancelled before the run started), refusals, an answer that came after
    its wait's timeout, and Draining then Resumed."""
    nodes = [node("f", "foreach", config={"max_parallel": 1}), node("h", "hil", config={"timeout": 10}),
             node("d", "delay", config={"seconds": 4}), node("t", timeout=5.0, retry=Retry(max_attempts=2, delay=1.0))]
    g = graph("f.iteration -> w", edge("w -> m", map=True), "m -> g", "h.timeout -> after", "d -> x", "t -> j", "g -> j",
              "q -> j", "c", nodes=nodes)
    run = Run(g)
    run.step(NodeCancelRequested(node="c", at=0))
    run.start([1, 2, 3], at=0)
    run.step(NodeCancelRequested(node="q", at=1), NodeCancelRequested(node="d", at=1),
             NodeCancelRequested(node="ghost", at=1))
    run.succeed("f", ports={"result": [1, 2, 3], "iteration": [1, 2, 3]}, at=2)
    run.step(NodeCancelRequested(node="w", item=(1,), at=3), NodeCancelRequested(node="m", item=(2,), at=3),
             Draining(at=3))
    run.succeed("w", "w0", item=(0,), at=4)
    run.step(InputProvided(node="h", value="too late", at=12), InputProvided(node="x", at=12))
    run.resume(at=13)
    run.succeed("m", "m0", item=(0,), at=14)  # item 0's next stage before item 2 (item order under the cap)
    run.succeed("w", "w2", item=(2,), at=15)
    run.succeed("t", "T", at=16)
    run.succeed("g", "G", at=17)
    run.succeed("after", at=18)
    run.succeed("j", at=19)
    run.step(NodeCancelRequested(node="j", at=20), CancelRequested(at=20))
    return run


SCENARIOS = [scenario, live_scenario]


def contents(state: State) -> dict:
    """A deep copy of everything in a state but its graph, to compare against later."""
    return {f.name: copy.deepcopy(getattr(state, f.name)) for f in attrs.fields(State) if f.name != "graph"}


def test_the_scenario_runs_to_success():
    run = scenario()
    assert run.state.status == "succeeded"
    assert len(sequence_keys(run.state)) == 14


def test_the_live_scenario_runs_to_success_with_what_was_cancelled_and_refused():
    run = live_scenario()
    statuses = {(r.node, r.item): str(r.status) for r in run.state.records.values()}
    assert run.state.status == "succeeded"
    assert [k for k, v in sorted(statuses.items()) if v == "cancelled"] == [
        ("c", ()), ("d", ()), ("m", (2,)), ("q", ()), ("w", (1,))]
    assert run.record("h").ports == {"timeout": [1, 2, 3]}
    assert run.commands == tuple(Refused(reason="the run has already finished", stimulus=f"14.{i}") for i in (0, 1))


@pytest.mark.parametrize("make", SCENARIOS)
def test_step_never_mutates_the_state_it_is_given(make):
    run = make()
    state = initial_state(run.state.graph)
    for batch in run.batches:
        before = contents(state)
        new, _ = step(state, batch)
        assert contents(state) == before
        assert new is not state
        state = new


@pytest.mark.parametrize("make", SCENARIOS)
def test_an_old_state_steps_again_to_the_same_state_and_commands(make):
    run = make()
    state = initial_state(run.state.graph)
    for batch in run.batches:
        first = step(state, batch)
        assert step(state, batch) == first
        state = first[0]


def test_step_never_mutates_the_events_it_is_given():
    run = Run(graph("a -> b", "a.x -> c"))
    run.start()
    event = run.succeeded("a", ports={"result": [1], "x": {"k": [2]}})
    kept = copy.deepcopy(event)
    run.step(event)
    assert event == kept


@pytest.mark.parametrize("make", SCENARIOS)
def test_replay_of_the_logged_batches_rebuilds_the_same_state(make):
    run = make()
    assert replay(run.state.graph, run.batches) == run.state


def test_replay_checks_each_batch_against_the_commands_it_produced():
    run = scenario()
    g = run.state.graph
    prints, state = [], initial_state(g)
    for batch in run.batches:
        state, commands = step(state, batch)
        prints.append(fingerprint(commands))
    assert replay(g, run.batches, prints) == run.state
    prints[3] = "StartNode:somebody-else"
    with pytest.raises(ReplayDiverged, match="step 3"):
        replay(g, run.batches, prints)


def test_replay_of_a_log_with_a_different_result_differs():
    run = scenario()
    batches = list(run.batches)
    i = next(i for i, b in enumerate(batches) if isinstance(b[0], NodeSucceeded) and b[0].node == "g")
    batches[i] = (attrs.evolve(batches[i][0], ports={"result": "other"}),)
    assert replay(run.state.graph, batches) != run.state


SEED_SCRIPT = """
import sys; sys.path.insert(0, sys.argv[1])
from test_step_purity import SCENARIOS
from scheduler_core import fingerprint, initial_state, step
for make in SCENARIOS:
    run = make()
    state = initial_state(run.state.graph)
    for batch in run.batches:
        state, commands = step(state, batch)
        print(fingerprint(commands), [getattr(c, "reason", None) for c in commands])
"""


def test_commands_do_not_depend_on_the_process_hash_seed():
    outputs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(HERE)], env=env, capture_output=True,
                              text=True, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
