"""The ``subworkflow`` node type: a child run of its own, in the same store, whose end is the node's.

The child's run id is ``PARENT/node`` (``PARENT/node[i]`` per item); the parent's record has
``child_run``, the child's run object has ``parent``. Cancels go both ways: cancelling the parent
run or node cancels the child run; cancelling the child run records the parent's node
``cancelled`` (its edges dead, the run goes on).
"""
import json
import os
import threading
import time

import pytest
import yaml

from adapters import Engine, load_workflow
from adapters.store import UnknownRun
from adapters.workflow_file import WorkflowError

CHILD = {"name": "child", "nodes": [{"id": "add", "type": "python", "call": "subworkflow_nodes:add",
                                     "params": {"plus": 100}}], "connections": []}


def write(folder, name, wf) -> str:
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(wf, f)
    return path


def parent(child="child.yaml", **fields) -> dict:
    return {"name": "parent", "nodes": [{"id": "sub", "type": "subworkflow", "workflow": child, **fields},
                                        {"id": "after", "type": "python", "call": "subworkflow_nodes:passthrough"}],
            "connections": [{"from": "sub", "to": "after"}]}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def engine(request, tmp_path):
    if request.param == "memory":
        return Engine()
    if request.param == "sqlite":
        return Engine(db=str(tmp_path / "flowcore.db"))
    return Engine(db=request.getfixturevalue("postgres_url"))


def test_the_node_gives_the_childs_output_with_params_merged_into_its_input(engine, tmp_path):
    write(tmp_path, "child.yaml", CHILD)
    path = write(tmp_path, "parent.yaml", parent(params={"by": 10}))
    result = engine.run(path, trigger={"n": 1, "by": 2}, run_id="p1")
    assert result.status == "succeeded", result.to_dict()
    record = result.record("sub")
    assert record["output"] == 111  # n 1 + by 10 (params win over the input) + plus 100 (the child's own param)
    assert record["child_run"] == "p1/sub"
    assert result.record("after")["output"] == 111
    child = engine.status("p1/sub").to_dict()
    assert child["status"] == "succeeded" and child["parent"] == {"run_id": "p1", "node": "sub", "item": None}
    assert "parent" not in result.to_dict()  # a run that is no child has none
    listed = {r["run_id"]: r["workflow"] for r in engine.runs()}
    assert listed == {"p1": "parent", "p1/sub": "child"}


def test_a_failed_child_fails_the_node_with_the_childs_error_message(tmp_path):
    write(tmp_path, "child.yaml", {"name": "child", "nodes": [{"id": "no", "type": "python",
                                                               "call": "subworkflow_nodes:boom"}], "connections": []})
    path = write(tmp_path, "parent.yaml", parent())
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    result = engine.run(path, trigger={"n": 7}, run_id="p")
    assert result.status == "failed"
    assert result.record("sub")["error"] == {"type": "subworkflow", "message": "child says no to 7"}
    assert result.error["node"] == "sub"
    assert engine.status("p/sub").status == "failed"
    assert result.record("after")["status"] == "cancelled"


def test_a_child_with_several_sinks_gives_each_sinks_output_by_id(tmp_path):
    write(tmp_path, "child.yaml", {"name": "child", "nodes": [
        {"id": "a", "type": "python", "call": "subworkflow_nodes:tag", "params": {"name": "a"}},
        {"id": "b", "type": "python", "call": "subworkflow_nodes:tag", "params": {"name": "b"}}], "connections": []})
    path = write(tmp_path, "parent.yaml", parent())
    result = Engine().run(path, trigger={"n": 3})
    assert result.record("sub")["output"] == {"a": "a:3", "b": "b:3"}


def test_a_subworkflow_per_item_of_a_fan_out_makes_one_child_each(tmp_path):
    write(tmp_path, "child.yaml", CHILD)
    path = write(tmp_path, "parent.yaml", {"name": "parent", "nodes": [
        {"id": "each", "type": "foreach"}, {"id": "sub", "type": "subworkflow", "workflow": "child.yaml"}],
        "connections": [{"from": "each", "to": "sub", "port": "iteration"}]})
    engine = Engine()
    result = engine.run(path, trigger=[{"n": 1}, {"n": 2}], run_id="fan")
    assert [(r["item"], r["output"], r["child_run"]) for r in result.to_dict()["nodes"] if r["node"] == "sub"] == [
        ([0], 101, "fan/sub[0]"), ([1], 102, "fan/sub[1]")]
    assert engine.status("fan/sub[1]").to_dict()["parent"] == {"run_id": "fan", "node": "sub", "item": [1]}


def test_an_input_that_is_no_mapping_fails_the_node_and_makes_no_child(tmp_path):
    write(tmp_path, "child.yaml", CHILD)
    engine = Engine()
    result = engine.run(write(tmp_path, "parent.yaml", parent()), trigger=[1, 2], run_id="p")
    assert result.record("sub")["error"]["type"] == "subworkflow_input"
    assert "needs a mapping" in result.record("sub")["error"]["message"]
    assert result.record("sub")["child_run"] is None
    assert [r["run_id"] for r in engine.runs()] == ["p"]


RECURSE = {"name": "recurse", "nodes": [{"id": "down", "type": "python", "call": "subworkflow_nodes:countdown"},
                                        {"id": "again", "type": "subworkflow", "workflow": "recurse.yaml",
                                         "max_depth": 3}],
           "connections": [{"from": "down", "to": "again"}]}


def test_a_recursion_deeper_than_max_depth_fails_the_deepest_node_with_max_depth(tmp_path):
    path = write(tmp_path, "recurse.yaml", RECURSE)  # it never stops: nothing checks the counter
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    result = engine.run(path, trigger={"n": 100}, run_id="r")
    assert result.status == "failed"
    ids = sorted(r["run_id"] for r in engine.runs())
    assert ids == ["r", "r/again", "r/again/again", "r/again/again/again"]  # depths 0 to 3
    deepest = engine.status("r/again/again/again").record("again")
    assert deepest["error"]["type"] == "max_depth" and "max_depth of 3" in deepest["error"]["message"]
    assert deepest["child_run"] is None
    top = result.record("again")
    assert top["error"]["type"] == "subworkflow" and "max_depth of 3" in top["error"]["message"]


def test_the_child_workflow_is_checked_with_its_parent(tmp_path):
    path = write(tmp_path, "parent.yaml", parent("missing.yaml"))
    with pytest.raises(WorkflowError) as missing:
        load_workflow(path)
    assert "node 'sub'" in str(missing.value) and "missing.yaml" in str(missing.value)
    assert str(tmp_path) in str(missing.value)  # where it looked
    write(tmp_path, "broken.yaml", {"name": "broken", "nodes": [{"id": "x", "type": "nope"}], "connections": []})
    with pytest.raises(WorkflowError) as broken:
        load_workflow(write(tmp_path, "parent2.yaml", parent("broken.yaml")))
    text = str(broken.value)
    assert "node 'sub'" in text and "broken.yaml" in text and "nope" in text
    with pytest.raises(WorkflowError, match="max_depth must be a positive whole number"):
        load_workflow(write(tmp_path, "parent3.yaml", parent("parent3.yaml", max_depth=0)))


def test_a_child_run_past_the_nodes_timeout_is_cancelled_and_the_node_fails_with_timeout(engine, tmp_path):
    write(tmp_path, "child.yaml", BLOCKED)
    started = time.monotonic()
    result = engine.run(write(tmp_path, "parent.yaml", parent(timeout=0.3)), trigger={"n": 1}, run_id="p")
    assert time.monotonic() - started < 10  # not the child's own time: it would block until cancelled
    assert result.status == "failed"
    sub = result.record("sub")
    assert sub["status"] == "failed" and sub["error"]["type"] == "timeout" and "0.3 s" in sub["error"]["message"]
    assert result.record("after")["status"] == "cancelled"
    _wait_for(lambda: _status(engine, "p/sub") == "cancelled")
    assert "timeout of 0.3 s" in engine.status("p/sub").error["message"]


def test_retry_on_a_subworkflow_and_fields_that_would_do_nothing_are_refused_all_at_once(tmp_path):
    write(tmp_path, "child.yaml", CHILD)
    wf = parent(retry={"max_attempts": 2})
    wf["nodes"] += [{"id": "pause", "type": "delay", "seconds": 1, "timeout": 5},
                    {"id": "ask", "type": "wait", "retry": {"max_attempts": 3}}]
    with pytest.raises(WorkflowError) as refused:
        load_workflow(write(tmp_path, "parent.yaml", wf))
    text = str(refused.value)
    assert "3 problems" in text
    assert "node 'sub': retry does nothing on a subworkflow node" in text and "child workflow's nodes" in text
    assert "node 'pause': timeout does nothing on a delay node" in text
    assert "node 'ask': retry does nothing on a wait node" in text


def test_a_workflow_given_as_a_dict_reads_its_child_from_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, "child.yaml", CHILD)
    monkeypatch.chdir(tmp_path)
    result = Engine().run(parent(), trigger={"n": 1})
    assert result.record("sub")["output"] == 101


def test_a_recursive_workflow_loads_itself_once(tmp_path):
    load_workflow(write(tmp_path, "recurse.yaml", RECURSE))  # no endless check of itself


def _status(engine, run_id):
    """A run's stored status, or None while it is not stored yet."""
    try:
        return engine.store.info(run_id).status
    except UnknownRun:
        return None


def _wait_for(predicate, seconds=20.0):
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


BLOCKED = {"name": "blocked", "nodes": [{"id": "hold", "type": "python", "call": "subworkflow_nodes:wait_until_cancelled"}],
           "connections": []}


def _run_in_thread(engine, path, run_id, **kw):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", engine.run(path, trigger={"n": 1},
                                                                                 run_id=run_id, **kw)))
    thread.start()
    return thread, out


def test_cancelling_the_parent_run_cancels_the_child_run(tmp_path):
    write(tmp_path, "child.yaml", BLOCKED)
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    thread, out = _run_in_thread(engine, write(tmp_path, "parent.yaml", parent()), "p")
    _wait_for(lambda: _status(engine, "p/sub") == "running" and
              engine.status("p/sub").to_dict()["nodes"][0]["status"] == "running")
    Engine(db=str(tmp_path / "flowcore.db")).cancel("p", reason="stop all")
    thread.join(20)
    assert out["result"].status == "cancelled"
    _wait_for(lambda: _status(engine, "p/sub") == "cancelled")
    assert engine.status("p/sub").error == {"node": None, "type": "cancelled", "message": "run cancelled"}


def test_cancelling_the_parent_node_cancels_the_child_run_and_the_parent_goes_on(tmp_path):
    write(tmp_path, "child.yaml", BLOCKED)
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    path = write(tmp_path, "parent.yaml", {**parent(), "nodes": parent()["nodes"] + [
        {"id": "other", "type": "python", "call": "subworkflow_nodes:passthrough"}]})
    thread, out = _run_in_thread(engine, path, "p")
    _wait_for(lambda: _status(engine, "p/sub") == "running")
    Engine(db=str(tmp_path / "flowcore.db")).cancel("p", node="sub", reason="not needed")
    thread.join(20)
    result = out["result"]
    assert result.status == "succeeded"
    assert result.record("sub")["status"] == "cancelled" and result.record("after")["status"] == "skipped"
    _wait_for(lambda: _status(engine, "p/sub") == "cancelled")
    assert engine.status("p/sub").error["message"] == "not needed"


def test_cancelling_the_child_run_records_the_parent_node_cancelled(tmp_path):
    write(tmp_path, "child.yaml", BLOCKED)
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    thread, out = _run_in_thread(engine, write(tmp_path, "parent.yaml", parent()), "p")
    _wait_for(lambda: _status(engine, "p/sub") == "running")
    Engine(db=str(tmp_path / "flowcore.db")).cancel("p/sub", reason="child stopped")
    thread.join(20)
    result = out["result"]
    assert result.record("sub")["status"] == "cancelled"
    assert result.record("sub")["error"] == {"type": "cancelled", "message": "child stopped"}
    assert result.record("after")["status"] == "skipped"
    assert result.status == "succeeded"  # a cancel by request is no failure


APPROVE = {"name": "approve", "nodes": [{"id": "ask", "type": "hil", "prompt": "ok?"}], "connections": []}


def test_a_child_that_waits_leaves_the_parent_waiting_until_the_child_is_answered(tmp_path):
    write(tmp_path, "child.yaml", APPROVE)
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    result = engine.run(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    assert result.status == "waiting" and engine.status("p/sub").status == "waiting"
    assert result.record("sub")["status"] == "waiting"
    child = Engine(db=str(tmp_path / "flowcore.db")).resume("p/sub", node="ask", input={"yes": True})
    assert child.status == "succeeded"
    final = engine.status("p")  # the child's end reached the parent, which was driven on
    assert final.status == "succeeded", final.to_dict()
    assert final.record("after")["output"] == {"yes": True}
    # the parent's table counts the time its node waited for the child as a wait, not as work done
    from rich.console import Console

    from adapters.report import render_table

    console = Console(record=True, width=120)
    render_table("p", final.state, console)
    assert "waits (sub) included" in console.export_text()


def test_cancelling_a_waiting_parent_cancels_its_waiting_child(tmp_path):
    write(tmp_path, "child.yaml", APPROVE)
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    engine.run(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    engine.cancel("p")
    assert engine.status("p").status == "cancelled"
    assert engine.status("p/sub").status == "cancelled"


def test_a_resumed_parent_reads_the_end_of_a_child_that_finished_while_nobody_told_it(tmp_path, monkeypatch):
    """As after a crash between the child's last step and the parent's: ``Resumed`` asks for the
    child again, and the child found ended in the store is reported, not run a second time."""
    write(tmp_path, "child.yaml", APPROVE)
    db = str(tmp_path / "flowcore.db")
    Engine(db=db).run(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    monkeypatch.setattr(Engine, "_tell_parent", lambda self, parent, state, apply_only: None)
    assert Engine(db=db).resume("p/sub", node="ask", input="done").status == "succeeded"
    assert Engine(db=db).status("p").status == "waiting"  # nobody told it
    monkeypatch.undo()
    result = Engine(db=db).resume("p")
    assert result.status == "succeeded" and result.record("after")["output"] == "done"
    assert sorted(r["run_id"] for r in Engine(db=db).runs()) == ["p", "p/sub"]


def test_a_child_asked_for_by_a_cancel_that_only_applies_is_started_by_the_next_driver(tmp_path):
    """``cancel --node`` of a waiting branch lets a join run: a subworkflow it feeds asks for its
    child in a drive that starts nothing; the run is left for a driver (a worker), which starts it."""
    write(tmp_path, "child.yaml", CHILD)
    path = write(tmp_path, "parent.yaml", {"name": "parent", "nodes": [
        {"id": "a", "type": "python", "call": "subworkflow_nodes:passthrough"},
        {"id": "ask", "type": "hil"},
        {"id": "sub", "type": "subworkflow", "workflow": "child.yaml"}],
        "connections": [{"from": "a", "to": "sub"}, {"from": "ask", "to": "sub"}]})
    db = str(tmp_path / "flowcore.db")
    assert Engine(db=db).run(path, trigger={"n": 1}, run_id="p").status == "waiting"
    Engine(db=db).cancel("p", node="ask")
    assert Engine(db=db).store.info("p").status == "running"  # not "waiting": it needs a driver
    from adapters.worker import Worker

    Worker(Engine(db=db)).run_once()
    result = Engine(db=db).status("p")
    assert result.status == "succeeded" and result.record("sub")["output"] == 101


def test_a_run_that_took_the_childs_id_is_not_taken_for_the_child(tmp_path):
    write(tmp_path, "child.yaml", CHILD)
    engine = Engine()
    engine.run(write(tmp_path, "other.yaml", {**CHILD, "name": "other"}), trigger={"n": 0}, run_id="p/sub")
    result = engine.run(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    assert result.record("sub")["status"] == "failed"
    assert "is no child of this instance" in result.record("sub")["error"]["message"]


def test_the_web_api_serves_a_child_run_and_its_parents_child_run_field(tmp_path):
    from fastapi.testclient import TestClient

    from adapters.web.app import Server, create_app

    write(tmp_path, "child.yaml", CHILD)
    engine = Engine(db=str(tmp_path / "flowcore.db"))
    engine.run(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    client = TestClient(create_app(Server(engine)), base_url="http://127.0.0.1")
    child = client.get("/api/runs/p/sub")
    assert child.status_code == 200 and child.json()["parent"] == {"run_id": "p", "node": "sub", "item": None}
    assert client.get("/runs/p/sub").status_code == 200
    nodes = client.get("/api/runs/p").json()["nodes"]
    assert [n.get("child_run") for n in nodes] == ["p/sub", None]
    # the pages' data: the child's run names its parent, and the parent's timeline shows the wait for it
    assert client.get("/api/runs/p/sub/view").json()["run"] == child.json()
    waits = [b for b in client.get("/api/runs/p/view").json()["attempts"] if b["kind"] == "wait"]
    assert [(b["name"], b["waits_for"], b["status"]) for b in waits] == [("sub", "its child run", "succeeded")]


def test_cancelling_the_node_of_a_waiting_parent_cancels_its_waiting_child_and_the_run_goes_on(tmp_path):
    write(tmp_path, "child.yaml", APPROVE)
    db = str(tmp_path / "flowcore.db")
    Engine(db=db).run(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    Engine(db=db).cancel("p", node="sub", reason="enough")
    child = Engine(db=db).status("p/sub")
    assert child.status == "cancelled" and child.error["message"] == "enough"
    result = Engine(db=db).status("p")
    assert result.status == "succeeded"  # nothing else was left: the cancel ended it (a cancel is no failure)
    assert result.record("sub")["status"] == "cancelled" and result.record("after")["status"] == "skipped"


def test_a_worker_told_to_stop_starts_nothing_new_in_a_child_and_the_parent_is_carried_on(tmp_path):
    from adapters.worker import Worker

    marker = str(tmp_path / "starts")
    step = {"type": "python", "call": "subworkflow_nodes:slow_mark", "params": {"marker": marker, "seconds": 0.3}}
    write(tmp_path, "child.yaml", {"name": "child", "nodes": [{"id": "one", **step}, {"id": "two", **step}],
                                   "connections": [{"from": "one", "to": "two"}]})
    db = str(tmp_path / "flowcore.db")
    Engine(db=db).submit(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    worker = Worker(Engine(db=db), grace=0.5)
    stopper = threading.Thread(target=lambda: (wait_for_file(marker), worker.stop()))
    stopper.start()
    worker.run_forever()  # until stopped while the child's first node runs
    stopper.join()
    assert Engine(db=db).status("p/sub").record("two")["status"] == "pending"  # nothing new started after stop
    Worker(Engine(db=db)).run_once()  # another worker carries the child, and then its parent, on
    result = Engine(db=db).status("p")
    assert result.status == "succeeded" and result.record("sub")["status"] == "succeeded"
    assert open(marker).read().count("start") == 2


def test_a_child_that_ends_after_its_parents_drive_stopped_listening_is_not_lost(tmp_path, monkeypatch):
    from adapters.children import ChildRuns
    from adapters.worker import Worker

    marker = str(tmp_path / "starts")
    write(tmp_path, "child.yaml", {"name": "child", "nodes": [
        {"id": "one", "type": "python", "call": "subworkflow_nodes:slow_mark",
         "params": {"marker": marker, "seconds": 0.5}}], "connections": []})
    db = str(tmp_path / "flowcore.db")
    Engine(db=db).submit(write(tmp_path, "parent.yaml", parent()), trigger={"n": 1}, run_id="p")
    # the child is told to stop only once the parent's drive gives up waiting for it (grace 0.3 s);
    # its node ends within its own grace after that, and the child with it, when no one listens
    monkeypatch.setattr(ChildRuns, "drain", lambda self: None)
    worker = Worker(Engine(db=db), grace=0.3)
    stopper = threading.Thread(target=lambda: (wait_for_file(marker), worker.stop()))
    stopper.start()
    worker.run_forever()
    stopper.join()
    assert Engine(db=db).status("p/sub").status == "succeeded"
    assert Worker(Engine(db=db)).run_once() == 1  # the child's end is in its parent's inbox: a worker applies it
    result = Engine(db=db).status("p")
    assert result.status == "succeeded" and result.record("sub")["output"] == {"n": 1}


def wait_for_file(path: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("runner", ["serial", "thread", "asyncio", "simulated"])
def test_every_runner_drives_the_recursion_example_to_the_same_end(runner):
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "patterns",
                           "wcp22_recursion.yaml")
    engine = Engine(runner=runner)
    result = engine.run(example, trigger={"n": 3}, run_id="r")
    assert result.record("done")["output"] == {"n": 0, "visited": [3, 2, 1]}
    assert len(engine.runs()) == 4
