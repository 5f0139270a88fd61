"""The simulated runner (issue 3): deterministic by seed, faithful to ``step``'s invariants under
injected faults (failures, late completions that trip timeouts, duplicates), and fast in virtual time.
"""
import json
import random
import time

from hypothesis import given
from hypothesis import strategies as st

from adapters import Engine
from adapters.store import MemoryStore, encode_event
from scheduler_core import initial_state

from .invariants import (a_timed_out_attempt_never_succeeds, attempts_never_overlap,
                         every_instance_ends_in_exactly_one_terminal_status, holds, in_flight_never_exceeds_a_cap,
                         late_results_are_kept_and_nothing_is_invented,
                         no_instance_starts_before_its_inputs_resolve, nothing_completes_before_its_delay,
                         nothing_happens_after_the_run_finished, replaying_the_batches_rebuilds_the_state,
                         sequence_is_a_linear_extension_of_the_graph, waits_end_answered_or_timed_out)
from .step_driver import Step, Trace
from .workflows import Vocabulary, workflow_definitions

SIMULATED = Vocabulary(max_nodes=30, fail_percent=5, answers=False, children=False, control_flow=False)  # its waits and hils time out; child runs are threads of the adapters, not simulated
faults = st.fixed_dictionaries({
    "seed": st.integers(0, 2**16),
    "fail_rate": st.sampled_from((0.0, 0.05, 0.2)),
    "duplicate_rate": st.sampled_from((0.0, 0.1, 0.5)),
    "late_rate": st.sampled_from((0.0, 0.1, 0.3)),
})


def simulate(definition, options, observer=None):
    store = MemoryStore()
    result = Engine(runner="simulated", store=store, runner_options=options).run(
        definition, trigger=3, run_id="sim", observer=observer)
    return result, store


def event_log(definition, options) -> str:
    _, store = simulate(definition, options)
    _, batches, _ = store.load("sim")
    return "\n".join(json.dumps([encode_event(e) for e in batch], sort_keys=True) for batch in batches)


@given(workflow_definitions(SIMULATED), faults)
def test_the_same_seed_gives_the_same_event_log_byte_for_byte(definition, options):
    assert event_log(definition, options) == event_log(definition, options)


@given(workflow_definitions(SIMULATED), faults)
def test_simulated_runs_with_injected_faults_keep_the_step_invariants(definition, options):
    steps = []

    def observe(events, commands, state):
        before = steps[-1].after if steps else initial_state(state.graph)
        steps.append(Step(tuple(events), before, state, tuple(commands)))

    result, _ = simulate(definition, options, observe)
    trace = Trace(definition, steps[-1].after.graph, tuple(steps), stalled=not result.state.finished)
    holds(trace, no_instance_starts_before_its_inputs_resolve, attempts_never_overlap, in_flight_never_exceeds_a_cap,
          nothing_happens_after_the_run_finished, every_instance_ends_in_exactly_one_terminal_status,
          sequence_is_a_linear_extension_of_the_graph, nothing_completes_before_its_delay,
          a_timed_out_attempt_never_succeeds, replaying_the_batches_rebuilds_the_state,
          waits_end_answered_or_timed_out, late_results_are_kept_and_nothing_is_invented)


def layered_delays(n: int, seed: int = 1) -> dict:
    """A no-op root feeding ``n`` delay nodes in layers of 100, each waiting 1 to 5 seconds."""
    rng = random.Random(seed)
    nodes = [{"id": "start", "type": "noop"}]
    connections = []
    previous = ["start"]
    for layer in range(n // 100):
        current = [f"d{layer}_{i}" for i in range(100)]
        for node in current:
            nodes.append({"id": node, "type": "delay", "seconds": rng.randint(1, 5)})
            for source in rng.sample(previous, min(2, len(previous))):
                connections.append({"from": source, "to": node})
        previous = current
    return {"name": "delays", "settings": {"max_parallel": 8}, "nodes": nodes, "connections": connections}


def longest_delay_path(definition) -> float:
    seconds = {n["id"]: n.get("seconds", 0) for n in definition["nodes"]}
    longest = dict.fromkeys(seconds, 0.0)
    for edge in definition["connections"]:  # declared layer by layer, so sources come first
        longest[edge["to"]] = max(longest[edge["to"]], longest[edge["from"]] + seconds[edge["to"]])
    return max(longest.values())


def test_ten_thousand_delay_nodes_take_hours_of_virtual_time_in_seconds_of_real_time():
    definition = layered_delays(10_000)
    started = time.perf_counter()
    result, _ = simulate(definition, {"seed": 1, "validate": False})  # its speed, without the O(state) checks
    took = time.perf_counter() - started
    run = result.to_dict()
    assert result.status == "succeeded"
    assert len(run["nodes"]) == 10_001
    virtual = max(r["finished_at"] for r in run["nodes"]) - min(r["started_at"] for r in run["nodes"])
    assert virtual >= longest_delay_path(definition)
    assert took < 5.0, f"10,000 delay nodes took {took:.2f} s of real time on the simulated runner"


def test_a_simulated_delay_lasts_exactly_its_seconds_of_virtual_time():
    definition = layered_delays(200)
    run = simulate(definition, {"seed": 2})[0].to_dict()
    seconds = {n["id"]: n.get("seconds") for n in definition["nodes"]}
    for record in run["nodes"]:
        if seconds[record["node"]] is not None:
            took = record["finished_at"] - record["started_at"]
            assert abs(took - seconds[record["node"]]) < 1e-6, record

