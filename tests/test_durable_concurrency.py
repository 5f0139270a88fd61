"""Many processes, one SQLite file: no lost or interleaved events, and one driver per run.

The leases are exercised with real processes: a live ``flowcore run``, a killed one, and lease rows
written as if by a process on another machine (fresh or stale heartbeat).
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import durable_nodes
from adapters import Engine
from adapters.store import LEASE_SECONDS
from durable_nodes import child_env, dead_pid, flowcore, snapshot

PROCESSES, RUNS_EACH = 4, 25


def test_many_processes_drive_many_runs_in_one_file_without_losing_an_event(tmp_path):
    db = str(tmp_path / "flowcore.db")
    children = [subprocess.Popen([sys.executable, durable_nodes.__file__, db, f"p{p}", str(RUNS_EACH)],
                                 cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for p in range(PROCESSES)]
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err
        assert "locked" not in err
        assert set(json.loads(out).values()) == {"succeeded"}

    engine = Engine(db=db)
    runs = engine.runs()
    assert len(runs) == PROCESSES * RUNS_EACH and {r["status"] for r in runs} == {"succeeded"}
    conn = sqlite3.connect(db)
    for run in runs:
        p, i = run["run_id"][1:].split("-")
        indices = [idx for (idx,) in conn.execute("SELECT idx FROM batches WHERE run_id = ? ORDER BY idx",
                                                  (run["run_id"],))]
        assert indices == list(range(len(indices))), run["run_id"]
        result = engine.status(run["run_id"])  # replays the log, checking every decision
        i = int(i)
        assert result.record("end")["output"] == [30 * (i + 1), [i, i + 1, i + 2]]
        succeeded = [e for e in durable_nodes.logged_events(db, run["run_id"]) if e["type"] == "NodeSucceeded"]
        assert len(succeeded) == len({(e["node"], tuple(e["item"])) for e in succeeded}) == 8
    assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0


def test_many_processes_opening_a_new_file_at_once_all_get_it(tmp_path):
    db = str(tmp_path / "fresh.db")
    script = ("import sys; from adapters.store import SqliteStore; s = SqliteStore(sys.argv[1]); "
              "print(len(s.runs()))")
    children = [subprocess.Popen([sys.executable, "-c", script, db], env=child_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert (child.returncode, out.strip()) == (0, "0"), err


# -- one driver per run -----------------------------------------------------------------------------

SLOW = {"name": "slow", "nodes": [{"id": "pause", "type": "delay", "seconds": 30}, {"id": "after", "type": "noop"}],
        "connections": [{"from": "pause", "to": "after"}]}


def start_slow_run(tmp_path, run_id="r1") -> subprocess.Popen:
    path = durable_nodes.write_workflow(tmp_path, SLOW)
    child = subprocess.Popen(flowcore("run", path, "--run-id", run_id), cwd=tmp_path, env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while durable_nodes.batch_count(str(tmp_path / "flowcore.db"), run_id) < 1:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    return child


def resume_cli(tmp_path, *args):
    return subprocess.run(flowcore("resume", *args), cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)


def test_a_second_resume_of_a_run_a_live_process_drives_is_refused(tmp_path):
    child = start_slow_run(tmp_path)
    try:
        before = snapshot(str(tmp_path / "flowcore.db"))
        done = resume_cli(tmp_path, "r1")
        assert done.returncode == 2
        assert f"being driven by process {child.pid}" in " ".join(done.stderr.split())
        assert snapshot(str(tmp_path / "flowcore.db")) == before
    finally:
        child.kill()
        child.wait()


def test_a_run_whose_driver_died_on_this_host_is_resumed_at_once(tmp_path):
    child = start_slow_run(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = resume_cli(tmp_path, "r1", "--linger", "0", "--json")
    assert done.returncode == 3, done.stderr  # taken over; the delay is still 30 s away
    assert json.loads(done.stdout)["status"] == "waiting"


def write_foreign_lease(db: str, run_id: str, heartbeat: float) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)",
                     (run_id, 4242, "another-machine.example", "foreign", heartbeat))
    conn.close()


@pytest.fixture
def waiting_slow_run(tmp_path):
    path = durable_nodes.write_workflow(tmp_path, SLOW)
    done = subprocess.run(flowcore("run", path, "--run-id", "r1", "--linger", "0"), cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    return str(tmp_path / "flowcore.db")


def test_a_lease_from_another_host_is_respected_while_its_heartbeat_is_fresh(tmp_path, waiting_slow_run):
    write_foreign_lease(waiting_slow_run, "r1", time.time())
    before = snapshot(waiting_slow_run)
    done = resume_cli(tmp_path, "r1", "--linger", "0")
    assert done.returncode == 2
    assert "another-machine.example" in done.stderr
    assert snapshot(waiting_slow_run) == before


def test_a_lease_from_another_host_is_taken_over_once_it_ran_out(tmp_path, waiting_slow_run):
    write_foreign_lease(waiting_slow_run, "r1", time.time() - LEASE_SECONDS - 1)
    done = resume_cli(tmp_path, "r1", "--linger", "0")
    assert done.returncode == 3, done.stderr
    assert sqlite3.connect(waiting_slow_run).execute("SELECT count(*) FROM leases").fetchone()[0] == 0


def test_a_finished_drive_gives_its_lease_back(waiting_slow_run):
    assert sqlite3.connect(waiting_slow_run).execute("SELECT count(*) FROM leases").fetchone()[0] == 0


def test_a_lease_left_by_a_dead_process_of_this_host_is_taken_over(tmp_path, waiting_slow_run):
    conn = sqlite3.connect(waiting_slow_run)
    with conn:  # fresh heartbeat, but this host can see that its process is gone
        conn.execute("INSERT INTO leases VALUES ('r1', ?, ?, 'gone', ?)", (dead_pid(), socket.gethostname(), time.time()))
    conn.close()
    assert resume_cli(tmp_path, "r1", "--linger", "0").returncode == 3


def test_the_memory_store_drives_concurrent_runs_in_one_process():
    engine = Engine(runner="thread")
    definition = durable_nodes.fan_workflow(os.devnull, sleep=0.0)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: engine.run(definition, trigger=[i], run_id=f"m{i}"), range(16)))
    assert {r.status for r in results} == {"succeeded"}
    assert all(engine.status(f"m{i}").record("join")["output"] == 10 * i for i in range(16))



def test_a_store_another_process_is_still_creating_is_waited_for_not_refused(tmp_path):
    """While another connection holds the new file's write lock (it is creating the store), switching
    to WAL is answered 'database is locked' at once, whatever the busy timeout: opening the store
    waits for the lock instead of failing ('not a usable flowcore database (database is locked)',
    seen as a lost `flowcore run` when several started at once on a new store)."""
    import threading

    from adapters.store import SqliteStore

    path = str(tmp_path / "new.db")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE being_made (x)")
    threading.Timer(0.5, lambda: (other.execute("ROLLBACK"), other.close())).start()
    store = SqliteStore(path)
    assert store.runs() == []


def test_writers_of_other_processes_take_turns_on_the_stores_lock_file(tmp_path):
    """Writers queue on a kernel lock (``store.WriterQueue``: flock of ``PATH-lock``) before SQLite's
    own lock, so a waiting one is woken when it is let go instead of sleeping in SQLite's busy handler.
    Here another process holds that lock: a write waits for it, and goes through once it is let go."""
    import threading

    from adapters.store import SqliteStore

    path = str(tmp_path / "turns.db")
    store = SqliteStore(path)
    assert not os.path.exists(f"{path}-lock")  # made on the first write
    run_id = Engine(db=path).submit(SLOW)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
                               f"{path}-lock"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        wrote = threading.Event()
        writer = threading.Thread(target=lambda: (store.post(run_id, "cancel", {}, 0.0), wrote.set()))
        writer.start()
        assert not wrote.wait(0.5), "the write went through while another process held the writers' lock"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert wrote.wait(30), "the write did not go through once the lock was let go"
        writer.join()
    finally:
        holder.kill()
        holder.wait()
    assert oct(os.stat(f"{path}-lock").st_mode & 0o777) == "0o600"
