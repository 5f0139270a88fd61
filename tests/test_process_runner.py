"""The process runner: attempts in worker processes, really ended by timeouts and cancels.

Its records agree with the serial runner's (tests/test_runner_agreement.py); these tests pin what
is its own: attempts run in other, long-lived processes, in parallel; a timeout or a cancel ends
the process running the attempt, and the core hears it stopped only once it is gone; a worker that
dies fails its attempt, which retries; what ``ctx`` and values are across the boundary. The node
functions are in process_nodes.py: they run in worker processes, so they report through a trace
file or what they return. Time bounds are generous.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters import Engine, RunRefused
from process_nodes import read_trace

TESTS = Path(__file__).resolve().parent


def task(node_id, fn, **fields):
    return {"id": node_id, "type": "python", "call": f"process_nodes:{fn}", **fields}


def fan_out(node) -> dict:
    return {"nodes": [{"id": "each", "type": "foreach"}, node],
            "connections": [{"from": "each", "to": node["id"], "port": "iteration"}]}


def outputs(result, node) -> list:
    return [r["output"] for r in sorted(result.to_dict()["nodes"], key=lambda r: r["item"] or [])
            if r["node"] == node]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_attempts_run_in_other_long_lived_processes():
    result = Engine(runner="process", max_parallel=2).run(fan_out(task("where", "pid")), trigger=list(range(12)))
    pids = set(outputs(result, "where"))
    assert result.status == "succeeded"
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2  # twelve attempts, at most two workers: not a process per attempt


def test_a_cpu_bound_fan_out_runs_in_parallel_across_processes():
    result = Engine(runner="process", max_parallel=2).run(fan_out(task("burn", "burn")), trigger=[1, 2, 3, 4])
    ran = outputs(result, "burn")
    assert len({r["pid"] for r in ran}) == 2
    first, second = sorted(ran, key=lambda r: r["start"])[:2]
    assert second["start"] < first["end"]  # the two workers were busy at the same time


def test_a_timeout_ends_the_busy_process_and_the_retry_starts_once_it_is_gone(tmp_path):
    trace = tmp_path / "trace"
    spin = task("spin", "spin", params={"seconds": 30, "trace_to": str(trace)}, timeout=1.0,
                retry={"max_attempts": 2})
    started = time.monotonic()
    result = Engine(runner="process").run({"nodes": [spin]})
    record = result.record("spin")
    assert record["status"] == "failed" and record["attempts"] == 2 and record["error"]["type"] == "timeout"
    assert time.monotonic() - started < 10  # not the 2 x 30 s the attempts would have spun
    seen = {(attempt, what): (pid, at) for _, attempt, pid, what, at in read_trace(trace)}
    first, second = seen[(1, "start")][0], seen[(2, "start")][0]
    assert first != second and gone(first) and gone(second)
    assert seen[(1, "finally-cancelled=True")][0] == first  # SIGTERM unwound the node's code, ctx said so
    assert seen[(2, "start")][1] > seen[(1, "finally-cancelled=True")][1]
    assert result.abandoned == 0


def test_an_attempt_that_ignores_the_cancel_is_killed_after_the_grace_period(tmp_path):
    trace = tmp_path / "trace"
    stubborn = task("stubborn", "stubborn", params={"seconds": 30, "trace_to": str(trace)}, timeout=1.0,
                    retry={"max_attempts": 2})
    result = Engine(runner="process", grace=0.5).run({"nodes": [stubborn]})
    assert result.record("stubborn")["attempts"] == 2 and result.abandoned == 0
    seen = {(attempt, what): (pid, at) for _, attempt, pid, what, at in read_trace(trace)}
    assert (1, "ignored") in seen and gone(seen[(1, "start")][0])
    waited = seen[(2, "start")][1] - seen[(1, "ignored")][1]  # from the SIGTERM it shrugged off
    assert 0.5 - 0.05 <= waited < 8  # the grace, then SIGKILL: the retry waited for it


def test_fail_fast_ends_the_attempts_still_running(tmp_path):
    trace = tmp_path / "trace"
    workflow = {"nodes": [task("spin", "spin", params={"seconds": 30, "trace_to": str(trace)}),
                          {"id": "broken", "type": "python", "call": "nodes_for_tests:fail_after",
                           "params": {"seconds": 1.0}}]}
    started = time.monotonic()
    result = Engine(runner="process").run(workflow)
    assert result.status == "failed" and result.record("spin")["status"] == "cancelled"
    assert time.monotonic() - started < 10
    lines = read_trace(trace)
    assert [what for *_, what, _ in lines] == ["start", "finally-cancelled=True"]
    assert gone(lines[0][2])


def test_a_worker_killed_mid_attempt_fails_the_attempt_and_the_retry_runs():
    retried = Engine(runner="process").run({"nodes": [task("fragile", "die_first", retry={"max_attempts": 2})]},
                                           trigger=7)
    assert retried.record("fragile")["status"] == "succeeded"
    assert retried.record("fragile")["attempts"] == 2 and retried.record("fragile")["output"] == 7
    once = Engine(runner="process").run({"nodes": [task("fragile", "die_first")]}, trigger=7)
    assert once.record("fragile")["error"] == {
        "type": "WorkerDied", "message": "the worker process running it died (exit code -9: SIGKILL)"}


def test_ctx_crosses_the_boundary_as_on_the_thread_runner():
    workflow = {"nodes": [{"id": "start", "type": "noop"},
                          {"id": "each", "type": "foreach"},
                          task("look", "what_ctx_says", timeout=30)],
                "connections": [{"from": "start", "to": "each"}, {"from": "each", "to": "look", "port": "iteration"}]}
    seen = {}
    for runner in ("thread", "process"):
        result = Engine(runner=runner).run(workflow, trigger=["a", "b"], run_id=f"ctx-{runner}")
        seen[runner] = [(r["output"], r["item"]) for r in result.to_dict()["nodes"] if r["node"] == "look"]
        assert sorted(r.logs for r in result.state.records.values() if r.logs) == [("info: seen a",),
                                                                                   ("info: seen b",)]
    for out in seen["thread"] + seen["process"]:
        assert out[0]["has_deadline"] and not out[0]["cancelled"] and out[0]["item"] == out[1]
    drop_run = [({k: v for k, v in o.items() if k not in ("run_id", "idempotency_key")}, i) for o, i in seen["thread"]]
    assert drop_run == [({k: v for k, v in o.items() if k not in ("run_id", "idempotency_key")}, i)
                        for o, i in seen["process"]]
    assert sorted(o["idempotency_key"] for o, _ in seen["process"]) == ["ctx-process/look[0]", "ctx-process/look[1]"]


def test_a_value_that_does_not_pickle_fails_its_node_saying_so():
    result = Engine(runner="process").run({"nodes": [task("locked", "lock")]})
    error = result.record("locked")["error"]
    assert "cannot be sent back from its worker process" in error["message"] and "pickles outputs" in error["message"]
    import threading

    given = Engine(runner="process").run({"nodes": [task("where", "pid")]}, trigger=threading.Lock())
    assert "its input cannot be sent to a worker process" in given.record("where")["error"]["message"]


def test_node_fields_that_do_not_pickle_refuse_the_run_before_it_starts():
    import threading

    odd = task("burn", "burn", params={"rounds": threading.Lock()})
    with pytest.raises(RunRefused, match="do not pickle .* use the thread runner"):
        Engine(runner="process").run({"nodes": [odd]})


def test_a_node_module_that_does_not_load_in_a_worker_fails_its_attempts_saying_why():
    node = {"id": "picky", "type": "python", "call": "loads_only_in_the_driver:echo", "retry": {"max_attempts": 2}}
    result = Engine(runner="process").run({"nodes": [node]}, trigger=1)
    record = result.record("picky")
    assert record["attempts"] == 2 and record["error"]["type"] == "WorkerSetupFailed"
    assert "could not build the workflow's nodes" in record["error"]["message"]
    assert "refuses to load in a worker process" in record["error"]["message"]


CPU_WORKFLOW = """\
name: cpu
settings: {runner: process, max_parallel: 2}
nodes:
  - {id: each, type: foreach}
  - {id: square, type: python, call: "beside:square"}
connections:
  - {from: each, to: square, port: iteration}
"""


def test_the_cli_runs_a_workflow_on_the_process_runner_with_its_module_beside_it(tmp_path):
    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "cpu.yaml").write_text(CPU_WORKFLOW)
    (flow / "beside.py").write_text("import os\n\ndef square(value):\n    print('squaring', value)\n"
                                    "    return {'square': value * value, 'pid': os.getpid()}\n")
    exe = Path(sys.executable).with_name("flowcore")
    env = dict(os.environ, FLOWCORE_DB=str(tmp_path / "flowcore.db"))
    for extra in ([], ["--runner", "process"]):  # the workflow's setting, then the flag
        done = subprocess.run([str(exe), "run", str(flow / "cpu.yaml"), "--json", "--trigger", "[2, 3, 4]", *extra],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        squares = [r["output"] for r in sorted(result["nodes"], key=lambda r: r["item"] or []) if r["node"] == "square"]
        assert [s["square"] for s in squares] == [4, 9, 16]
        assert done.stderr.count("squaring") == 3  # a worker's print goes to stderr under --json
    validated = subprocess.run([str(exe), "validate", str(flow / "cpu.yaml")], capture_output=True, text=True,
                               timeout=60)
    assert validated.returncode == 0, validated.stderr


SPINNERS = """\
name: spinners
nodes:
  - {id: each, type: foreach}
  - {id: spin, type: python, call: "process_nodes:spin", params: {seconds: 30, trace_to: "TRACE"}}
connections:
  - {from: each, to: spin, port: iteration}
"""


def test_ctrl_c_in_a_terminal_cancels_the_run_and_ends_its_workers(tmp_path):
    """Ctrl-C reaches the terminal's whole process group, workers too: they leave it to the driving
    process, which cancels the run and so ends them (none fails its attempt on its own)."""
    import signal

    trace = tmp_path / "trace"
    (tmp_path / "spinners.yaml").write_text(SPINNERS.replace("TRACE", str(trace)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(  # its own process group, as a terminal's job; Ctrl-C's default restored for it
        [sys.executable, "-m", "adapters.cli", "run", "spinners.yaml", "--json", "--runner", "process",
         "--max-parallel", "2", "--trigger", "[1, 2]", "--db", str(tmp_path / "flowcore.db")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not trace.exists() or len(read_trace(trace)) < 2):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    result = json.loads(out)
    assert proc.returncode == 1 and result["status"] == "cancelled", err
    assert "interrupted by the user" in result["error"]["message"]
    assert [r["status"] for r in result["nodes"] if r["node"] == "spin"] == ["cancelled", "cancelled"]
    lines = read_trace(trace)
    assert sorted(what for *_, what, _ in lines) == ["finally-cancelled=True"] * 2 + ["start"] * 2
    assert all(gone(pid) for _, _, pid, _, _ in lines)
