"""The dask runner on a real cluster: a ``dask scheduler`` and two ``dask worker`` processes.

The cluster (``dask_cluster``, started once per session) runs node code from ``cluster_nodes``,
which reaches the workers through their ``PYTHONPATH``; the scheduler has no test module on its
path. Node code reports through its results and through trace files, as it runs in other
processes. Bounds on time are generous: the point is "confirmed before the grace period ran out",
"did not hang", never how fast.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters import Engine, Worker
from adapters.workflow_file import WorkflowError, load_workflow
from dask_cluster import TESTS, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def node(node_id: str, fn: str, **fields) -> dict:
    return {"id": node_id, "type": "python", "call": f"cluster_nodes:{fn}", **fields}


def fan_out(step: dict) -> dict:
    return {"nodes": [{"id": "each", "type": "foreach"}, step],
            "connections": [{"from": "each", "to": step["id"], "port": "iteration"}]}


def on_cluster(cluster, **options) -> Engine:
    return Engine(runner="dask", dask_address=cluster.address, **options)


def lines(path) -> list[str]:
    return Path(path).read_text().splitlines() if os.path.exists(path) else []


def wait_for(condition, seconds: float = 20.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {seconds} s")


# -- node code reaches the workers ---------------------------------------------------------------

def test_node_code_runs_in_the_worker_processes_spread_over_both_workers(dask_cluster):
    dask_cluster.wait_for_workers()  # (a worker killed by an earlier test comes back through its nanny)
    pids = dask_cluster.worker_pids()
    result = on_cluster(dask_cluster).run(fan_out(node("where", "whereami", params={"seconds": 0.2})),
                                          trigger=list(range(8)))
    assert result.status == "succeeded", result.error
    ran_in = [r["output"]["pid"] for r in result.to_dict()["nodes"] if r["node"] == "where"]
    assert len(ran_in) == 8 and os.getpid() not in ran_in
    assert set(ran_in) == set(pids.values())  # both workers, and nothing but the workers


def test_a_module_beside_the_workflow_is_found_by_workers_that_see_the_same_folder(dask_cluster, tmp_path):
    (tmp_path / "beside_the_workflow.py").write_text("import os\n\ndef pid(value):\n    return os.getpid()\n")
    (tmp_path / "wf.yaml").write_text("nodes: [{id: where, type: python, call: 'beside_the_workflow:pid'}]\n")
    result = on_cluster(dask_cluster).run(str(tmp_path / "wf.yaml"))
    assert result.status == "succeeded", result.error
    assert result.record("where")["output"] in dask_cluster.worker_pids().values()  # (not on their PYTHONPATH)


def test_a_node_module_the_workers_cannot_import_fails_the_attempt_saying_so(dask_cluster, tmp_path):
    (tmp_path / "gone_by_then.py").write_text("def hello(value):\n    return 'hello'\n")
    (tmp_path / "wf.yaml").write_text("nodes: [{id: greet, type: python, call: 'gone_by_then:hello'}]\n")
    workflow = load_workflow(str(tmp_path / "wf.yaml"))  # imports the module in this process
    (tmp_path / "gone_by_then.py").unlink()  # and then no worker can import it
    result = on_cluster(dask_cluster).run(workflow)
    error = result.record("greet")["error"]
    assert result.status == "failed"
    assert error["type"] == "NodeCodeUnavailable"
    assert "cannot load this node's code" in error["message"] and "gone_by_then" in error["message"]


# -- cancellation, confirmed truthfully ----------------------------------------------------------

def test_a_cooperative_attempt_cancelled_on_a_worker_is_confirmed_as_soon_as_it_ended(dask_cluster, tmp_path):
    trace = str(tmp_path / "trace")
    slow = node("slow", "patient", params={"path": trace}, timeout=0.5, retry={"max_attempts": 2})
    started = time.monotonic()
    result = on_cluster(dask_cluster, grace=30).run({"nodes": [slow]})
    took = time.monotonic() - started
    record = result.record("slow")
    assert record["attempts"] == 2 and record["error"]["type"] == "timeout"
    assert lines(trace) == ["start slow 1", "cancelled slow 1", "start slow 2", "cancelled slow 2"]
    assert result.abandoned == 0
    assert took < 15  # confirmed when the attempts ended, not after the 30 s grace period


def test_an_attempt_ignoring_its_cancel_is_abandoned_after_the_grace_period_and_the_retry_goes_on(
        dask_cluster, tmp_path):
    trace = str(tmp_path / "trace")
    stuck = node("stuck", "stubborn", params={"path": trace, "seconds": 4}, timeout=0.3, retry={"max_attempts": 2})
    result = on_cluster(dask_cluster, grace=1.0).run({"nodes": [stuck]})
    assert result.record("stuck")["attempts"] == 2 and result.abandoned == 2
    assert not any(line.startswith("end") for line in lines(trace))  # both were still running when given up
    started = {int(attempt): float(at) for what, attempt, at in map(str.split, lines(trace)) if what == "start"}
    assert started[2] - started[1] >= 0.3 + 1.0 - 0.1  # the timeout, then the grace period
    assert started[2] - started[1] < 3.5  # not held up until the stubborn attempt returned (4 s)
    wait_for(lambda: "end 2" in " ".join(lines(trace)), what="the abandoned attempts ending")  # (threads free again)


def test_attempts_cancelled_before_they_started_on_their_worker_never_start(dask_cluster, tmp_path):
    trace = str(tmp_path / "trace")
    workflow = {  # 8 patient items and a node that fails at once; 4 worker threads in all
        "nodes": [{"id": "each", "type": "foreach"}, node("wait", "patient", params={"path": trace}),
                  {"id": "broken", "type": "python", "call": "nodes_for_tests:fail_after",
                   "params": {"seconds": 0.5}}],
        "connections": [{"from": "each", "to": "wait", "port": "iteration"}],
    }
    result = on_cluster(dask_cluster, max_parallel=16, grace=30).run(workflow, trigger=list(range(8)))
    assert result.status == "failed" and result.error["node"] == "broken"
    assert result.abandoned == 0
    assert {r["status"] for r in result.to_dict()["nodes"] if r["node"] == "wait"} == {"cancelled"}
    time.sleep(1.0)  # an item that was to start late would have started by now
    started = [line for line in lines(trace) if line.startswith("start")]
    cancelled = [line for line in lines(trace) if line.startswith("cancelled")]
    assert 0 < len(started) < 8  # some ran (and saw the cancel), the rest never began
    assert sorted(cancelled) == sorted(line.replace("start", "cancelled") for line in started)


# -- a worker that dies -----------------------------------------------------------------------------

def test_a_worker_killed_mid_attempt_fails_that_attempt_and_the_retry_runs_it_once_more(dask_cluster, tmp_path):
    dask_cluster.wait_for_workers()
    trace = str(tmp_path / "trace")
    hangs = node("hangs", "hangs_on_first_attempt", params={"path": trace}, retry={"max_attempts": 2})
    outcome, failures = {}, []

    def note_failures(events, commands, state):
        failures.extend(e for e in events if type(e).__name__ == "NodeFailed")
    driver = threading.Thread(target=lambda: outcome.update(
        result=on_cluster(dask_cluster).run({"nodes": [hangs]}, observer=note_failures)))
    driver.start()
    first = wait_for(lambda: lines(trace), what="the first attempt starting")
    attempt, pid = first[0].split()
    assert attempt == "1" and int(pid) in dask_cluster.worker_pids().values()
    os.kill(int(pid), signal.SIGKILL)
    driver.join(30)
    assert not driver.is_alive(), "the run hangs after its worker was killed"
    record = outcome["result"].record("hangs")
    assert record["status"] == "succeeded" and record["attempts"] == 2
    assert [(f.attempt, f.error_type) for f in failures] == [(1, "WorkerLost")]
    assert record["output"] != int(pid)
    time.sleep(0.5)
    assert [line.split()[0] for line in lines(trace)] == ["1", "2"]  # distributed did not run attempt 1 again


# -- how the address is given ------------------------------------------------------------------------

def test_a_run_resumed_later_goes_on_on_its_own_cluster(dask_cluster, tmp_path):
    db = str(tmp_path / "flowcore.db")
    workflow = {"nodes": [{"id": "ask", "type": "hil"}, node("after", "whereami")],
                "connections": [{"from": "ask", "to": "after"}]}
    first = on_cluster(dask_cluster, db=db).run(workflow)
    assert first.status == "waiting"
    result = Engine(db=db).resume(first.run_id, node="ask", input=7)  # no runner, no address: the run's own
    assert result.status == "succeeded", result.error
    assert result.record("after")["output"]["pid"] in dask_cluster.worker_pids().values()


def test_a_worker_given_an_address_drives_dask_runs_on_that_cluster(dask_cluster, tmp_path):
    db = str(tmp_path / "flowcore.db")
    run_id = Engine(db=db).submit({"settings": {"runner": "dask"}, "nodes": [node("where", "whereami")]})
    worker = Worker(Engine(db=db), dask_address=dask_cluster.address)
    assert worker.run_once() == 1
    assert worker.results[0].record("where")["output"]["pid"] in dask_cluster.worker_pids().values()
    assert Engine(db=db).status(run_id).status == "succeeded"


def flowcore(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_cli_flag_overrides_the_workflow_setting(dask_cluster, tmp_path):
    unreachable = f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "wf.yaml").write_text(f"settings: {{runner: dask, dask_address: '{unreachable}'}}\n"
                                      f"nodes: [{{id: where, type: python, call: 'cluster_nodes:whereami'}}]\n")
    done = flowcore("run", str(tmp_path / "wf.yaml"), "--dask-address", dask_cluster.address, "--json",
                    "--db", str(tmp_path / "flowcore.db"), cwd=TESTS)
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)["nodes"]
    assert record["output"]["pid"] in dask_cluster.worker_pids().values()


def test_an_unreachable_scheduler_is_a_clear_error_with_its_own_exit_code_and_nothing_is_stored(tmp_path):
    unreachable = f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "wf.yaml").write_text("nodes: [{id: a, type: noop}]\n")
    db = str(tmp_path / "flowcore.db")
    done = flowcore("run", "wf.yaml", "--runner", "dask", "--dask-address", unreachable, "--db", db, cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    assert f"cannot reach the dask scheduler at {unreachable}" in done.stderr
    assert "Traceback" not in done.stderr
    assert Engine(db=db).runs() == []


@pytest.mark.parametrize("args, says", [
    (["--runner", "thread", "--dask-address", "tcp://127.0.0.1:8786"], "is for the dask runner"),
    (["--dask-address", "tcp://127.0.0.1:8786"], "this run uses the thread runner"),
    (["--runner", "dask", "--dask-address", "nonsense"], "give one like tcp://HOST:PORT"),
    (["--runner", "dask", "--dask-address", "http://127.0.0.1:8786"], "unknown protocol 'http'"),
])
def test_a_misplaced_or_malformed_address_is_a_usage_error(tmp_path, args, says):
    (tmp_path / "wf.yaml").write_text("nodes: [{id: a, type: noop}]\n")
    done = flowcore("run", "wf.yaml", *args, "--db", str(tmp_path / "flowcore.db"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_a_worker_told_another_runner_and_an_address_is_a_usage_error(tmp_path):
    done = flowcore("worker", "--once", "--runner", "thread", "--dask-address", "tcp://127.0.0.1:8786",
                    "--db", str(tmp_path / "flowcore.db"), cwd=tmp_path)
    assert done.returncode == 2 and "--dask-address is for the dask runner" in done.stderr


@pytest.mark.parametrize("address, says", [
    (42, "is not a dask scheduler address"),
    ("tcp://127.0.0.1", "give one like tcp://HOST:PORT"),
    ("tcp://127.0.0.1:70000", "the port must be from 1 to 65535"),
])
def test_the_dask_address_setting_is_checked_with_the_workflow(address, says):
    with pytest.raises(WorkflowError, match="settings.dask_address") as caught:
        load_workflow({"settings": {"dask_address": address}, "nodes": [{"id": "a", "type": "noop"}]})
    assert says in str(caught.value)


def test_the_engine_refuses_a_malformed_default_address():
    with pytest.raises(ValueError, match="give one like tcp://HOST:PORT"):
        Engine(runner="dask", dask_address="somewhere")
