"""Node code that raises what well-behaved code never does (issue 15): ``sys.exit(0)``,
KeyboardInterrupt, a bare BaseException, an error whose ``str()`` (or ``repr()``) raises.

Whatever a node raises, its attempt fails: the run ends ``failed`` (fail-fast), in bounded time,
with the exception's class name as the node's error type (through the CLI, in a process of its own:
the ``node-*`` cases of ``test_bad_inputs_corpus.py``). Each run is driven on a thread of its own
so that a hang is a failed join, not a hung suite, and so that a KeyboardInterrupt that escaped
would not stop the whole test session.
"""
import json
import threading

import pytest

from adapters import Engine
from nodes_for_tests import task

BOUND = 20.0  # "does not hang": generous, the runs take milliseconds
RUNNERS = ["serial", "thread", "asyncio"]
KINDS = {"exit": ("SystemExit", "0"), "interrupt": ("KeyboardInterrupt", "KeyboardInterrupt()"),
         "base": ("BaseException", "x"), "unprintable": ("Unprintable", "Unprintable(...)"),
         "unprintable_repr": ("Unprintable", "Unprintable")}


def bounded_run(runner, workflow):
    """The run's result, driven on a daemon thread that must finish within ``BOUND`` seconds."""
    outcome = {}

    def drive():
        try:
            outcome["result"] = Engine(runner=runner).run(workflow, trigger={"id": 7})
        except BaseException as exc:  # noqa: B036 - anything escaping the engine is the failure shown
            outcome["escaped"] = exc

    worker = threading.Thread(target=drive, daemon=True)
    worker.start()
    worker.join(BOUND)
    assert not worker.is_alive(), f"the run on the {runner} runner did not end within {BOUND} s"
    assert "escaped" not in outcome, f"escaped the engine: {outcome['escaped']!r}"
    return outcome["result"]


def workflow(fn, kind):
    return {"name": "misbehaving", "nodes": [task("bad", fn, params={"kind": kind}), {"id": "after", "type": "noop"}],
            "connections": [{"from": "bad", "to": "after"}]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("runner", RUNNERS)
def test_whatever_a_node_raises_its_attempt_fails_and_the_run_ends(runner, kind):
    result = bounded_run(runner, workflow("misbehave", kind))
    error_type, message = KINDS[kind]
    assert result.status == "failed"
    assert result.to_dict()["error"] == {"node": "bad", "type": error_type, "message": message}


@pytest.mark.parametrize("kind", KINDS)
def test_whatever_a_coroutine_node_raises_its_attempt_fails_on_the_asyncio_runner(kind):
    result = bounded_run("asyncio", workflow("async_misbehave", kind))
    assert result.status == "failed"
    assert result.to_dict()["error"]["type"] == KINDS[kind][0]


SLEEPER = """\
name: sleeper
nodes:
  - {id: slow, type: python, call: "nodes_for_tests:mark_then_sleep", params: {path: "MARK", seconds: 30}}
"""


def test_a_real_ctrl_c_while_a_serial_node_runs_still_cancels_the_run(tmp_path):
    """The node runs on the main thread, where SIGINT raises KeyboardInterrupt inside its call: that one
    is the user's, not the node's, so the run is cancelled (not failed)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from test_cli import TESTS
    mark = tmp_path / "started"
    (tmp_path / "wf.yaml").write_text(SLEEPER.replace("MARK", str(mark)))
    db = tmp_path / "flowcore.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", "run", "wf.yaml", "--json", "--runner", "serial",
                             "--run-id", "r1", "--db", str(db)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + BOUND
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), "the node never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=BOUND)
    finally:
        proc.kill()
    assert json.loads(out)["status"] == "cancelled", err
