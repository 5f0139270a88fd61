"""Differential tests: the serial, thread, asyncio, process, simulated and dask runners give the same final records.

Serial is the reference. The dask runner runs on its in-process cluster and on a real one (a
scheduler and two worker processes, the session's ``dask_cluster``). Records are compared on what a run decides (node, item, status, attempts,
ports, error), never on times, and so is the run's status and error.
"""
import pytest

from adapters import Engine
from nodes_for_tests import task

OTHERS = ["thread", "asyncio", "process", "simulated"]

ROUTING = {  # if, a join after it, several ports with select, and a merge in edge order
    "name": "routing",
    "nodes": [task("start", "echo"),
              {"id": "check", "type": "if", "condition": "priority == 'high'"},
              task("urgent", "async_echo"), task("normal", "echo"),
              {"id": "either", "type": "merge"},
              task("split", "split"), task("left", "add", params={"n": 100}), task("right", "echo"),
              {"id": "both", "type": "merge"}],
    "connections": [{"from": "start", "to": "check"},
                    {"from": "check", "to": "urgent", "port": "true", "select": "n"},
                    {"from": "check", "to": "normal", "port": "false"},
                    {"from": "urgent", "to": "either"}, {"from": "normal", "to": "either"},
                    {"from": "start", "to": "split", "select": "n"},
                    {"from": "split", "to": "right", "port": "right"},
                    {"from": "split", "to": "left", "port": "left"},
                    {"from": "right", "to": "both"}, {"from": "left", "to": "both"}],
}

FAN_OUT = {  # foreach -> a map chain -> a gather, next to a branch that needs no items
    "name": "fan-out",
    "nodes": [{"id": "each", "type": "foreach", "items": "items", "max_parallel": 2},
              task("double", "double"), task("plus", "async_echo"), task("collect", "echo"),
              task("count", "echo")],
    "connections": [{"from": "each", "to": "double", "port": "iteration"},
                    {"from": "double", "to": "plus", "map": True},
                    {"from": "plus", "to": "collect"},
                    {"from": "each", "to": "count", "select": "length(@)"}],
}

NESTED = {  # a foreach per item of a foreach, gathered twice
    "name": "nested",
    "nodes": [{"id": "rows", "type": "foreach"}, {"id": "cells", "type": "foreach"},
              task("double", "double"), task("row", "echo"), task("table", "echo")],
    "connections": [{"from": "rows", "to": "cells", "port": "iteration"},
                    {"from": "cells", "to": "double", "port": "iteration"},
                    {"from": "double", "to": "row"}, {"from": "row", "to": "table"}],
}

CONTINUE = {  # failures under on_error continue: an item, a plain node, a retry that runs out
    "name": "continue",
    "settings": {"on_error": "continue"},
    "nodes": [{"id": "each", "type": "foreach"},
              task("check", "fail_on", params={"bad": 2}), task("plus", "add", params={"n": 10}),
              task("collect", "echo"),
              task("broken", "fail", params={"message": "no luck"}), task("after_broken", "echo"),
              task("fine", "echo"), {"id": "join", "type": "merge"},
              task("flaky", "flaky", params={"failures": 1}, retry={"max_attempts": 2}),
              task("hopeless", "flaky", params={"failures": 9}, retry={"max_attempts": 2})],
    "connections": [{"from": "each", "to": "check", "port": "iteration"},
                    {"from": "check", "to": "plus", "map": True},
                    {"from": "plus", "to": "collect"},
                    {"from": "broken", "to": "after_broken"},
                    {"from": "broken", "to": "join"}, {"from": "fine", "to": "join"}],
}

CASES = {
    "if routed to true": (ROUTING, {"priority": "high", "n": 3}),
    "if routed to false": (ROUTING, {"priority": "low", "n": 4}),
    "foreach, map and gather": (FAN_OUT, {"items": [1, 2, 3, 4, 5]}),
    "an empty foreach": (FAN_OUT, {"items": []}),
    "nested foreach": (NESTED, [[1, 2], [3], []]),
    "failures under continue": (CONTINUE, [1, 2, 3]),
}


def outcome(runner, workflow, trigger, **engine_options):
    d = Engine(runner=runner, **engine_options).run(workflow, trigger=trigger).to_dict()
    records = sorted((r["node"], r["item"] or [], r["status"], r["attempts"], r["ports"], r["error"])
                     for r in d["nodes"])
    return d["status"], d["error"], records


@pytest.fixture(scope="module")
def reference():
    return {name: outcome("serial", wf, trigger) for name, (wf, trigger) in CASES.items()}


@pytest.mark.parametrize("runner", OTHERS)
@pytest.mark.parametrize("case", list(CASES))
def test_runners_agree_with_serial_on_the_final_records(runner, case, reference):
    workflow, trigger = CASES[case]
    assert agreed(outcome(runner, workflow, trigger), reference[case])


def agreed(got, want) -> bool:
    """The same status and records. Under ``continue`` the run's error is its first failure in
    time, which parallel runners may hear of in another order: it must be one of the failures."""
    (status, error, records), (_, want_error, want_records) = got, want
    if error != want_error and error is not None and want_error is not None:
        failed = {(node, err["type"], err["message"]) for node, _, state, _, _, err in records if state == "failed"}
        assert (error["node"], error["type"], error["message"]) in failed, error
        error = want_error
    return (status, error, records) == want


def test_the_reference_runs_do_what_the_workflows_say(reference):
    status, _, records = reference["failures under continue"]
    by_key = {(node, tuple(item)): (state, attempts, ports) for node, item, state, attempts, ports, _ in records}
    assert status == "failed"
    assert by_key[("check", (1,))][0] == "failed" and by_key[("plus", (1,))][0] == "skipped"
    assert by_key[("collect", ())][2] == {"result": [11, 13]}
    assert by_key[("after_broken", ())][0] == "skipped"
    assert by_key[("join", ())][2] == {"result": [[1, 2, 3]]}  # only "fine" delivered
    assert by_key[("flaky", ())][:2] == ("succeeded", 2) and by_key[("hopeless", ())][:2] == ("failed", 2)
    _, _, fan_out = reference["foreach, map and gather"]
    assert ("collect", [], "succeeded", 1, {"result": [2, 4, 6, 8, 10]}, None) in fan_out


@pytest.mark.parametrize("case", ["if routed to true", "foreach, map and gather", "failures under continue"])
def test_the_dask_runner_agrees_with_serial_on_the_final_records(case, reference):
    pytest.importorskip("distributed")
    workflow, trigger = CASES[case]
    assert agreed(outcome("dask", workflow, trigger), reference[case])


@pytest.mark.parametrize("case", list(CASES))
def test_the_dask_runner_on_a_real_cluster_agrees_with_serial_on_the_final_records(case, reference, dask_cluster):
    workflow, trigger = CASES[case]
    assert agreed(outcome("dask", workflow, trigger, dask_address=dask_cluster.address), reference[case])
