"""The ``flowcore`` command: exit codes, the ``--json`` object, refusals, validate, status and runs.

A few tests run the installed command in a subprocess (what a user runs: stdout and stderr kept
apart, no traceback); the rest call ``adapters.cli.main`` in-process. The store is always a
SQLite file in a temporary directory (``FLOWCORE_DB``).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters import SqliteStore, StoreError
from adapters.cli import main

TESTS = Path(__file__).resolve().parent
RUN_KEYS = {"run_id", "status", "error", "started_at", "finished_at", "nodes", "sequence"}
RECORD_KEYS = {"node", "item", "status", "attempts", "started_at", "finished_at", "ports", "output", "error", "history"}

NOISY = """\
name: noisy
nodes:
  - {id: talk, type: python, call: "nodes_for_tests:noisy"}
  - {id: each, type: foreach}
  - {id: double, type: python, call: "nodes_for_tests:double"}
connections:
  - {from: talk, to: each, select: items}
  - {from: each, to: double, port: iteration}
"""
FAILING = """\
name: failing
nodes:
  - {id: ok, type: noop}
  - {id: broken, type: python, call: "nodes_for_tests:fail", params: {message: "no luck"}}
connections:
  - {from: ok, to: broken}
"""
APPROVAL = """\
name: approval
nodes:
  - {id: approve, type: hil, prompt: "Ship it?", choices: [ship, hold]}
  - {id: shipped, type: noop}
connections:
  - {from: approve, to: shipped, port: ship}
"""
INVALID = """\
nodes:
  - {id: a, type: bogus}
  - {id: b, type: noop}
connections:
  - {from: b, to: nowhere}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary working directory whose store is ``FLOWCORE_DB``; files are written into it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWCORE_DB", str(tmp_path / "flowcore.db"))
    for name, text in (("noisy.yaml", NOISY), ("failing.yaml", FAILING), ("approval.yaml", APPROVAL),
                       ("invalid.yaml", INVALID)):
        (tmp_path / name).write_text(text)
    return tmp_path


def flowcore(*args, cwd):
    """Run the installed ``flowcore`` command; node modules come from tests/."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    exe = Path(sys.executable).with_name("flowcore")
    command = [str(exe)] if exe.exists() else ["flowcore"]
    return subprocess.run(command + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def cli(capsys, *args):
    """(exit code, stdout, stderr) of ``flowcore ARGS`` run in-process."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *args):
    code, out, err = cli(capsys, *args, "--json")
    return code, json.loads(out), err


def test_run_json_prints_exactly_one_object_even_when_nodes_print(workdir):
    done = flowcore("run", "noisy.yaml", "--json", "--trigger", '{"items": [1, 2]}', cwd=workdir)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # the whole of stdout is the one object
    assert set(result) == RUN_KEYS
    assert result["status"] == "succeeded" and result["error"] is None
    assert all(set(r) == RECORD_KEYS for r in result["nodes"])
    assert "chatter from a node" in done.stderr
    assert result["sequence"][:2] == ["talk", "each"]
    assert sorted(result["sequence"][2:]) == ["double[0]", "double[1]"]


def test_a_record_shows_item_ports_output_and_error_as_the_contract_says(workdir, capsys):
    _, result, _ = cli_json(capsys, "run", "noisy.yaml", "--trigger", '{"items": [5]}')
    double = next(r for r in result["nodes"] if r["node"] == "double")
    assert double["item"] == [0] and double["ports"] == {"result": 10} and double["output"] == 10
    assert double["error"] is None and double["attempts"] == 1
    assert isinstance(double["started_at"], float) and double["finished_at"] >= double["started_at"]
    assert next(r for r in result["nodes"] if r["node"] == "talk")["item"] is None


def test_an_invalid_workflow_exits_2_with_every_problem_no_traceback_and_nothing_stored(workdir):
    done = flowcore("run", "invalid.yaml", cwd=workdir)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert "unknown type 'bogus'" in done.stderr and "unknown target node 'nowhere'" in done.stderr
    assert not (workdir / "flowcore.db").exists()


def test_an_invalid_workflow_adds_no_run_to_an_existing_store(workdir, capsys):
    cli(capsys, "run", "failing.yaml")
    code, _, err = cli(capsys, "run", "invalid.yaml", "--json")
    assert code == 2 and "invalid workflow" in err
    _, runs, _ = cli_json(capsys, "runs")
    assert [r["workflow"] for r in runs] == ["failing"]


def test_a_malformed_file_exits_2_naming_the_line(workdir, capsys):
    (workdir / "broken.yaml").write_text("nodes:\n  - {id: a, type: noop\n  - {id: b}\n")
    code, out, err = cli(capsys, "run", "broken.yaml")
    assert code == 2 and out == ""
    assert "line 3" in err and "not valid YAML" in err


def test_a_missing_file_exits_2(workdir, capsys):
    code, _, err = cli(capsys, "run", "absent.yaml")
    assert code == 2 and "no such file" in err


def test_a_failed_run_exits_1_with_the_error_in_the_json(workdir, capsys):
    code, result, _ = cli_json(capsys, "run", "failing.yaml")
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"] == {"node": "broken", "type": "RuntimeError", "message": "no luck"}
    broken = next(r for r in result["nodes"] if r["node"] == "broken")
    traceback = broken["error"].pop("traceback")  # node code raised it: where, is kept
    assert broken["error"] == {"type": "RuntimeError", "message": "no luck"} and broken["output"] is None
    assert "nodes_for_tests.py" in traceback and traceback.endswith("RuntimeError: no luck\n")


def test_a_waiting_run_exits_3_and_says_how_to_resume_it(workdir, capsys):
    code, out, err = cli(capsys, "run", "approval.yaml", "--run-id", "ask")
    assert code == 3
    assert "waiting" in out
    assert "flowcore resume ask --node approve --port ship --input JSON  (--port is one of: ship, hold)" in err


def test_resume_answers_the_waiting_node_and_exits_0(workdir, capsys):
    cli(capsys, "run", "approval.yaml", "--run-id", "ask")
    code, result, _ = cli_json(capsys, "resume", "ask", "--node", "approve", "--port", "ship", "--input", '"yes"')
    assert code == 0 and result["status"] == "succeeded"
    assert next(r for r in result["nodes"] if r["node"] == "shipped")["output"] == "yes"


def test_the_text_summary_of_a_run_that_waited_says_its_wall_time_includes_the_wait(workdir, capsys):
    cli(capsys, "run", "approval.yaml", "--run-id", "ask")
    code, out, _ = cli(capsys, "resume", "ask", "--node", "approve", "--port", "ship", "--input", '"yes"')
    assert code == 0 and "wall time, waits (approve) included;" in out and "from running at once" not in out


def test_resume_with_a_choice_not_offered_exits_2_and_changes_nothing(workdir, capsys):
    cli(capsys, "run", "approval.yaml", "--run-id", "ask")
    _, before, _ = cli_json(capsys, "status", "ask")
    code, out, err = cli(capsys, "resume", "ask", "--node", "approve", "--port", "maybe", "--input", "1")
    assert code == 2 and "ship, hold" in err and "Traceback" not in err
    _, after, _ = cli_json(capsys, "status", "ask")
    assert after == before


def test_resuming_a_finished_run_exits_2(workdir, capsys):
    cli(capsys, "run", "failing.yaml", "--run-id", "done")
    code, _, err = cli(capsys, "resume", "done")
    assert code == 2 and "finished" in err


def test_a_run_id_already_in_the_store_is_refused_with_exit_2(workdir, capsys):
    _, first, _ = cli_json(capsys, "run", "noisy.yaml", "--run-id", "mine", "--trigger", '{"items": []}')
    code, out, err = cli(capsys, "run", "failing.yaml", "--run-id", "mine")
    assert code == 2 and "mine" in err and out == ""
    _, stored, _ = cli_json(capsys, "status", "mine")
    assert stored == first


def test_bad_trigger_json_exits_2(workdir, capsys):
    code, _, err = cli(capsys, "run", "noisy.yaml", "--trigger", "{not json")
    assert code == 2 and "--trigger must be JSON" in err


def test_status_of_a_known_run_exits_0_whatever_its_status(workdir, capsys):
    cli(capsys, "run", "failing.yaml", "--run-id", "f1")
    code, result, _ = cli_json(capsys, "status", "f1")
    assert code == 0 and result["status"] == "failed" and set(result) == RUN_KEYS


def test_status_names_the_answers_and_cancels_waiting_in_the_runs_inbox(workdir, capsys):
    """An answer given while another process drove the run (``resume --node`` exited 3), that process
    gone since: status said the node still awaited an answer, inviting a second one."""
    cli(capsys, "run", "approval.yaml", "--run-id", "a1")
    store = SqliteStore(str(workdir / "flowcore.db"))
    store.post("a1", "answer", {"node": "approve", "item": [], "port": "ship", "value": "ok"}, at=time.time())
    store.post("a1", "cancel_node", {"node": "shipped", "item": None, "reason": "no"}, at=time.time())
    code, out, _ = cli(capsys, "status", "a1")
    assert code == 0
    assert "approve awaits an answer (Ship it?); an answer to it is in the run's inbox" in out
    assert "a cancel of shipped is in the run's inbox" in out


def test_status_of_an_unknown_run_exits_2(workdir, capsys):
    cli(capsys, "run", "failing.yaml")
    code, out, err = cli(capsys, "status", "no-such-run")
    assert code == 2 and out == "" and "no-such-run" in err


def test_a_worker_says_on_lines_of_their_own_why_a_run_cannot_be_driven(workdir, capsys):
    (workdir / "gone").mkdir()
    (workdir / "gone" / "vanishing_module.py").write_text("def f(x):\n    return x\n")
    (workdir / "gone" / "wf.yaml").write_text("name: wf\nnodes:\n  - {id: a, type: python, call: 'vanishing_module:f'}\n")
    assert cli(capsys, "submit", "gone/wf.yaml", "--run-id", "r\nforged")[0] == 0
    (workdir / "gone" / "vanishing_module.py").unlink()
    done = flowcore("worker", "--once", cwd=workdir)  # a process of its own: this one has the module loaded
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "\\n" not in err.replace("r\\nforged", ""), err  # no problem list squeezed onto one line
    assert "\n  - node 'a': call 'vanishing_module:f': cannot import" in err
    assert "r\\nforged" in err and "\nforged" not in err  # a run id still cannot start a line of its own


def test_status_of_a_run_cancelled_while_queued_shows_its_table(workdir, capsys):
    # the run never started: it has an end but no start, which the table's closing line must bear
    cli(capsys, "submit", "noisy.yaml", "--run-id", "q1")
    assert cli(capsys, "cancel", "q1", "--reason", "not needed")[0] == 0
    code, out, err = cli(capsys, "status", "q1")
    assert code == 0, err
    assert "cancelled" in out and "run: cancelled: not needed" in out and "wall time" not in out


def test_runs_json_is_an_empty_list_without_a_store(workdir, capsys):
    code, runs, _ = cli_json(capsys, "runs")
    assert code == 0 and runs == []
    assert not (workdir / "flowcore.db").exists()


def test_runs_json_is_an_empty_list_for_an_empty_store(workdir, capsys):
    SqliteStore(str(workdir / "flowcore.db"))
    assert cli_json(capsys, "runs")[:2] == (0, [])


def test_runs_json_lists_run_summaries(workdir, capsys):
    cli(capsys, "run", "failing.yaml", "--run-id", "one")
    code, runs, _ = cli_json(capsys, "runs")
    assert code == 0
    assert [{k: r[k] for k in ("run_id", "workflow", "status")} for r in runs] == \
        [{"run_id": "one", "workflow": "failing", "status": "failed"}]
    assert set(runs[0]) == {"run_id", "workflow", "status", "started_at", "finished_at"}


def test_db_flag_overrides_the_environment(workdir, capsys):
    other = str(workdir / "other.db")
    cli(capsys, "run", "failing.yaml", "--db", other, "--run-id", "elsewhere")
    assert cli_json(capsys, "runs")[1] == []
    assert [r["run_id"] for r in cli_json(capsys, "runs", "--db", other)[1]] == ["elsewhere"]


def test_validate_accepts_a_good_file_and_rejects_a_bad_one(workdir, capsys):
    code, out, _ = cli(capsys, "validate", "failing.yaml")
    assert code == 0 and "valid (2 nodes, 1 connection)" in out
    code, _, err = cli(capsys, "validate", "invalid.yaml")
    assert code == 2 and "unknown type 'bogus'" in err


def test_the_text_summary_shows_a_table_and_the_wall_time(workdir, capsys):
    code, out, _ = cli(capsys, "run", "noisy.yaml", "--trigger", '{"items": [1, 2]}')
    assert code == 0
    for heading in ("node", "status", "tries", "took"):
        assert heading in out
    assert "double[1]" in out and "succeeded" in out
    assert "wall time" in out


def test_the_runner_flag_is_honoured(workdir, capsys):
    (workdir / "where.yaml").write_text("nodes:\n  - {id: where, type: python, call: 'nodes_for_tests:thread_name'}\n")
    _, result, _ = cli_json(capsys, "run", "where.yaml", "--runner", "serial")
    assert result["nodes"][0]["output"] == "MainThread"
    _, result, _ = cli_json(capsys, "run", "where.yaml")  # the default runner is thread
    assert result["nodes"][0]["output"].startswith("flowcore-worker")


@pytest.mark.parametrize("runner", ["thread", "asyncio"])
def test_a_node_ignoring_cancellation_does_not_keep_the_process_alive(workdir, runner):
    (workdir / "stubborn.yaml").write_text(
        "nodes:\n"
        "  - {id: boom, type: python, call: 'nodes_for_tests:fail_after', params: {seconds: 0.2}}\n"
        "  - {id: stubborn, type: python, call: 'nodes_for_tests:sleep', params: {seconds: 8}}\n")
    t0 = time.monotonic()
    done = flowcore("run", "stubborn.yaml", "--runner", runner, "--grace", "0.3", cwd=workdir)
    assert time.monotonic() - t0 < 5.0  # the stubborn node sleeps 8 s
    assert done.returncode == 1
    assert "1 abandoned thread" in done.stdout
    assert "Task was destroyed" not in done.stderr and "Traceback" not in done.stderr


def test_a_store_that_fails_mid_run_exits_4_and_the_run_resumes_once_it_works(workdir, capsys, monkeypatch):
    (workdir / "chain.yaml").write_text("nodes: [{id: a, type: noop}, {id: b, type: noop}, {id: c, type: noop}]\n"
                                        "connections: [{from: a, to: b}, {from: b, to: c}]\n")
    real_append = SqliteStore.append

    def disk_full_at_step_2(self, run_id, index, *rest, **kw):
        if index == 2:
            raise StoreError("disk is full")
        return real_append(self, run_id, index, *rest, **kw)

    monkeypatch.setattr(SqliteStore, "append", disk_full_at_step_2)
    code, out, err = cli(capsys, "run", "chain.yaml", "--runner", "serial", "--run-id", "r1")
    assert code == 4, err
    assert "disk is full" in err and "flowcore resume r1" in err and "Traceback" not in err
    monkeypatch.setattr(SqliteStore, "append", real_append)
    code, result, err = cli_json(capsys, "status", "r1")
    assert [r["status"] for r in result["nodes"]] == ["succeeded", "running", "pending"]
    code, result, err = cli_json(capsys, "resume", "r1")
    assert code == 0 and result["status"] == "succeeded", err


def test_with_json_stdout_is_one_json_value_even_when_nodes_write_to_file_descriptor_1(tmp_path):
    (tmp_path / "wf.yaml").write_text("nodes: [{id: loud, type: python, call: 'nodes_for_tests:writes_to_fd_1'}]\n")
    result = flowcore("run", "wf.yaml", "--json", "--trigger", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["nodes"][0]["output"] == 7  # stdout holds the object and nothing else
    for line in ("raw bytes on fd 1", "a child process printing", "a plain print"):
        assert line in result.stderr
