"""Durability of the control flow beyond "wait for all": a run killed after a join fired, while
its ``cancel_rest`` victims were being cancelled, around a gather quorum, a ``cancel`` list or an
``end``, resumes to the records of a run that was never killed, and nothing whose completion was
logged runs again."""
import json
import signal
import subprocess
import time

import durable_nodes
from adapters import Engine
from durable_nodes import child_env, finished_before, flowcore, kill_at_every_step


def control_flow_workflow(marker: str) -> dict:
    """begin -> a per-item fan-out gathered at_least 2 (cancel_rest) -> quorum; begin -> a and
    b -> b2; pick takes the first of quorum, a, b2 (join any, cancel_rest) and cancels the parked
    pause; then an end."""
    def py(node_id, fn="passed_on", **fields):
        return {"id": node_id, "type": "python", "call": f"durable_nodes:{fn}",
                "params": {"marker": marker, "sleep": 0.01}, **fields}
    return {
        "name": "control",
        "settings": {"max_parallel": 2},
        "nodes": [py("begin"), {"id": "fan", "type": "foreach"}, py("work", "tenfold"), py("quorum", "total"),
                  py("a"), py("b"), py("b2"), {"id": "pause", "type": "delay", "seconds": 30},
                  {"id": "pick", "type": "noop", "join": "any", "cancel_rest": True, "cancel": ["pause"]},
                  {"id": "finish", "type": "end"}, {"id": "never", "type": "noop"}],
        "connections": [{"from": "begin", "to": "fan"}, {"from": "fan", "to": "work", "port": "iteration"},
                        {"from": "work", "to": "quorum", "at_least": 2, "cancel_rest": True},
                        {"from": "begin", "to": "a"}, {"from": "begin", "to": "b"}, {"from": "b", "to": "b2"},
                        {"from": "quorum", "to": "pick"}, {"from": "a", "to": "pick"}, {"from": "b2", "to": "pick"},
                        {"from": "begin", "to": "pause"}, {"from": "pause", "to": "never"},
                        {"from": "pick", "to": "finish"}],
    }


def test_a_run_killed_at_every_step_around_joins_and_cancels_recovers_to_the_reference_records(tmp_path):
    marker = str(tmp_path / "marks.txt")
    path = durable_nodes.write_workflow(tmp_path, control_flow_workflow(marker))
    db = str(tmp_path / "flowcore.db")
    trigger = [1, 2, 3, 4]
    reference = Engine(runner="serial", db=db).run(path, trigger=trigger, run_id="whole").to_dict()
    assert reference["status"] == "succeeded"
    by_node = {r["node"]: r["status"] for r in reference["nodes"] if r["item"] is None}
    assert by_node["pick"] == "succeeded" and by_node["pause"] == "cancelled" and by_node["finish"] == "succeeded"
    assert "cancelled" in {r["status"] for r in reference["nodes"] if r["node"] in ("work", "b", "b2", "quorum")}
    steps = durable_nodes.batch_count(db, "whole")
    resumed = kill_at_every_step(tmp_path, path, db, trigger, "serial", marker, reference)
    assert resumed >= steps - 1, f"only {resumed} of {2 * steps} kill points left the run to resume"


def test_a_thread_run_killed_right_after_its_join_fired_resumes_with_the_losers_cancelled(tmp_path):
    """The step that logs the winner's result also decides the losers' cancels: killed once it is
    committed (the cancels perhaps not carried out), the resumed run does not start them again."""
    marker = str(tmp_path / "marks.txt")

    def py(node_id, sleep):
        return {"id": node_id, "type": "python", "call": "durable_nodes:passed_on",
                "params": {"marker": marker, "sleep": sleep}}
    first = {**py("first", 2), "join": "any", "cancel_rest": True}  # slow: the run cannot end before the kill
    definition = {"name": "race", "nodes": [py("fast", 0.2), py("slow1", 3), py("slow2", 3), first],
                  "connections": [{"from": s, "to": "first"} for s in ("fast", "slow1", "slow2")]}
    durable_nodes.write_workflow(tmp_path, definition)
    db = str(tmp_path / "flowcore.db")
    child = subprocess.Popen(flowcore("run", "wf.yaml", "--run-id", "r", "--runner", "thread"), cwd=tmp_path,
                             env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not any(e["type"] == "NodeSucceeded" and e["node"] == "fast"
                  for e in (durable_nodes.logged_events(db, "r") if durable_nodes.batch_count(db, "r") else [])):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read().decode()
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    marks_before = durable_nodes.marks(marker)
    done = subprocess.run(flowcore("resume", "r", "--json"), cwd=tmp_path, env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    records = {r["node"]: r for r in result["nodes"]}
    assert result["status"] == "succeeded" and records["first"]["status"] == "succeeded"
    assert records["slow1"]["status"] == records["slow2"]["status"] == "cancelled"
    assert "fast" in marks_before and {"slow1", "slow2"} <= set(marks_before)
    again = durable_nodes.marks(marker)[len(marks_before):]
    assert set(again) <= {"first"}, f"{again} ran again: only the join, in flight at the kill, may"
    assert time.monotonic() < deadline
