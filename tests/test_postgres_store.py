"""What only the PostgreSQL store has: choosing it by URL, its schema versioning, schemas that are not
flowcore stores, psycopg missing, wakeups by LISTEN/NOTIFY, and fencing against a takeover under way.

The contract it shares with the other stores is tested once for all of them (tests/test_durable_store.py,
tests/test_live_engine.py). Each test here has a schema of its own (``postgres_url``); without
FLOWCORE_TEST_POSTGRES the tests that need a server are skipped with a message naming it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

import pg_support
from adapters import Engine, Worker
from adapters.cli import main
from adapters.store import Lease, LeaseLost, RunInfo, StoreError, open_store
from durable_nodes import child_env, write_workflow

FIRST_WF = {"name": "w", "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
            "connections": [{"from": "a", "to": "b"}]}


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


def tables(url: str) -> set[str]:
    return {r[0] for r in pg_support.execute(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def info(run_id: str, status: str = "running") -> RunInfo:
    return RunInfo(run_id=run_id, workflow="w", definition=FIRST_WF, definition_hash=None, options={}, status=status)


# -- choosing the store ------------------------------------------------------------------------------

def test_the_cli_runs_submits_and_lists_runs_on_a_postgres_store(tmp_path, postgres_url, capsys, monkeypatch):
    wf = write_workflow(tmp_path, FIRST_WF)
    assert main(["run", wf, "--db", postgres_url, "--run-id", "r1", "--runner", "serial", "--json"]) == 0
    assert json_out(capsys)["status"] == "succeeded"
    monkeypatch.setenv("FLOWCORE_DB", postgres_url)  # the environment names it as well as --db
    assert main(["submit", wf, "--run-id", "q1"]) == 0
    assert capsys.readouterr().out == "q1\n"
    assert main(["runs", "--status", "queued", "--json"]) == 0
    assert [r["run_id"] for r in json_out(capsys)] == ["q1"]
    assert main(["worker", "--once"]) == 0
    assert main(["status", "q1", "--json"]) == 0
    assert json_out(capsys)["status"] == "succeeded"
    assert main(["runs"]) == 0
    assert "postgresql://" in capsys.readouterr().out  # the table is titled by the store
    assert main(["status", "nope"]) == 2
    assert "no run with id 'nope'" in capsys.readouterr().err


def test_a_new_store_records_its_schema_version(postgres_url):
    from adapters.postgres_store import SCHEMA_VERSION

    open_store(postgres_url).close()
    assert pg_support.execute(postgres_url, "SELECT version FROM flowcore_schema") == [(SCHEMA_VERSION,)]
    assert tables(postgres_url) == {"flowcore_schema", "runs", "definitions", "batches", "snapshots", "leases", "inbox"}


def test_a_store_of_a_newer_schema_is_refused(postgres_url, capsys):
    from adapters.postgres_store import SCHEMA_VERSION

    open_store(postgres_url).close()
    pg_support.execute(postgres_url, "UPDATE flowcore_schema SET version = %s", (SCHEMA_VERSION + 1,))
    assert main(["runs", "--db", postgres_url]) == 2
    assert "newer flowcore" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["runs"], ["status", "r1"], ["resume", "r1"], ["run", "WF"], ["worker", "--once"]])
def test_another_applications_schema_is_refused_and_left_unchanged(tmp_path, postgres_url, capsys, command):
    pg_support.execute(postgres_url, "CREATE TABLE contacts (name text, email text)")
    pg_support.execute(postgres_url, "INSERT INTO contacts VALUES ('Ada', 'ada@example.com')")
    wf = write_workflow(tmp_path, FIRST_WF)
    assert main([wf if arg == "WF" else arg for arg in command] + ["--db", postgres_url]) == 2
    err = capsys.readouterr().err
    assert "not a flowcore store" in err and "Traceback" not in err
    assert tables(postgres_url) == {"contacts"}
    assert pg_support.execute(postgres_url, "SELECT * FROM contacts") == [("Ada", "ada@example.com")]


def test_read_commands_on_an_empty_schema_find_no_runs_and_create_nothing(postgres_url, capsys):
    assert main(["runs", "--db", postgres_url, "--json"]) == 0
    assert json_out(capsys) == []
    assert main(["status", "r1", "--db", postgres_url]) == 2
    assert "no run with id 'r1'" in capsys.readouterr().err
    assert main(["resume", "r1", "--db", postgres_url]) == 2
    assert main(["cancel", "r1", "--db", postgres_url]) == 2
    assert tables(postgres_url) == set()


def test_a_schema_that_does_not_exist_has_no_runs_and_is_not_made_a_store(tmp_path, capsys):
    url = pg_support.in_schema(pg_support.require_server(), "flowcore_test_no_such_schema")
    assert main(["runs", "--db", url, "--json"]) == 0
    assert json_out(capsys) == []
    wf = write_workflow(tmp_path, FIRST_WF)
    assert main(["run", wf, "--db", url, "--runner", "serial"]) == 2
    err = capsys.readouterr().err
    assert "CREATE SCHEMA" in err and "Traceback" not in err


def test_a_database_that_cannot_be_reached_is_a_store_error_without_the_password(capsys):
    base = pg_support.require_server()
    url = base.replace("://", "://nobody:s3cret@", 1).rsplit("/", 1)[0] + "/flowcore_no_such_database"
    assert main(["runs", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "flowcore_no_such_database" in err and "s3cret" not in err and "Traceback" not in err


def test_several_processes_making_the_store_at_once_make_it_once(postgres_url):
    code = "import sys; from adapters.store import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], env=child_env(), stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    from adapters.postgres_store import SCHEMA_VERSION

    assert pg_support.execute(postgres_url, "SELECT version FROM flowcore_schema") == [(SCHEMA_VERSION,)]


NO_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if it were not installed
from adapters.cli import main
code = main(["runs", "--db", sys.argv[1]])
from adapters import Engine
from adapters.store import StoreUnavailable
try:
    Engine(db=sys.argv[1])
except StoreUnavailable as exc:
    print("engine:", exc)
sys.exit(code)
"""


def test_without_psycopg_a_postgres_url_is_refused_with_what_to_install():
    """No server needed: the store is refused before anything connects."""
    proc = subprocess.run([sys.executable, "-c", NO_PSYCOPG, "postgresql://nobody@127.0.0.1:1/none"],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'flowcore[postgres]'" in proc.stderr and "Traceback" not in proc.stderr
    assert "engine: a postgresql:// store needs the optional 'psycopg' package" in proc.stdout


def test_a_url_shown_in_messages_hides_its_password():
    from adapters.postgres_store import shown_url

    assert shown_url("postgresql://ann:pw@db.example:5432/x?sslmode=require") == \
        "postgresql://ann:***@db.example:5432/x?sslmode=require"
    assert shown_url("postgresql://ann@db.example/x") == "postgresql://ann@db.example/x"


# -- wakeups -----------------------------------------------------------------------------------------

def test_work_is_announced_on_submit_request_and_a_run_let_go_unfinished(postgres_url):
    listener, writer = open_store(postgres_url), open_store(postgres_url)
    try:
        assert listener.wait_for_work(0) is False  # listening from now on
        writer.create_run(info("q", status="queued"), [], "")
        assert listener.wait_for_work(10) is True
        writer.create_run(info("r"), [], "")  # not queued: created by its own driver, nothing said
        assert listener.wait_for_work(0.2) is False
        writer.post("r", "cancel", {"reason": "x"}, at=time.time())
        assert listener.wait_for_work(10) is True
        me = Lease.mine()
        writer.acquire("r", me)
        writer.release("r", me)
        assert listener.wait_for_work(10) is True
        writer.update("r", {"status": "succeeded"})
        writer.acquire("r", me)
        writer.release("r", me)  # ended: nobody needs to hear of it
        assert listener.wait_for_work(0.2) is False
    finally:
        listener.close()
        writer.close()


def test_a_store_in_another_schema_does_not_wake_this_ones_workers(postgres_url):
    listener = open_store(postgres_url)
    try:
        assert listener.wait_for_work(0) is False
        with pg_support.fresh_schema(pg_support.require_server()) as (other_url, _):
            other = open_store(other_url)
            other.create_run(info("q", status="queued"), [], "")
            other.close()
        assert listener.wait_for_work(0.3) is False
    finally:
        listener.close()


def test_a_worker_hears_of_a_submitted_run_and_an_answer_at_once(postgres_url):
    """Its poll is 30 s here: only the announcement can wake it in time."""
    e = Engine(db=postgres_url, linger=0)
    worker = Worker(Engine(db=postgres_url), poll=30.0, linger=0)
    t = threading.Thread(target=worker.run_forever)
    t.start()
    try:
        time.sleep(0.5)  # the worker has looked once and is listening
        e.submit(FIRST_WF, run_id="q")
        deadline = time.monotonic() + 10
        while e.status("q").status != "succeeded":
            assert time.monotonic() < deadline, f"still {e.status('q').status} after 10 s"
            time.sleep(0.05)
        ask = {"name": "ask", "nodes": [{"id": "ask", "type": "hil"}, {"id": "then", "type": "noop"}],
               "connections": [{"from": "ask", "to": "then"}]}
        e.submit(ask, run_id="a")
        deadline = time.monotonic() + 10
        while e.status("a").status != "waiting" or e.store.driver("a") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        e.store.post("a", "answer", {"node": "ask", "item": [], "port": None, "value": 1}, at=time.time())
        deadline = time.monotonic() + 10
        while e.status("a").status != "succeeded":
            assert time.monotonic() < deadline, "the answer was not applied within 10 s"
            time.sleep(0.05)
    finally:
        worker.stop()
        t.join(30)


# -- fencing against a takeover under way ---------------------------------------------------------------

def test_a_step_logged_while_another_takes_the_run_over_waits_and_is_refused(postgres_url):
    """The takeover's transaction holds the lease row; the old driver's append waits for it and then
    finds another token: LeaseLost, nothing written."""
    import psycopg

    store = open_store(postgres_url)
    try:
        old = Lease(pid=1, host="old.example", token="old")
        store.acquire("r", old)
        store.create_run(info("r"), [], "")
        with psycopg.connect(postgres_url) as conn:  # a transaction: the takeover under way
            conn.execute("SELECT 1 FROM leases WHERE run_id = 'r' FOR UPDATE")
            conn.execute("UPDATE leases SET token = 'new', host = 'new.example' WHERE run_id = 'r'")
            outcome = {}

            def log_a_step():
                try:
                    store.append("r", 0, [], "f0", {"status": "failed"}, lease=old)
                    outcome["done"] = "appended"
                except LeaseLost:
                    outcome["done"] = "refused"
            t = threading.Thread(target=log_a_step)
            t.start()
            time.sleep(0.5)
            assert t.is_alive() and not outcome  # waits for the takeover to commit or roll back
            conn.commit()
        t.join(10)
        assert outcome == {"done": "refused"}
        assert store.load("r")[1] == [] and store.info("r").status == "running"
    finally:
        store.close()


def test_a_takeover_waits_for_a_step_being_logged(postgres_url):
    import psycopg

    store = open_store(postgres_url)
    try:
        old = Lease(pid=1, host="old.example", token="old")
        store.acquire("r", old)
        pg_support.execute(postgres_url, "UPDATE leases SET heartbeat = 0 WHERE run_id = 'r'")  # ran out long ago
        with psycopg.connect(postgres_url) as conn:  # the old driver's append, under way
            conn.execute("SELECT 1 FROM leases WHERE run_id = 'r' AND token = 'old' FOR KEY SHARE")
            took = threading.Event()
            t = threading.Thread(target=lambda: (store.acquire("r", Lease(pid=2, host="new.example", token="new")),
                                                 took.set()))
            t.start()
            assert not took.wait(0.5)
            conn.commit()
        assert took.wait(10)
        t.join(10)
        assert store.driver("r").token == "new"
    finally:
        store.close()


def test_a_store_error_names_the_store(postgres_url):
    store = open_store(postgres_url)
    try:
        pg_support.execute(postgres_url, "DROP TABLE inbox")
        with pytest.raises(StoreError, match="postgresql://"):
            store.pending("r")
    finally:
        store.close()
