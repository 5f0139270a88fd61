"""Live runs through the command line, with real processes: ``flowcore worker`` picking up submitted
runs, answers and cancels from other processes, SIGTERM and SIGKILL of a worker mid-run, and what
``flowcore status`` says of a run no live process drives.

Each test has its own folder and store; every process a test starts is killed when it ends (the
``ws`` fixture). The machine may be loaded: the tests poll for what must happen, with generous
timeouts, and assert that it happened, never how fast, except where the contract promises an order
of magnitude (an answer applied within a few seconds, a worker gone within its grace period).
"""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

import live_nodes
from live_nodes import child_env, flowcore, kill_all, marks, py, wait_for, write_workflow

SLOW = 60  # seconds: the bound on anything that must happen "soon" on a loaded machine




class Workspace:
    """A folder with its own store; runs ``flowcore`` there and remembers every process it starts."""

    def __init__(self, path):
        self.path = path
        self.db = str(path / "flowcore.db")
        self.marker = str(path / "marks.txt")
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, str] = {}

    def flowcore(self, *args, timeout: float = SLOW, db: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(flowcore(*args, *(("--db", self.db) if db else ())), cwd=self.path, env=child_env(),
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, *args, name: str | None = None) -> subprocess.Popen:
        """Start ``flowcore ARGS --db DB`` in the background; its stdout and stderr go to files."""
        name = name or f"{args[0]}-{len(self.procs)}"
        out = open(self.path / f"{name}.out", "w")
        err = open(self.path / f"{name}.err", "w")
        try:
            proc = subprocess.Popen(flowcore(*args, "--db", self.db), cwd=self.path, env=child_env(), stdout=out,
                                    stderr=err, start_new_session=True)
        finally:
            out.close()
            err.close()
        self.procs.append(proc)
        self.logs[proc.pid] = name
        return proc

    def worker(self, *args, name: str | None = None) -> subprocess.Popen:
        return self.spawn("worker", *args, name=name or f"worker-{len(self.procs)}")

    def out(self, proc) -> str:
        return (self.path / f"{self.logs[proc.pid]}.out").read_text()

    def err(self, proc) -> str:
        return (self.path / f"{self.logs[proc.pid]}.err").read_text()

    def workflow(self, definition: dict) -> str:
        return write_workflow(self.path, definition)

    def submit(self, path: str, *args) -> str:
        done = self.flowcore("submit", path, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def run_dict(self, run_id: str) -> dict:
        """The run as the store has it (read in this process: cheaper than a ``flowcore status`` to poll)."""
        from adapters import Engine
        from adapters.store import SqliteStore

        store = SqliteStore(self.db, create=False)
        try:
            return Engine(store=store).status(run_id).to_dict()
        finally:
            store.close()

    def status(self, run_id: str) -> str:
        return live_nodes.run_rows(self.db).get(run_id, "")

    def until_status(self, run_id: str, *statuses: str, timeout: float = SLOW) -> str:
        return wait_for(lambda: self.status(run_id) in statuses and self.status(run_id), timeout,
                        f"run {run_id} to be {' or '.join(statuses)} (it is {self.status(run_id)!r})")

    def until_marked(self, node: str, suffix: str = ".start", count: int = 1, timeout: float = SLOW):
        return wait_for(lambda: [m for m in marks(self.marker + suffix) if m[1] == node][count - 1:], timeout,
                        f"{count} mark(s) of {node} in {self.marker + suffix}")

    def done_marks(self, run_id: str, node: str) -> list[tuple]:
        return [m for m in marks(self.marker) if m[0] == run_id and m[1] == node]

    def close(self) -> None:
        kill_all(list(self.procs))


@pytest.fixture
def ws(tmp_path):
    space = Workspace(tmp_path)
    try:
        yield space
    finally:
        space.close()


def records(run: dict) -> dict:
    return {(r["node"] if not r["item"] else f"{r['node']}{r['item']}"): r for r in run["nodes"]}


def chain(name: str, marker: str, *nodes: dict) -> dict:
    """A workflow whose nodes run one after the other."""
    return {"name": name, "nodes": list(nodes),
            "connections": [{"from": a["id"], "to": b["id"]} for a, b in zip(nodes, nodes[1:])]}


# -- a worker and submitted runs ------------------------------------------------------------------

def test_a_worker_picks_up_submitted_runs_and_runs_filters_them(ws):
    quick = ws.workflow(chain("quick", ws.marker, py("a", ws.marker, sleep=0.1), py("b", ws.marker)))
    other = ws.workflow(chain("other", ws.marker, py("a", ws.marker)))
    submitted = [ws.submit(quick), ws.submit(other), ws.submit(quick, "--run-id", "q-3"), ws.submit(quick)]
    done = ws.flowcore("submit", other, "--json")
    assert done.returncode == 0, done.stderr
    submitted.append(json.loads(done.stdout)["run_id"])
    assert json.loads(done.stdout)["status"] == "queued"
    assert submitted[2] == "q-3"

    def listed(*args):
        done = ws.flowcore("runs", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [r["run_id"] for r in json.loads(done.stdout)]

    assert listed("--status", "queued") == submitted  # oldest first
    assert listed("--status", "succeeded") == []
    assert listed("--workflow", "other") == [submitted[1], submitted[4]]
    assert listed("--limit", "2") == submitted[3:]  # the newest two
    assert listed("--status", "queued", "--workflow", "quick", "--limit", "2") == [submitted[2], submitted[3]]
    assert marks(ws.marker + ".start") == []  # nothing ran on submit

    worker = ws.worker()
    for run_id in submitted:
        ws.until_status(run_id, "succeeded", "failed", "cancelled")
    assert {run_id: ws.status(run_id) for run_id in submitted} == dict.fromkeys(submitted, "succeeded")
    assert worker.poll() is None, ws.err(worker)

    assert listed("--status", "succeeded") == submitted
    assert listed("--status", "queued") == []
    assert listed("--status", "succeeded", "--workflow", "quick", "--limit", "1") == [submitted[3]]
    # each node of each run ran once, in the worker
    done_marks = marks(ws.marker)
    expected = sorted([(r, n) for r in submitted for n in (("a", "b") if r not in (submitted[1], submitted[4])
                                                           else ("a",))])
    assert sorted((m[0], m[1]) for m in done_marks) == expected
    assert {m[3] for m in done_marks} == {worker.pid}


def test_a_parked_delay_completes_by_itself_with_a_worker_running(ws):
    """The delay outlasts the worker's linger (1 s): the worker lets the run go, waiting, and drives it
    again when the timer falls due; nobody resumes it."""
    path = ws.workflow(chain("later", ws.marker, py("a", ws.marker), {"id": "pause", "type": "delay", "seconds": 3.5},
                             py("b", ws.marker)))
    worker = ws.worker()
    run_id = ws.submit(path)
    ws.until_status(run_id, "waiting")  # let go while the timer runs
    assert ws.done_marks(run_id, "b") == []
    ws.until_status(run_id, "succeeded", "failed", "cancelled")
    run = ws.run_dict(run_id)
    assert run["status"] == "succeeded"
    pause = records(run)["pause"]
    assert pause["status"] == "succeeded" and pause["finished_at"] - pause["started_at"] >= 3.5 - 0.01
    assert [m[3] for m in ws.done_marks(run_id, "b")] == [worker.pid]
    assert "waiting" in ws.err(worker) and "succeeded" in ws.err(worker)


# -- answers --------------------------------------------------------------------------------------

def approval(name: str, marker: str, timeout: float, side_delay: float | None = None) -> dict:
    """``ask`` (ship or hold) -> ``s`` on ship, ``h`` on hold, ``t`` on timeout; a delay beside it."""
    nodes = [{"id": "ask", "type": "hil", "prompt": "ship it?", "choices": ["ship", "hold"], "timeout": timeout},
             py("s", marker), py("h", marker), py("t", marker)]
    connections = [{"from": "ask", "to": "s", "port": "ship"}, {"from": "ask", "to": "h", "port": "hold"},
                   {"from": "ask", "to": "t", "port": "timeout"}]
    if side_delay is not None:
        nodes.append({"id": "side", "type": "delay", "seconds": side_delay})
    return {"name": name, "nodes": nodes, "connections": connections}


def test_an_answer_from_another_process_is_applied_while_flowcore_run_drives_the_run(ws):
    path = ws.workflow(approval("answered", ws.marker, timeout=30, side_delay=0.5))
    run = ws.spawn("run", path, "--run-id", "R1", "--json", name="run")
    wait_for(lambda: "ask waits for an answer" in ws.err(run), SLOW, "flowcore run to say that ask waits")
    assert run.poll() is None, ws.err(run)  # it lingers: the hil's timeout is within its linger time

    t0 = time.monotonic()
    done = ws.flowcore("resume", "R1", "--node", "ask", "--port", "ship", "--input", '"x"', "--wait", "10")
    took = time.monotonic() - t0
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert "applied by" in done.stderr
    assert took < 15, f"the answer took {took:.1f} s to be applied"

    assert run.wait(timeout=SLOW) == 0, ws.err(run)
    result = json.loads(ws.out(run))
    assert result["status"] == "succeeded"
    by = records(result)
    assert by["ask"]["status"] == "succeeded" and by["ask"]["ports"] == {"ship": "x", "result": "x"}
    assert by["s"]["status"] == "succeeded" and by["s"]["output"] == "x"
    assert by["h"]["status"] == by["t"]["status"] == "skipped"
    assert by["side"]["status"] == "succeeded"
    assert [m[3] for m in ws.done_marks("R1", "s")] == [run.pid]


def late_answer(ws) -> subprocess.CompletedProcess:
    """A hil with a 1 s timeout, parked with no driver (``run --linger 0`` exits 3), answered once
    the timeout is overdue: what ``flowcore resume --node`` did."""
    path = ws.workflow(approval("late", ws.marker, timeout=1))
    done = ws.flowcore("run", path, "--run-id", "L1", "--linger", "0")
    assert done.returncode == 3, done.stderr  # waiting, no driver left
    parked = records(ws.run_dict("L1"))["ask"]
    assert parked["status"] == "waiting"
    wait_for(lambda: time.time() > parked["started_at"] + 1.5, 10, "the hil's timeout to be overdue")
    return ws.flowcore("resume", "L1", "--node", "ask", "--port", "ship", "--input", '"x"', "--wait", "30")


def test_a_late_answer_after_an_overdue_timeout_is_refused_and_the_timeout_branch_runs(ws):
    """The hil's timeout falls due while no process drives the run; an answer given after that is
    refused (the timer fires first, in time order), and the run goes the timeout way."""
    done = late_answer(ws)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    ws.until_status("L1", "succeeded", "failed", "cancelled")
    by = records(ws.run_dict("L1"))
    assert by["ask"]["status"] == "succeeded" and set(by["ask"]["ports"]) == {"timeout"}
    assert by["t"]["status"] == "succeeded"
    assert by["s"]["status"] == "skipped"
    assert ws.done_marks("L1", "s") == []
    status = ws.flowcore("status", "L1")
    assert status.returncode == 0 and "succeeded" in status.stdout


def test_the_refusal_of_a_late_answer_says_the_node_timed_out(ws):
    done = late_answer(ws)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "timed out" in done.stderr, done.stderr


# -- cancels --------------------------------------------------------------------------------------

def assert_cancelled(run: dict, reason: str) -> None:
    assert run["status"] == "cancelled"
    assert run["error"] == {"node": None, "type": "cancelled", "message": reason}


def test_cancel_of_a_queued_run_cancels_every_record(ws):
    path = ws.workflow(chain("queued", ws.marker, py("a", ws.marker), py("b", ws.marker)))
    run_id = ws.submit(path)
    done = ws.flowcore("cancel", run_id, "--reason", "not needed any more", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert_cancelled(run, "not needed any more")
    assert [r["status"] for r in run["nodes"]] == ["cancelled", "cancelled"]
    assert ws.status(run_id) == "cancelled"
    assert_cancelled(ws.run_dict(run_id), "not needed any more")
    # a worker started afterwards has nothing to do with it
    done = ws.flowcore("worker", "--once")
    assert done.returncode == 0, done.stderr
    assert marks(ws.marker + ".start") == []
    assert ws.status(run_id) == "cancelled"


def test_cancel_of_a_run_a_worker_drives_stops_its_attempt(ws):
    path = ws.workflow(chain("long", ws.marker, py("a", ws.marker, sleep=30), py("b", ws.marker)))
    worker = ws.worker()
    run_id = ws.submit(path)
    ws.until_marked("a")
    t0 = time.monotonic()
    done = ws.flowcore("cancel", run_id, "--reason", "stop it", "--json")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 25  # not after the attempt's 30 s
    ws.until_status(run_id, "cancelled", "succeeded", "failed")
    run = ws.run_dict(run_id)
    assert_cancelled(run, "stop it")
    by = records(run)
    assert by["a"]["status"] == "cancelled" and by["b"]["status"] == "cancelled"
    ws.until_marked("a", ".cancelled")  # the node saw ctx.cancelled
    assert ws.done_marks(run_id, "a") == [] and ws.done_marks(run_id, "b") == []
    assert worker.poll() is None, ws.err(worker)


def test_cancel_of_a_parked_run_no_one_drives(ws):
    path = ws.workflow(approval("parked", ws.marker, timeout=3600, side_delay=3600))
    done = ws.flowcore("run", path, "--run-id", "P1", "--linger", "0")
    assert done.returncode == 3, done.stderr
    done = ws.flowcore("cancel", "P1", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert_cancelled(run, "cancelled by request")
    by = records(run)
    assert by["ask"]["status"] == "cancelled" and by["side"]["status"] == "cancelled"
    assert ws.status("P1") == "cancelled"
    assert ws.flowcore("worker", "--once").returncode == 0
    assert ws.status("P1") == "cancelled" and marks(ws.marker + ".start") == []


def test_cancel_of_a_finished_run_is_refused(ws):
    path = ws.workflow(chain("done", ws.marker, py("a", ws.marker)))
    assert ws.flowcore("run", path, "--run-id", "F1").returncode == 0
    done = ws.flowcore("cancel", "F1")
    assert done.returncode == 2
    assert "already finished" in done.stderr
    assert ws.status("F1") == "succeeded"


def test_cancel_of_one_waiting_node_lets_the_run_go_on_and_succeed(ws):
    path = ws.workflow({
        "name": "partial",
        "nodes": [{"id": "ask", "type": "hil", "prompt": "extra step?"}, py("after_ask", ws.marker),
                  py("p", ws.marker, sleep=0.5), {"id": "pause", "type": "delay", "seconds": 1.5},
                  py("q", ws.marker)],
        "connections": [{"from": "ask", "to": "after_ask"}, {"from": "p", "to": "pause"},
                        {"from": "pause", "to": "q"}]})
    ws.worker()
    run_id = ws.submit(path)
    wait_for(lambda: records(ws.run_dict(run_id))["ask"]["status"] == "waiting", SLOW, "ask to wait for its answer")
    done = ws.flowcore("cancel", run_id, "--node", "ask", "--reason", "skip the extra step")
    assert done.returncode == 0, done.stderr
    ws.until_status(run_id, "succeeded", "failed", "cancelled")
    run = ws.run_dict(run_id)
    assert run["status"] == "succeeded" and run["error"] is None
    by = records(run)
    assert by["ask"]["status"] == "cancelled"
    assert by["ask"]["error"]["type"] == "cancelled" and by["ask"]["error"]["message"] == "skip the extra step"
    assert by["after_ask"]["status"] == "skipped"
    assert by["q"]["status"] == "succeeded"
    # nothing left of it to cancel: refused
    done = ws.flowcore("cancel", run_id, "--node", "ask")
    assert done.returncode == 2


# -- stopping and killing workers -----------------------------------------------------------------

def test_sigterm_lets_the_attempt_in_flight_finish_and_another_worker_finishes_the_run(ws):
    grace = 5.0
    path = ws.workflow(chain("drained", ws.marker, py("a", ws.marker, sleep=1.5), py("b", ws.marker)))
    first = ws.worker("--grace", grace)
    run_id = ws.submit(path)
    ws.until_marked("a")
    t0 = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=grace + 30) == 0, ws.err(first)
    took = time.monotonic() - t0
    assert took < grace + 10, f"the worker took {took:.1f} s to stop"
    # the attempt finished within the grace period and its result was recorded; nothing new started
    assert ("a", 1) in live_nodes.completions(ws.db, run_id)
    assert [m[3] for m in ws.done_marks(run_id, "a")] == [first.pid]
    assert marks(ws.marker + ".start").count((run_id, "b", 1, first.pid)) == 0

    t1 = time.monotonic()
    second = ws.worker()
    ws.until_status(run_id, "succeeded", "failed", "cancelled")
    assert ws.status(run_id) == "succeeded"
    assert time.monotonic() - t1 < 20
    assert [m[3] for m in ws.done_marks(run_id, "a")] == [first.pid]  # not run again
    assert [m[3] for m in ws.done_marks(run_id, "b")] == [second.pid]


def test_a_sigkilled_worker_s_run_is_finished_by_another_without_repeating_completed_nodes(ws):
    path = ws.workflow(chain("killed", ws.marker, py("a", ws.marker), py("b", ws.marker),
                             py("c", ws.marker, sleep=4), py("d", ws.marker)))
    first = ws.worker()
    run_id = ws.submit(path)
    ws.until_marked("c")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=SLOW)
    before = set(live_nodes.completions(ws.db, run_id))
    assert {("a", 1), ("b", 1)} <= before and ("c", 1) not in before

    second = ws.worker()
    ws.until_status(run_id, "succeeded", "failed", "cancelled")
    assert ws.status(run_id) == "succeeded"
    pids = {node: [m[3] for m in ws.done_marks(run_id, node)] for node in "abcd"}
    assert pids == {"a": [first.pid], "b": [first.pid], "c": [second.pid], "d": [second.pid]}
    started_c = [m[3] for m in marks(ws.marker + ".start") if m[:2] == (run_id, "c")]
    assert started_c == [first.pid, second.pid]  # the attempt in flight at the kill started again


# -- status of a run no live process drives -------------------------------------------------------

def test_status_of_a_run_whose_driver_was_killed_says_how_it_continues(ws):
    timer = ws.workflow(chain("timed", ws.marker, py("a", ws.marker), {"id": "pause", "type": "delay", "seconds": 40},
                              py("b", ws.marker)))
    asked = ws.workflow({"name": "asked",
                         "nodes": [{"id": "ask", "type": "hil", "prompt": "go on?"}, py("slow", ws.marker, sleep=60)],
                         "connections": []})
    drivers = [ws.spawn("run", timer, "--run-id", "T1", name="run-timer"),
               ws.spawn("run", asked, "--run-id", "A1", name="run-asked")]
    wait_for(lambda: ws.status("T1") and records(ws.run_dict("T1"))["pause"]["status"] == "waiting", SLOW,
             "the delay to start")
    wait_for(lambda: ws.status("A1") and records(ws.run_dict("A1"))["ask"]["status"] == "waiting", SLOW,
             "ask to wait")
    ws.until_marked("slow")
    driven = ws.flowcore("status", "T1")
    assert driven.returncode == 0 and f"driven by process {drivers[0].pid}" in driven.stdout, driven.stdout
    for proc in drivers:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=SLOW)

    timed = ws.flowcore("status", "T1")
    assert timed.returncode == 0, timed.stderr
    assert "no live process drives this run" in timed.stdout, timed.stdout
    assert "next timer due" in timed.stdout and "(in " in timed.stdout, timed.stdout
    assert "flowcore worker" in timed.stdout and "flowcore resume T1" in timed.stdout

    waiting = ws.flowcore("status", "A1")
    assert waiting.returncode == 0, waiting.stderr
    assert "no live process drives this run" in waiting.stdout, waiting.stdout
    assert "ask awaits an answer (go on?)" in waiting.stdout, waiting.stdout
    assert "were running when their process stopped" in waiting.stdout, waiting.stdout
    assert "flowcore worker" in waiting.stdout
