"""Node code gets values of its own: changing its input never changes a record or another node's input.

Every value a node is handed (its input, ``ctx.inputs``, a foreach item, a gathered list) is a copy
of what the records hold, and what a node returns is recorded as it was when it returned. Without
this, a node that appends to its input rewrites its upstream node's recorded output, its siblings
see the change (a race under the thread runner), and a stored run's replayed state differs from the
live one. The serial runner makes "which sibling ran first" deterministic (declaration order).
"""
import pytest

from adapters import Engine

RUNNERS = ["serial", "thread", "asyncio"]


def node(node_id, fn, **fields):
    return {"id": node_id, "type": "python", "call": f"mutating_nodes:{fn}", **fields}


def edge(source, target, **fields):
    return {"from": source, "to": target, **fields}


def run(workflow, runner="serial", db=None):
    result = Engine(runner=runner, db=db).run({"name": "values", **workflow}, trigger=None)
    assert result.status == "succeeded", result.error
    return result


LIST_CHAIN = {"nodes": [node("make", "fresh_list"), node("grow", "append_to")],
              "connections": [edge("make", "grow")]}

SIBLINGS = {"nodes": [node("make", "fresh_dict"), node("changer", "change_dict"), node("reader", "echo")],
            "connections": [edge("make", "changer"), edge("make", "reader")]}


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_node_appending_to_its_input_leaves_the_upstream_record_as_it_was(runner):
    result = run(LIST_CHAIN, runner)
    assert result.record("grow")["output"] == 3
    assert result.record("make")["output"] == ["x", {"nested": ["y"]}]
    assert result.record("make")["ports"] == {"result": ["x", {"nested": ["y"]}]}


def test_a_sibling_sees_the_original_value_when_the_other_sibling_changes_its_copy():
    result = run(SIBLINGS)
    assert result.to_dict()["sequence"].index("changer") < result.to_dict()["sequence"].index("reader")
    original = {"n": 1, "tags": ["a"], "inner": {"k": "v"}}
    assert result.record("reader")["output"] == original
    assert result.record("make")["output"] == original


@pytest.mark.parametrize("workflow", [LIST_CHAIN, SIBLINGS], ids=["chain", "siblings"])
def test_a_stored_run_replays_to_the_state_it_ran_to_when_a_node_changes_its_input(tmp_path, workflow):
    db = str(tmp_path / "runs.db")
    live = run(workflow, "serial", db)
    replayed = Engine(db=db).status(live.run_id)  # a fresh engine: no cached state, the log replayed
    assert replayed.to_dict() == live.to_dict()
    assert replayed.state == live.state


def test_changing_ctx_inputs_changes_no_record_and_no_sibling_input():
    workflow = {"nodes": [node("make_list", "fresh_list"), node("make_dict", "fresh_dict"),
                          node("changer", "change_inputs"), node("reader", "echo")],
                "connections": [edge("make_list", "changer"), edge("make_dict", "changer"),
                                edge("make_list", "reader"), edge("make_dict", "reader")]}
    result = run(workflow)
    fresh = {"make_list": ["x", {"nested": ["y"]}], "make_dict": {"n": 1, "tags": ["a"], "inner": {"k": "v"}}}
    assert result.record("make_list")["output"] == fresh["make_list"]
    assert result.record("make_dict")["output"] == fresh["make_dict"]
    assert result.record("reader")["output"] == [fresh["make_list"], fresh["make_dict"]]


FANOUT = {"nodes": [node("make", "fresh_records"), {"id": "loop", "type": "foreach"},
                    node("each", "change_item"), node("total", "append_to"), node("after", "echo")],
          "connections": [edge("make", "loop"), edge("loop", "each", port="iteration"), edge("each", "total"),
                          edge("each", "after")]}


@pytest.mark.parametrize("runner", RUNNERS)
def test_changing_a_foreach_item_or_a_gathered_list_changes_no_record(runner):
    result = run(FANOUT, runner)
    made = [{"n": 1, "tags": ["a"]}, {"n": 2, "tags": ["b"]}]
    changed = [{"n": 101, "tags": ["a", "changed"]}, {"n": 102, "tags": ["b", "changed"]}]
    assert result.record("make")["output"] == made
    assert result.record("loop")["ports"] == {"result": made, "iteration": made}
    assert [result.record("each", [i])["output"] for i in (0, 1)] == changed
    assert result.record("total")["output"] == 3  # it appended to the gathered list, and to each item's tags
    assert result.record("after")["output"] == changed


def test_a_stored_fanout_replays_to_the_state_it_ran_to(tmp_path):
    db = str(tmp_path / "runs.db")
    live = run(FANOUT, "serial", db)
    assert Engine(db=db).status(live.run_id).to_dict() == live.to_dict()


@pytest.mark.parametrize("db", [None, "file"])
def test_a_node_changing_a_value_it_returned_after_returning_does_not_rewrite_its_record(tmp_path, db):
    workflow = {"nodes": [node("keeper", "keep_returned"), node("later", "change_kept")],
                "connections": [edge("keeper", "later")]}
    result = run(workflow, "serial", str(tmp_path / "runs.db") if db else None)
    assert result.record("later")["output"] == 2  # it did change the list the keeper returned
    assert result.record("keeper")["output"] == ["returned"]


def test_a_node_changing_a_list_param_changes_it_for_no_later_instance():
    workflow = {"nodes": [{"id": "loop", "type": "foreach"}, node("each", "append_to_param", params={"seen": []})],
                "connections": [edge("loop", "each", port="iteration")]}
    result = Engine(runner="serial").run({"name": "params", **workflow}, trigger=["a", "b"])
    assert [result.record("each", [i])["output"] for i in (0, 1)] == [["a"], ["b"]]
