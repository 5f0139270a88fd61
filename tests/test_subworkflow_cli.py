"""``subworkflow`` nodes through the command line, in real processes: the WCP-22 recursion example,
``submit`` and ``worker``, a child that waits for an answer, and a parent killed (SIGKILL) while its
child runs, resumed without a second child run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from durable_nodes import child_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "patterns" / "wcp22_recursion.yaml"


def flowcore(*args, cwd, check_json=False):
    done = subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    return done


def as_json(done) -> dict:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def write(folder, name, wf) -> str:
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(wf, f)
    return path


def test_the_wcp22_recursion_example_counts_down_through_child_runs(tmp_path):
    done = flowcore("run", str(EXAMPLE), "--trigger", '{"n": 3}', "--run-id", "r", "--db", "s.db", "--json",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = as_json(done)
    records = {r["node"]: r for r in result["nodes"]}
    assert records["done"]["output"] == {"n": 0, "visited": [3, 2, 1]}
    assert records["again"]["child_run"] == "r/again"
    runs = as_json(flowcore("runs", "--db", "s.db", "--json", cwd=tmp_path))
    assert [(r["run_id"], r["workflow"], r["status"]) for r in runs] == [
        (run_id, "wcp22_recursion", "succeeded") for run_id in ("r", "r/again", "r/again/again", "r/again/again/again")]
    deepest = as_json(flowcore("status", "r/again/again/again", "--db", "s.db", "--json", cwd=tmp_path))
    assert deepest["parent"] == {"run_id": "r/again/again", "node": "again", "item": None}
    assert {r["node"]: r["status"] for r in deepest["nodes"]}["bottom"] == "succeeded"
    report = flowcore("report", "r/again", "--db", "s.db", cwd=tmp_path)  # a child's page, named without its slash
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r_again.html").exists()


def test_the_wcp22_recursion_example_runs_on_the_dask_runner_and_says_nothing_on_stderr(tmp_path):
    """Each child run starts an in-process cluster of its own beside its parent's: none of them may
    fight over dask's port 8787 (a warning per child), nor log its own shutdown as CRITICAL."""
    done = flowcore("run", str(EXAMPLE), "--trigger", '{"n": 3}', "--run-id", "r", "--runner", "dask", "--json",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    records = {r["node"]: r for r in as_json(done)["nodes"]}
    assert records["done"]["output"] == {"n": 0, "visited": [3, 2, 1]}
    assert records["again"]["child_run"] == "r/again"


def test_the_wcp22_recursion_example_stops_at_max_depth(tmp_path):
    done = flowcore("run", str(EXAMPLE), "--trigger", '{"n": 11}', "--run-id", "r", "--db", "s.db", "--json",
                    cwd=tmp_path)
    assert done.returncode == 1
    runs = as_json(flowcore("runs", "--db", "s.db", "--json", cwd=tmp_path))
    assert len(runs) == 11  # depths 0 to 10
    deepest = as_json(flowcore("status", runs[-1]["run_id"], "--db", "s.db", "--json", cwd=tmp_path))
    assert {r["node"]: r["error"] for r in deepest["nodes"]}["again"]["type"] == "max_depth"


CHILD = {"name": "child", "nodes": [{"id": "add", "type": "python", "call": "subworkflow_nodes:add"}],
         "connections": []}
ASKING = {"name": "asking", "nodes": [{"id": "ask", "type": "hil", "prompt": "go on?"}], "connections": []}


def parent(child="child.yaml") -> dict:
    return {"name": "parent", "nodes": [{"id": "sub", "type": "subworkflow", "workflow": child, "params": {"by": 1}},
                                        {"id": "after", "type": "python", "call": "subworkflow_nodes:passthrough"}],
            "connections": [{"from": "sub", "to": "after"}]}


def test_a_submitted_run_and_its_child_are_driven_by_a_worker(tmp_path):
    write(tmp_path, "child.yaml", CHILD)
    write(tmp_path, "parent.yaml", parent())
    assert flowcore("submit", "parent.yaml", "--trigger", '{"n": 1}', "--run-id", "w", "--db", "s.db",
                    cwd=tmp_path).returncode == 0
    done = flowcore("worker", "--once", "--db", "s.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = as_json(flowcore("status", "w", "--db", "s.db", "--json", cwd=tmp_path))
    assert result["status"] == "succeeded"
    assert {r["node"]: r["output"] for r in result["nodes"]}["after"] == 2
    assert as_json(flowcore("status", "w/sub", "--db", "s.db", "--json", cwd=tmp_path))["status"] == "succeeded"


def test_answering_a_waiting_child_lets_its_parent_finish(tmp_path):
    write(tmp_path, "asking.yaml", ASKING)
    write(tmp_path, "parent.yaml", parent("asking.yaml"))
    done = flowcore("run", "parent.yaml", "--trigger", '{"n": 1}', "--run-id", "p", "--db", "s.db", cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # waiting: its child waits for an answer
    assert "sub waits for its child run p/sub" in done.stderr
    status = flowcore("status", "p", "--db", "s.db", cwd=tmp_path).stdout
    assert "awaits its child run p/sub" in status
    answered = flowcore("resume", "p/sub", "--node", "ask", "--input", '"yes"', "--db", "s.db", cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    result = as_json(flowcore("status", "p", "--db", "s.db", "--json", cwd=tmp_path))
    assert result["status"] == "succeeded"
    assert {r["node"]: r["output"] for r in result["nodes"]}["after"] == "yes"


def _wait_for_lines(path, count, child, seconds=30.0):
    end = time.monotonic() + seconds
    while not (os.path.exists(path) and len(open(path).read().splitlines()) >= count):
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < end, "the child run's node never started"
        time.sleep(0.01)


def test_a_parent_killed_while_its_child_runs_resumes_without_a_second_child_run(tmp_path):
    marker = str(tmp_path / "marker.txt")
    write(tmp_path, "slow.yaml", {"name": "slow", "nodes": [
        {"id": "work", "type": "python", "call": "subworkflow_nodes:slow_mark",
         "params": {"marker": marker, "seconds": 1.0}}], "connections": []})
    write(tmp_path, "parent.yaml", parent("slow.yaml"))
    run = subprocess.Popen([sys.executable, "-m", "adapters.cli", "run", "parent.yaml", "--trigger", '{"n": 5}',
                            "--run-id", "k", "--db", "s.db"], cwd=tmp_path, env=child_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_lines(marker, 1, run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    run.stderr.close()
    done = flowcore("resume", "k", "--db", "s.db", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = as_json(done)
    assert {r["node"]: r["output"] for r in result["nodes"]}["after"] == {"n": 5, "by": 1}
    runs = as_json(flowcore("runs", "--db", "s.db", "--json", cwd=tmp_path))
    assert sorted(r["run_id"] for r in runs) == ["k", "k/sub"]  # the child was found again, not made twice
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    starts = open(marker).read().splitlines()
    assert 1 <= len(starts) <= 2  # the attempt in flight at the kill ran again (at least once), nothing more
