"""Join rules, cancel_rest, gather quorums, ``end``, ``fail`` and ``cancel`` lists through the
Python API (``Engine``) with real runners, and their checks in ``load_workflow`` (every problem at
once, with where)."""
import time

import pytest

from adapters import Engine, WorkflowError, load_workflow


def records(result) -> dict:
    return {(r["node"] if not r["item"] else (r["node"], tuple(r["item"]))): r for r in result.to_dict()["nodes"]}


def after(node_id, value, seconds):
    """A node that waits ``seconds`` (cooperatively) and returns ``value``."""
    return {"id": node_id, "type": "python", "call": "nodes_for_tests:answer_after",
            "params": {"answer": value, "seconds": seconds}}


@pytest.mark.parametrize("runner", ["thread", "asyncio"])
def test_join_any_with_cancel_rest_takes_the_first_and_cancels_the_slow_branches(runner):
    wf = {"nodes": [after("fast", "fast", 0.05), after("slow", "slow", 20), after("slower", "slower", 20),
                    {"id": "first", "type": "noop", "join": "any", "cancel_rest": True}],
          "connections": [{"from": n, "to": "first"} for n in ("slow", "fast", "slower")]}
    began = time.monotonic()
    result = Engine(runner=runner).run(wf)
    assert time.monotonic() - began < 10  # not the 20 s of the losers
    got = records(result)
    assert result.status == "succeeded" and got["first"]["output"] == "fast"
    assert got["slow"]["status"] == got["slower"]["status"] == "cancelled"
    assert got["slow"]["error"]["type"] == "cancelled"


def test_join_at_least_runs_on_the_first_two_in_the_order_they_came():
    wf = {"nodes": [after("a", "A", 0.6), after("b", "B", 0.02), after("c", "C", 0.3),
                    {"id": "two", "type": "merge", "join": {"at_least": 2}}],
          "connections": [{"from": n, "to": "two"} for n in "abc"]}
    result = Engine(runner="thread").run(wf)
    assert records(result)["two"]["output"] == ["B", "C"] and result.status == "succeeded"


def test_a_gather_quorum_with_cancel_rest_takes_two_items_and_cancels_the_rest():
    wf = {"nodes": [{"id": "each", "type": "foreach"},
                    {"id": "work", "type": "python", "call": "nodes_for_tests:answer_after_item"},
                    {"id": "use", "type": "noop"}],
          "connections": [{"from": "each", "to": "work", "port": "iteration"},
                          {"from": "work", "to": "use", "at_least": 2, "cancel_rest": True}]}
    result = Engine(runner="thread").run(wf, trigger=[20, 0.05, 20, 0.1])
    got = records(result)
    assert got["use"]["output"] == [[0.05], [0.1]]  # the two that succeeded, in item order
    assert [got[("work", (i,))]["status"] for i in range(4)] == ["cancelled", "succeeded", "cancelled", "succeeded"]
    assert result.status == "succeeded"


@pytest.mark.parametrize("on_error,status", [("fail_fast", "failed"), ("continue", "failed")])
def test_a_fail_node_fails_with_its_message(on_error, status):
    wf = {"settings": {"on_error": on_error},
          "nodes": [{"id": "stop", "type": "fail", "message": "not today"}, after("other", "o", 0.3),
                    {"id": "next", "type": "noop"}],
          "connections": [{"from": "stop", "to": "next"}]}
    result = Engine(runner="thread").run(wf)
    got = records(result)
    assert result.status == status
    assert got["stop"]["error"] == {"type": "fail", "message": "not today"}
    assert result.to_dict()["error"] == {"node": "stop", "type": "fail", "message": "not today"}
    assert got["other"]["status"] == ("cancelled" if on_error == "fail_fast" else "succeeded")
    assert got["next"]["status"] == ("cancelled" if on_error == "fail_fast" else "skipped")


def test_an_end_node_ends_the_run_succeeded_and_cancels_what_runs():
    wf = {"nodes": [after("quick", "q", 0.05), {"id": "stop", "type": "end"}, after("long", "l", 20)],
          "connections": [{"from": "quick", "to": "stop"}]}
    began = time.monotonic()
    result = Engine(runner="thread").run(wf)
    assert time.monotonic() - began < 10
    got = records(result)
    assert result.status == "succeeded" and got["stop"]["output"] == "q" and got["long"]["status"] == "cancelled"


def test_a_cancel_list_cancels_the_named_node_and_the_run_succeeds():
    wf = {"nodes": [after("quick", "q", 0.05) | {"cancel": ["long"]}, after("long", "l", 20),
                    {"id": "after_long", "type": "noop"}],
          "connections": [{"from": "long", "to": "after_long"}]}
    result = Engine(runner="thread").run(wf)
    got = records(result)
    assert result.status == "succeeded"
    assert got["long"]["status"] == "cancelled" and got["after_long"]["status"] == "skipped"


def test_a_durable_run_stores_and_reloads_the_control_flow_fields(tmp_path):
    wf = {"name": "stored", "nodes": [after("a", "A", 0.01), after("b", "B", 0.5),
                                      {"id": "j", "type": "noop", "join": "any", "cancel_rest": True}],
          "connections": [{"from": "a", "to": "j"}, {"from": "b", "to": "j"}]}
    engine = Engine(runner="thread", db=str(tmp_path / "s.db"))
    result = engine.run(wf, run_id="r")
    assert records(result)["b"]["status"] == "cancelled"
    again = Engine(db=str(tmp_path / "s.db")).status("r").to_dict()
    assert again == result.to_dict()


def test_every_problem_of_the_control_flow_fields_is_told_at_once_with_where():
    wf = {"nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"},
                    {"id": "one", "type": "noop", "join": "any"},
                    {"id": "many", "type": "noop", "join": {"at_least": 3}},
                    {"id": "bad", "type": "noop", "join": {"at_least": 1.5}, "cancel": ["ghost"]},
                    {"id": "rest", "type": "noop", "cancel_rest": True},
                    {"id": "each", "type": "foreach"}, {"id": "w", "type": "noop"}],
          "connections": [{"from": "a", "to": "one"}, {"from": "a", "to": "many"}, {"from": "b", "to": "many"},
                          {"from": "a", "to": "bad"}, {"from": "a", "to": "rest"}, {"from": "b", "to": "rest"},
                          {"from": "a", "to": "b", "at_least": 2},
                          {"from": "each", "to": "w", "port": "iteration"},
                          {"from": "w", "to": "bad", "at_least": 0}]}
    with pytest.raises(WorkflowError) as caught:
        load_workflow(wf)
    told = "\n".join(map(str, caught.value.problems))
    assert "node 'one': join any needs a node with at least two inputs; it has 1" in told
    assert "node 'many': join at_least 3 is more than its 2 inputs could ever deliver" in told
    assert "node 'bad': join at_least must be a whole number from 1, not 1.5" in told
    assert "node 'bad': cancel names an unknown node 'ghost'" in told
    assert "node 'rest': cancel_rest needs join any or {at_least: K}" in told
    assert "connection #7 (a -> b): at_least and cancel_rest belong on a gather edge" in told
    assert "connection #9 (w -> bad): at_least must be a whole number from 1, not 0" in told
