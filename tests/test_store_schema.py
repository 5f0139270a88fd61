"""The SQLite store's file: its schema version and migrations, files that are not flowcore stores,
snapshots that cannot run code, and a run summary that never says `running` for a finished run.

``data/store-d5463c7.db`` was written by flowcore at commit d5463c7, before the schema had a
version (``data/make_store_d5463c7.py`` made it): a run that finished, one waiting on a ``hil``
and a foreach of ``hil``, one whose cap a resume raised (the old ``caps`` history in its options)
and one left ``running`` by a driver killed after its last step. Every run left a pickled snapshot.
"""
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys

import attrs
import pytest

import durable_nodes
from adapters import Engine, recovery, snapshots
from adapters.cli import main
from scheduler_core import State
from adapters.store import APPLICATION_ID, SCHEMA_VERSION, SqliteStore, StoreError

OLD_STORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "store-d5463c7.db")


@pytest.fixture
def old_store(tmp_path):
    path = str(tmp_path / "old.db")
    shutil.copyfile(OLD_STORE, path)
    return path


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


def pragma(path, name):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# -- a store written before the schema had a version ------------------------------------------------

def test_a_store_of_the_first_layout_is_migrated_and_its_runs_read_as_before(old_store, capsys):
    assert main(["runs", "--db", old_store, "--json"]) == 0
    assert {r["run_id"]: r["status"] for r in json_out(capsys)} == {
        "done": "succeeded", "waiting": "waiting", "capped": "waiting", "stuck": "running"}
    assert main(["status", "done", "--db", old_store, "--json"]) == 0
    done = json_out(capsys)
    assert done["status"] == "succeeded"
    assert [r["output"] for r in done["nodes"] if r["node"] == "all"] == [[[1, 2, 3]]]  # merge: a list of inputs
    assert pragma(old_store, "user_version") == SCHEMA_VERSION
    assert pragma(old_store, "application_id") == APPLICATION_ID


def test_the_old_pickled_snapshots_are_dropped_unread(old_store):
    SqliteStore(old_store, create=False).close()
    conn = sqlite3.connect(old_store)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(snapshots)")]
    assert columns == ["run_id", "idx", "version", "data"]
    assert conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 0


def test_a_waiting_run_of_an_old_store_resumes_to_completion(old_store, capsys):
    assert main(["status", "waiting", "--db", old_store, "--json"]) == 0
    assert json_out(capsys)["status"] == "waiting"
    assert main(["resume", "waiting", "--db", old_store, "--node", "check", "--item", "0", "--port", "ok",
                 "--input", "1", "--runner", "serial"]) == 3
    assert main(["resume", "waiting", "--db", old_store, "--node", "check", "--item", "1", "--port", "no",
                 "--input", "2", "--runner", "serial"]) == 3
    capsys.readouterr()
    assert main(["resume", "waiting", "--db", old_store, "--node", "ask", "--port", "send", "--input", '"yes"',
                 "--runner", "serial", "--json"]) == 0
    result = json_out(capsys)
    assert result["status"] == "succeeded"
    assert {r["node"]: r["status"] for r in result["nodes"] if r["item"] is None}["dropped"] == "skipped"
    assert main(["runs", "--db", old_store, "--json"]) == 0
    assert {r["run_id"]: r["status"] for r in json_out(capsys)}["waiting"] == "succeeded"


def test_an_old_run_whose_cap_a_resume_raised_replays_with_that_cap_and_finishes(old_store):
    """Its log was made with max_parallel 1 and then 3 (kept in its options as ``caps``); a replay with
    any other cap would decide differently at the step the cap changed, and be refused."""
    result = Engine(runner="serial", db=old_store).resume("capped", node="later", input="go")
    assert result.status == "succeeded"
    assert Engine(db=old_store).status("capped").status == "succeeded"


def test_a_run_of_an_old_store_can_change_its_cap_again(old_store):
    engine = Engine(runner="serial", db=old_store)
    assert engine.resume("capped", node="later", input="go", max_parallel=1).status == "succeeded"
    _, _, state = Engine(db=old_store).load("capped", use_snapshot=False)
    assert state.max_parallel == 1


def test_a_store_of_a_newer_schema_is_refused(tmp_path, capsys):
    db = str(tmp_path / "new.db")
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    assert main(["runs", "--db", db]) == 2
    assert "newer flowcore" in capsys.readouterr().err


def test_a_new_store_has_the_layout_an_old_one_is_migrated_to(tmp_path, old_store):
    fresh = str(tmp_path / "fresh.db")
    SqliteStore(fresh).close()
    SqliteStore(old_store).close()

    def layout(path):
        conn = sqlite3.connect(path)
        try:
            return {t: [row[1:3] for row in conn.execute(f"PRAGMA table_info({t})")]
                    for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()

    assert layout(fresh) == layout(old_store)


# -- a run left `running` by a driver that died after its last step --------------------------------

def test_resume_repairs_a_finished_run_whose_summary_says_running(old_store, capsys):
    assert main(["resume", "stuck", "--db", old_store, "--json"]) == 0
    assert json_out(capsys)["status"] == "succeeded"
    assert main(["runs", "--db", old_store, "--json"]) == 0
    stuck = {r["run_id"]: r for r in json_out(capsys)}["stuck"]
    assert stuck["status"] == "succeeded" and stuck["finished_at"] is not None
    assert main(["resume", "stuck", "--db", old_store]) == 2  # repaired: now an ordinary finished run


KILL_AFTER_LAST_STEP = """
import os, signal, sys
from adapters import Engine

def observer(events, commands, state):
    if state.finished:  # the last step is committed; the summary update after the drive never comes
        os.kill(os.getpid(), signal.SIGKILL)

wf = {"name": "short", "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
      "connections": [{"from": "a", "to": "b"}]}
Engine(runner="serial", db=sys.argv[1]).run(wf, run_id="r", observer=observer)
"""


def test_a_driver_killed_after_its_last_step_leaves_the_run_stored_finished(tmp_path, capsys):
    db = str(tmp_path / "flowcore.db")
    child = subprocess.run([sys.executable, "-c", KILL_AFTER_LAST_STEP, db], env=durable_nodes.child_env(),
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert main(["runs", "--db", db, "--json"]) == 0
    (summary,) = json_out(capsys)
    assert summary["status"] == "succeeded" and summary["finished_at"] is not None
    assert main(["status", "r", "--db", db, "--json"]) == 0
    assert json_out(capsys)["status"] == "succeeded"


# -- files that are not flowcore stores --------------------------------------------------------------

@pytest.fixture
def other_apps_db(tmp_path):
    path = tmp_path / "contacts.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT, email TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('Ada', 'ada@example.com')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", [["runs"], ["status", "r1"], ["resume", "r1"], ["run", "WF"]])
def test_another_applications_database_is_refused_and_left_unchanged(tmp_path, other_apps_db, capsys, command):
    workflow = durable_nodes.write_workflow(tmp_path, {"name": "w", "nodes": [{"id": "a", "type": "noop"}]})
    before = other_apps_db.read_bytes()
    assert main([workflow if arg == "WF" else arg for arg in command] + ["--db", str(other_apps_db)]) == 2
    err = capsys.readouterr().err
    assert "not a flowcore store" in err and "Traceback" not in err
    assert other_apps_db.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(["contacts.db", os.path.basename(workflow)])  # no -wal, no -shm
    assert pragma(str(other_apps_db), "journal_mode") == "delete"


def test_read_commands_on_an_empty_file_find_no_runs_and_write_nothing(tmp_path, capsys):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    assert main(["runs", "--db", str(db), "--json"]) == 0
    assert json_out(capsys) == []
    assert main(["status", "r1", "--db", str(db)]) == 2
    assert "no run with id 'r1'" in capsys.readouterr().err
    assert db.read_bytes() == b"" and os.listdir(tmp_path) == ["empty.db"]


def test_read_commands_create_no_database(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "--json"]) == 0
    assert main(["status", "r1"]) == 2
    assert os.listdir(tmp_path) == []


def test_a_store_opened_to_read_does_not_create_a_missing_file(tmp_path):
    with pytest.raises(StoreError):
        SqliteStore(str(tmp_path / "missing.db"), create=False)
    assert os.listdir(tmp_path) == []


def test_run_makes_a_store_of_an_empty_file(tmp_path, capsys):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    workflow = durable_nodes.write_workflow(tmp_path, {"name": "w", "nodes": [{"id": "a", "type": "noop"}]})
    assert main(["run", workflow, "--db", str(db), "--runner", "serial", "--json"]) == 0
    assert json_out(capsys)["status"] == "succeeded"
    assert pragma(str(db), "user_version") == SCHEMA_VERSION


# -- snapshots are data ------------------------------------------------------------------------------

class RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


SNAPSHOT_WF = {"name": "snap", "nodes": [{"id": "each", "type": "foreach"}, {"id": "x", "type": "noop"},
                                         {"id": "ask", "type": "hil"}],
               "connections": [{"from": "each", "to": "x", "port": "iteration"}]}


def crafted(**values) -> str:
    """A snapshot of the right format and shape whose fields are null but for ``values``."""
    state = {f.name: None for f in attrs.fields(State) if f.name != "graph"}
    return json.dumps({"format": snapshots.FORMAT, "deep": [], "state": dict(state, **values)})


@pytest.mark.parametrize("payload", ["pickle", "json naming os.system", "json naming an allowed class wrongly"])
def test_a_crafted_snapshot_runs_no_code_and_is_ignored(tmp_path, monkeypatch, capsys, payload):
    monkeypatch.setattr(recovery, "SNAPSHOT_EVERY", 1)
    db = str(tmp_path / "flowcore.db")
    marker = tmp_path / "pwned"
    assert Engine(runner="serial", db=db).run(SNAPSHOT_WF, trigger=[1, 2], run_id="r").status == "waiting"
    data = {"pickle": pickle.dumps(RunsCode(marker)),
            "json naming os.system": crafted(trigger=["os.system", f"touch {marker}"]),
            "json naming an allowed class wrongly": crafted(trigger=["Timer", f"touch {marker}"])}[payload]
    conn = sqlite3.connect(db)
    conn.execute("UPDATE snapshots SET data = ? WHERE run_id = 'r'", (data,))
    conn.commit()
    conn.close()
    assert main(["status", "r", "--db", db, "--json"]) == 0
    assert json_out(capsys)["status"] == "waiting"
    assert not marker.exists()
    assert Engine(runner="serial", db=db).resume("r", node="ask", input=1).status == "succeeded"
    assert not marker.exists()


def test_a_new_store_and_its_wal_files_are_readable_by_their_owner_only(tmp_path):
    import stat

    from adapters import Engine

    db = tmp_path / "private.db"
    Engine(runner="serial", db=str(db)).run({"nodes": [{"id": "a", "type": "noop"}]}, trigger={"secret": 1})
    for path in [db, *tmp_path.glob("private.db-*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
