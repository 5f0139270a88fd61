"""step is a function: it never mutates the state it is given, and replaying the logged batches rebuilds the run.

One scenario touches most of the vocabulary (fan-out, map chain, gather, join, timeout, retry,
delay, hil, resume); the tests replay its event batches and compare.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from scheduler_core import (NodeSucceeded, ReplayDiverged, Retry, State, fingerprint, initial_state, replay,
                            sequence_keys, step)
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


def contents(state: State) -> dict:
    """A deep copy of everything in a state but its graph, to compare against later."""
    return {f.name: copy.deepcopy(getattr(state, f.name)) for f in attrs.fields(State) if f.name != "graph"}


def test_the_scenario_runs_to_success():
    run = scenario()
    assert run.state.status == "succeeded"
    assert len(sequence_keys(run.state)) == 14


def test_step_never_mutates_the_state_it_is_given():
    run = scenario()
    state = initial_state(run.state.graph)
    for batch in run.batches:
        before = contents(state)
        new, _ = step(state, batch)
        assert contents(state) == before
        assert new is not state
        state = new


def test_an_old_state_steps_again_to_the_same_state_and_commands():
    run = scenario()
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


def test_replay_of_the_logged_batches_rebuilds_the_same_state():
    run = scenario()
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
from test_step_purity import scenario
from scheduler_core import fingerprint, initial_state, step
run = scenario()
state = initial_state(run.state.graph)
for batch in run.batches:
    state, commands = step(state, batch)
    print(fingerprint(commands))
"""


def test_commands_do_not_depend_on_the_process_hash_seed():
    outputs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", SEED_SCRIPT, str(HERE)], env=env, capture_output=True,
                              text=True, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
