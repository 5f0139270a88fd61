"""The ``loop`` node type through the Engine, the CLI and a crash: iterations as items, ``until``,
``loop_limit``, a hil in a body answered with ``resume``, the WCP-21 example, and a run killed
inside a loop body that resumes without running a finished iteration again."""
import json
import os
import signal
import subprocess
import time

import pytest

import durable_nodes
from adapters import Engine
from durable_nodes import child_env, flowcore
from nodes_for_tests import task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "patterns", "wcp21_structured_loop.yaml")


def counting_loop(max_iterations=10, until="@ >= `3`", body_extra=()):
    return {"name": "count", "nodes": [
        {"id": "count", "type": "loop", "until": until, "max_iterations": max_iterations,
         "body": {"nodes": [task("inc", "add"), *body_extra],
                  "connections": [{"from": "inc", "to": x["id"]} for x in body_extra]}},
        task("after", "double")],
        "connections": [{"from": "count", "to": "after"}]}


def by_instance(result) -> dict:
    return {(r["node"], tuple(r["item"] or ())): r for r in result.to_dict()["nodes"]}


@pytest.mark.parametrize("runner", ["serial", "thread", "asyncio", "process"])
def test_a_loop_runs_its_body_until_the_condition_holds(runner):
    result = Engine().run(counting_loop(), trigger=0, runner=runner)
    records = by_instance(result)
    assert result.status == "succeeded"
    assert records[("count", ())]["output"] == 3 and records[("after", ())]["output"] == 6
    assert [records[("count.inc", (i,))]["output"] for i in range(3)] == [1, 2, 3]
    assert ("count.inc", (3,)) not in records
    assert result.to_dict()["sequence"] == ["count.inc[0]", "count.inc[1]", "count.inc[2]", "count", "after"]


def test_a_loop_that_never_meets_its_condition_fails_with_loop_limit():
    result = Engine().run(counting_loop(max_iterations=2), trigger=0, runner="thread")
    out = result.to_dict()
    assert out["status"] == "failed"
    assert out["error"]["node"] == "count" and out["error"]["type"] == "loop_limit"
    assert len([r for r in out["nodes"] if r["node"] == "count.inc"]) == 2


def test_a_failing_body_fails_the_loop_naming_the_body_node():
    wf = counting_loop(body_extra=[task("check", "fail_on", params={"bad": 2})])
    out = Engine().run(wf, trigger=0, runner="thread").to_dict()
    assert out["status"] == "failed" and out["error"]["node"] == "count"
    assert "count.check[1]" in out["error"]["message"] and "bad input 2" in out["error"]["message"]


def test_a_hil_inside_a_body_waits_and_is_answered_per_iteration(tmp_path):
    wf = {"name": "ask", "nodes": [{"id": "talk", "type": "loop", "until": "done", "max_iterations": 3,
                                    "body": {"nodes": [{"id": "ask", "type": "hil"}]}}]}
    engine = Engine(db=str(tmp_path / "f.db"))
    first = engine.run(wf, run_id="r", runner="thread", linger=0)
    assert first.status == "waiting"
    second = engine.resume("r", node="talk.ask", item=[0], input={"done": False}, linger=0)
    assert second.status == "waiting"
    third = engine.resume("r", node="talk.ask", item=[1], input={"done": True}, linger=0)
    assert third.status == "succeeded" and by_instance(third)[("talk", ())]["output"] == {"done": True}


def test_the_wcp21_example_runs_through_the_cli(tmp_path):
    done = subprocess.run(flowcore("run", EXAMPLE, "--trigger", '{"topic": "refund"}', "--json"), cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    drafts = [r["item"] for r in out["nodes"] if r["node"] == "review.draft"]
    assert out["status"] == "succeeded" and drafts == [[0], [1], [2]]
    publish = next(r for r in out["nodes"] if r["node"] == "publish")
    assert publish["output"] == {"published": "Reply about refund (draft 3, 2 notes applied)", "rounds": 3}
    limited = subprocess.run(flowcore("run", EXAMPLE, "--trigger", '{"topic": "x", "rounds_needed": 9}', "--json"),
                             cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
    assert limited.returncode == 1 and json.loads(limited.stdout)["error"]["type"] == "loop_limit"
    status = subprocess.run(flowcore("status", out["run_id"]), cwd=tmp_path, env=child_env(), capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and "review.check[2]" in status.stdout
    report = subprocess.run(flowcore("report", out["run_id"], "-o", "page.html"), cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "review.draft" in (tmp_path / "page.html").read_text()


def test_validate_names_the_body_node_and_the_body_problems(tmp_path):
    bad = {"name": "bad", "nodes": [{"id": "noop0", "type": "noop"}, {
        "id": "review", "type": "loop", "until": "ok", "max_iterations": 3,
        "body": {"nodes": [{"id": "draft", "type": "python"}, {"id": "b", "type": "noop"}]}}]}
    path = durable_nodes.write_workflow(tmp_path, bad)
    done = subprocess.run(flowcore("validate", path), cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "nodes[1].body.nodes[0] (node 'draft'): missing required field 'call'" in done.stderr
    assert "node 'review': its body must end in exactly one node" in done.stderr


def test_a_run_killed_inside_a_loop_body_resumes_without_repeating_finished_iterations(tmp_path):
    marker = str(tmp_path / "marks.txt")
    wf = {"name": "rounds", "nodes": [{
        "id": "rounds", "type": "loop", "until": "n >= `6`", "max_iterations": 20,
        "body": {"nodes": [{"id": "bump", "type": "python", "call": "loop_nodes:bump",
                            "params": {"marker": marker, "sleep": 0.15}}]}}]}
    durable_nodes.write_workflow(tmp_path, wf)
    db = str(tmp_path / "flowcore.db")
    child = subprocess.Popen(flowcore("run", "wf.yaml", "--run-id", "k", "--trigger", '{"n": 0}'), cwd=tmp_path,
                             env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while durable_nodes.batch_count(db, "k") < 4:  # started, then a few iterations' successes
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    finished = {e["node"] + "".join(f"[{i}]" for i in e["item"])
                for e in durable_nodes.logged_events(db, "k") if e["type"] == "NodeSucceeded"}
    assert finished and "rounds.bump[5]" not in finished  # killed inside the loop
    before = len(durable_nodes.marks(marker))

    done = subprocess.run(flowcore("resume", "k", "--json"), cwd=tmp_path, env=child_env(), capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded" and out["nodes"][0]["output"] == {"n": 6}
    assert [r["item"] for r in out["nodes"] if r["node"] == "rounds.bump"] == [[i] for i in range(6)]
    ran_after = durable_nodes.marks(marker)[before:]
    assert not finished & set(ran_after), f"finished before the kill, ran again: {finished & set(ran_after)}"
    assert sorted(set(durable_nodes.marks(marker))) == [f"rounds.bump[{i}]" for i in range(6)]
