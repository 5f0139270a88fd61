"""Resuming a stored run: answers to waiting nodes, refusals that change nothing, replay checks.

Most tests call the ``flowcore`` command in this process (``cli.main``), which is what a user
types minus the interpreter start; the ones about processes exiting use real child processes.
"""
import json
import os
import sqlite3
import subprocess
import time

import pytest
import yaml

import durable_nodes
from adapters import Engine
from adapters.cli import main
from adapters.engine import definition_hash
from durable_nodes import child_env, flowcore, snapshot

TESTS = os.path.dirname(os.path.abspath(__file__))

APPROVAL = {
    "name": "approval",
    "nodes": [{"id": "draft", "type": "noop"},
              {"id": "ask", "type": "hil", "prompt": "Send it?", "choices": ["send", "drop"]},
              {"id": "sent", "type": "noop"}, {"id": "dropped", "type": "noop"},
              {"id": "items", "type": "foreach"},
              {"id": "check", "type": "hil", "choices": ["ok", "no"]}],
    "connections": [{"from": "draft", "to": "ask"}, {"from": "ask", "to": "sent", "port": "send"},
                    {"from": "ask", "to": "dropped", "port": "drop"},
                    {"from": "draft", "to": "items"}, {"from": "items", "to": "check", "port": "iteration"}],
}


def json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def waiting_run(tmp_path, monkeypatch, capsys):
    """A run (id ``r1``) waiting on ``ask`` and on ``check[0]``, ``check[1]``; returns the db path."""
    monkeypatch.chdir(tmp_path)
    path = durable_nodes.write_workflow(tmp_path, APPROVAL)
    assert main(["run", path, "--run-id", "r1", "--trigger", "[1, 2]", "--runner", "serial", "--json"]) == 3
    assert json_out(capsys)["status"] == "waiting"
    return str(tmp_path / "flowcore.db")


BAD_REQUESTS = {
    "unknown run": (["resume", "nope"], "no run with id 'nope'"),
    "unknown node": (["resume", "r1", "--node", "ghost", "--input", "1"], "no node 'ghost'"),
    "node not waiting": (["resume", "r1", "--node", "draft", "--input", "1"], "not waiting"),
    "choice not offered": (["resume", "r1", "--node", "ask", "--port", "maybe", "--input", "1"], "send, drop"),
    "choice missing": (["resume", "r1", "--node", "ask", "--input", "1"], "send, drop"),
    "item that does not exist": (["resume", "r1", "--node", "check", "--item", "5", "--port", "ok", "--input", "1"],
                                 "check[5] is not waiting"),
    "item path too deep": (["resume", "r1", "--node", "check", "--item", "0,0", "--port", "ok", "--input", "1"],
                           "not waiting"),
    "item that is not a path": (["resume", "r1", "--node", "check", "--item", "x", "--port", "ok", "--input", "1"],
                                "--item"),
    "input not JSON": (["resume", "r1", "--node", "ask", "--port", "send", "--input", "yes"], "must be JSON"),
    "input without a node": (["resume", "r1", "--input", "1"], "--node"),
    "node without input": (["resume", "r1", "--node", "ask", "--port", "send"], "--input"),
    "status of an unknown run": (["status", "nope"], "nope"),
    "run id already taken": (["run", "wf.yaml", "--run-id", "r1"], "already exists"),
}


@pytest.mark.parametrize("request_name", list(BAD_REQUESTS))
def test_a_bad_request_is_refused_with_exit_2_and_changes_nothing(waiting_run, capsys, request_name):
    argv, message = BAD_REQUESTS[request_name]
    before = snapshot(waiting_run)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err
    assert snapshot(waiting_run) == before


def test_resuming_a_finished_run_is_refused_and_changes_nothing(waiting_run, capsys):
    for node, port, item in (("ask", "send", None), ("check", "ok", "0"), ("check", "no", "1")):
        main(["resume", "r1", "--node", node, "--port", port, "--input", "1"] + (["--item", item] if item else []))
    assert Engine(db=waiting_run).status("r1").status == "succeeded"
    capsys.readouterr()
    before = snapshot(waiting_run)
    assert main(["resume", "r1"]) == 2
    assert "already finished" in capsys.readouterr().err
    assert snapshot(waiting_run) == before


def test_answering_one_item_of_a_fan_out_leaves_the_others_waiting(waiting_run, capsys):
    assert main(["resume", "r1", "--node", "check", "--item", "1", "--port", "no", "--input", '"x"', "--json"]) == 3
    result = json_out(capsys)
    by_item = {tuple(r["item"] or ()): r for r in result["nodes"] if r["node"] == "check"}
    assert by_item[(1,)]["ports"] == {"no": "x", "result": "x"}
    assert by_item[(0,)]["status"] == "waiting"


def test_an_approval_answered_in_a_later_command_finishes_the_run(waiting_run, capsys):
    main(["resume", "r1", "--node", "check", "--item", "0", "--port", "ok", "--input", "1"])
    main(["resume", "r1", "--node", "check", "--item", "1", "--port", "ok", "--input", "1"])
    capsys.readouterr()
    assert main(["resume", "r1", "--node", "ask", "--port", "send", "--input", '"yes"', "--json"]) == 0
    result = json_out(capsys)
    assert result["status"] == "succeeded"
    statuses = {r["node"]: r["status"] for r in result["nodes"] if r["item"] is None}
    assert statuses == {"draft": "succeeded", "ask": "succeeded", "sent": "succeeded", "dropped": "skipped",
                        "items": "succeeded"}


def test_a_waiting_run_tells_how_to_answer_it(tmp_path):
    path = durable_nodes.write_workflow(tmp_path, APPROVAL)
    done = subprocess.run(flowcore("run", path, "--run-id", "r1", "--trigger", "[1]"), cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "flowcore resume r1 --node ask --port send --input JSON  (--port is one of: send, drop)" in done.stderr
    assert "flowcore resume r1 --node check --item 0 --port ok --input JSON  (--port is one of: ok, no)" in done.stderr
    later = subprocess.run(flowcore("resume", "r1", "--node", "ask", "--port", "send", "--input", '"yes"', "--json"),
                           cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
    assert later.returncode == 3, later.stderr  # check[0] still waits
    assert {r["node"]: r["status"] for r in json.loads(later.stdout)["nodes"]}["sent"] == "succeeded"


def test_the_approval_example_is_answered_in_a_later_command(tmp_path):
    examples = os.path.join(os.path.dirname(TESTS), "examples")
    with open(os.path.join(examples, "ticket.json")) as f:
        ticket = f.read()
    first = subprocess.run(flowcore("run", os.path.join(examples, "approval.yaml"), "--run-id", "post",
                                    "--trigger", ticket), cwd=tmp_path, env=child_env(), capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 3, first.stderr
    assert "flowcore resume post --node approve --port publish --input JSON  (--port is one of: publish, reject)" in first.stderr
    later = subprocess.run(flowcore("resume", "post", "--node", "approve", "--port", "publish", "--input", '"ok"',
                                    "--json"), cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                           timeout=60)
    assert later.returncode == 0, later.stderr
    statuses = {r["node"]: r["status"] for r in json.loads(later.stdout)["nodes"]}
    assert statuses["publish"] == "succeeded" and statuses["escalate"] == "skipped"


def test_status_and_runs_show_a_stored_run(waiting_run, capsys):
    assert main(["status", "r1", "--json"]) == 0
    assert json_out(capsys)["status"] == "waiting"
    assert main(["runs", "--json"]) == 0
    (summary,) = json_out(capsys)
    assert summary["run_id"] == "r1" and summary["workflow"] == "approval" and summary["status"] == "waiting"
    assert summary["finished_at"] is None and summary["started_at"] > 0


def test_runs_of_an_empty_place_is_an_empty_list(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "--json"]) == 0
    assert json_out(capsys) == []


# -- the store file itself ------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["resume", "r1"], ["status", "r1"], ["runs"], ["run", "WF"],
                                     ["resume", "r1", "--node", "ask", "--port", "send", "--input", "1"]])
def test_a_corrupt_database_file_is_refused_and_left_as_it_was(tmp_path, capsys, command):
    path = durable_nodes.write_workflow(tmp_path, APPROVAL)
    command = [path if arg == "WF" else arg for arg in command]
    db = tmp_path / "flowcore.db"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    before = db.read_bytes()
    assert main(command + ["--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert str(db) in " ".join(err.split()) and "Traceback" not in err
    assert db.read_bytes() == before


def test_a_truncated_database_file_is_refused_with_a_clear_message(waiting_run, capsys):
    conn = sqlite3.connect(waiting_run)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file, then cut that short
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    os.truncate(waiting_run, 2 * page + 10)
    assert main(["status", "r1"]) == 2
    err = capsys.readouterr().err
    assert "flowcore status:" in err and "Traceback" not in err


def test_a_database_path_that_cannot_be_opened_is_refused(tmp_path, capsys):
    assert main(["status", "r1", "--db", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_resume_without_a_database_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["resume", "r1"]) == 2
    assert "no flowcore database at flowcore.db" in capsys.readouterr().err
    assert not (tmp_path / "flowcore.db").exists()


def test_flowcore_db_chooses_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWCORE_DB", str(tmp_path / "elsewhere.db"))
    path = durable_nodes.write_workflow(tmp_path, APPROVAL)
    assert main(["run", path, "--run-id", "r1", "--runner", "serial", "--trigger", "[]"]) == 3
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "flowcore.db").exists()


# -- replay checks ----------------------------------------------------------------------------------

def tamper(db, sql, *args):
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, args)
    conn.close()


def test_a_tampered_fingerprint_stops_the_resume_with_a_clear_error(waiting_run, capsys):
    tamper(waiting_run, "UPDATE batches SET fingerprint = 'StartNode:draft|StartNode:ghost' WHERE idx = 0")
    before = snapshot(waiting_run)
    assert main(["resume", "r1", "--node", "ask", "--port", "send", "--input", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "replay diverged at step 0" in err and "ghost" in err
    assert snapshot(waiting_run) == before


def stored_definition(db) -> dict:
    conn = sqlite3.connect(db)
    (definition,) = conn.execute("SELECT definition FROM definitions WHERE run_id = 'r1'").fetchone()
    conn.close()
    return json.loads(definition)


def test_a_stored_definition_that_no_longer_matches_its_hash_is_refused(waiting_run, capsys):
    changed = stored_definition(waiting_run)
    changed["nodes"][2] = {"id": "sent", "type": "python", "call": "os:getcwd"}
    tamper(waiting_run, "UPDATE definitions SET definition = ?", json.dumps(changed))
    before = snapshot(waiting_run)
    assert main(["resume", "r1", "--node", "ask", "--port", "send", "--input", "1"]) == 2
    assert "hash" in capsys.readouterr().err
    assert snapshot(waiting_run) == before


@pytest.mark.parametrize("sql", ["UPDATE batches SET events = '[{\"type\": \"Nope\"}]' WHERE idx = 1",
                                 "UPDATE batches SET events = 'not json' WHERE idx = 0",
                                 "UPDATE definitions SET definition = '{'"])
def test_a_corrupt_log_or_definition_is_refused_with_a_clear_message(waiting_run, capsys, sql):
    tamper(waiting_run, sql)
    before = snapshot(waiting_run)
    assert main(["resume", "r1", "--node", "ask", "--port", "send", "--input", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "r1" in err and "corrupt" in err and "Traceback" not in err
    assert snapshot(waiting_run) == before


def test_a_definition_stored_as_canonical_text_is_checked_by_its_hash(waiting_run):
    definition = stored_definition(waiting_run)
    conn = sqlite3.connect(waiting_run)
    (text,) = conn.execute("SELECT definition FROM definitions WHERE run_id = 'r1'").fetchone()
    conn.close()
    assert text == json.dumps(definition, sort_keys=True)  # what the hash was taken of: no re-encoding on load
    assert main(["status", "r1"]) == 0


def test_a_definition_stored_by_an_older_version_as_other_text_still_loads(waiting_run, capsys):
    # Earlier versions stored json.dumps(definition) unsorted; the hash is of the sorted text, so the
    # check falls back to encoding the parsed definition: same definition, the run goes on.
    definition = stored_definition(waiting_run)
    unsorted = json.dumps(dict(reversed(list(definition.items()))))
    assert unsorted != json.dumps(definition, sort_keys=True)
    tamper(waiting_run, "UPDATE definitions SET definition = ?", unsorted)
    capsys.readouterr()
    assert main(["resume", "r1", "--node", "ask", "--port", "send", "--input", "1", "--json"]) == 3  # check[*] wait on
    assert {r["node"]: r["status"] for r in json_out(capsys)["nodes"]}["sent"] == "succeeded"


def test_a_stored_definition_the_core_decides_differently_on_is_refused(waiting_run, capsys):
    changed = stored_definition(waiting_run)
    changed["connections"] = changed["connections"][:3]  # no more fan-out
    tamper(waiting_run, "UPDATE definitions SET definition = ?", json.dumps(changed))
    tamper(waiting_run, "UPDATE runs SET definition_hash = ?", definition_hash(changed))
    assert main(["resume", "r1"]) == 2
    assert "diverged" in capsys.readouterr().err


def test_a_resume_uses_the_stored_definition_and_says_the_file_changed(waiting_run, tmp_path, capsys):
    edited = dict(APPROVAL, nodes=[dict(n, type="python", call="os:no_such_function") if n["id"] == "sent" else n
                                   for n in APPROVAL["nodes"]])
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(edited))
    assert main(["resume", "r1", "--node", "ask", "--port", "send", "--input", '"yes"', "--json"]) == 3
    captured = capsys.readouterr()
    assert "has changed since run r1 started" in " ".join(captured.err.split())
    assert {r["node"]: r["status"] for r in json.loads(captured.out)["nodes"]}["sent"] == "succeeded"


def test_an_unchanged_file_is_not_reported_as_changed(waiting_run, capsys):
    main(["resume", "r1", "--node", "ask", "--port", "send", "--input", "1"])
    assert "has changed" not in capsys.readouterr().err


def test_a_run_resumed_with_a_higher_cap_can_still_be_replayed(tmp_path):
    definition = {"name": "caps", "nodes": [{"id": "ask", "type": "hil"}] + [
        {"id": x, "type": "noop"} for x in "abc"], "connections": [{"from": "ask", "to": x} for x in "abc"]}
    db = str(tmp_path / "flowcore.db")
    Engine(runner="serial", db=db).run(definition, run_id="r1", max_parallel=1)
    assert Engine(runner="serial", db=db).resume("r1", node="ask", input=1, max_parallel=3).status == "succeeded"
    assert Engine(db=db).status("r1").status == "succeeded"


# -- timers across restarts -------------------------------------------------------------------------

TIMERS = {
    "name": "timers",
    "nodes": [{"id": "late_delay", "type": "delay", "seconds": 0.9},
              {"id": "soon_wait", "type": "wait", "timeout": 0.3},
              {"id": "mid_hil", "type": "hil", "timeout": 0.6},
              {"id": "after", "type": "noop"}],
    "connections": [{"from": "soon_wait", "to": "after", "port": "timeout"}],
}


def test_timers_that_fell_due_while_no_process_ran_fire_on_resume_in_due_order(tmp_path):
    path = durable_nodes.write_workflow(tmp_path, TIMERS)
    first = subprocess.run(flowcore("run", path, "--run-id", "t1", "--linger", "0", "--trigger", '"x"'),
                           cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
    assert first.returncode == 3, first.stderr
    time.sleep(1.0)  # every timer falls due while nothing runs
    resumed_at = time.time()
    second = subprocess.run(flowcore("resume", "t1", "--json"), cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert [n for n in result["sequence"] if n != "after"] == ["soon_wait", "mid_hil", "late_delay"]
    records = {r["node"]: r for r in result["nodes"]}
    assert records["after"]["status"] == "succeeded"
    assert records["soon_wait"]["finished_at"] < records["mid_hil"]["finished_at"] < records["late_delay"]["finished_at"]
    assert records["soon_wait"]["ports"] == {"timeout": "x"}
    assert records["mid_hil"]["ports"] == {"timeout": "x"}
    assert all(records[n]["finished_at"] < resumed_at for n in ("soon_wait", "mid_hil", "late_delay"))


def test_a_timer_not_yet_due_keeps_the_run_waiting(tmp_path):
    db = str(tmp_path / "flowcore.db")
    definition = {"name": "later", "nodes": [{"id": "pause", "type": "delay", "seconds": 30}], "connections": []}
    engine = Engine(runner="serial", db=db, linger=0)
    assert engine.run(definition, run_id="d1").status == "waiting"
    assert Engine(db=db, linger=0).resume("d1").status == "waiting"


def test_without_the_code_its_nodes_call_a_run_still_shows_its_status_but_does_not_resume(tmp_path):
    # Loading a stored run checks its structure only (a status runs no node); a resume checks the
    # node types before it runs anything, and refuses, changing nothing, when their code is gone.
    (tmp_path / "gone_nodes.py").write_text("def hello(input):\n    return {'said': 'hello'}\n")
    workflow = {"name": "gone", "nodes": [{"id": "hello", "type": "python", "call": "gone_nodes:hello"},
                                          {"id": "ask", "type": "hil"},
                                          {"id": "again", "type": "python", "call": "gone_nodes:hello"}],
                "connections": [{"from": "hello", "to": "ask"}, {"from": "ask", "to": "again"}]}
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(workflow))

    def child(*args):
        return subprocess.run(flowcore(*args), cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                              timeout=60)
    assert child("run", "wf.yaml", "--run-id", "g1").returncode == 3
    (tmp_path / "gone_nodes.py").unlink()
    db = str(tmp_path / "flowcore.db")
    before = snapshot(db)
    status = child("status", "g1", "--json")
    assert status.returncode == 0, status.stderr
    assert {r["node"]: r["status"] for r in json.loads(status.stdout)["nodes"]} == {
        "hello": "succeeded", "ask": "waiting", "again": "pending"}
    refused = child("resume", "g1", "--node", "ask", "--input", '"go"')
    assert refused.returncode == 2
    err = " ".join(refused.stderr.split())
    assert "no longer loads here" in err and "gone_nodes" in err and "Traceback" not in err
    assert snapshot(db) == before
