"""A soak of live runs: three ``flowcore worker`` processes on one SQLite store drive a few hundred
submitted runs of several workflows (delays, retries, answers and cancels from other processes),
while one of the workers is SIGKILLed and replaced every few seconds.

Each run's script says how it must end; every run must end so. And from the store's log and the
side effects the nodes leave (each python node appends ``run_id node attempt pid`` to a marker file
when its attempt is done):

- a completion the log holds was done exactly once by the process that logged it; an attempt done
  again is one whose completion was never logged (its process was killed, or the run was cancelled
  under it);
- a run's log was written by one process at a time: its batch indexes are contiguous, and a trigger
  this test installs on the batches table records whose lease each batch was written under, which
  never goes back to an earlier holder, and is the process that did the work each batch reports.

About 60 s by default (what CI runs); ``--soak-seconds N`` or ``FLOWCORE_SOAK_SECONDS=N`` for a
longer one (more runs, the same mix). ``FLOWCORE_SOAK_SEED`` replays a mix.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict

import pytest

import live_nodes
from live_nodes import child_env, flowcore, kill_all, marks, py, write_workflow

RUNS_PER_MINUTE = 300  # submitted over the first 60 % of the soak
WORKERS = 3
KILL_EVERY = (2.0, 4.0)  # seconds between two SIGKILLs of a worker, drawn at random




def workflows(directory, marker: str) -> dict[str, str]:
    """The soak's workflow files by name."""
    hil = {"id": "ask", "type": "hil", "prompt": "ship it?", "choices": ["ship", "hold"]}
    defs = [
        {"name": "plain",
         "nodes": [py("a", marker, sleep=0.5), {"id": "pause", "type": "delay", "seconds": 1.2},
                   py("b", marker, sleep=0.3)],
         "connections": [{"from": "a", "to": "pause"}, {"from": "pause", "to": "b"}]},
        {"name": "retry",
         "nodes": [dict(py("f", marker, fail_attempts=1), retry={"max_attempts": 3, "delay": 0.2}),
                   py("g", marker, sleep=0.5)],
         "connections": [{"from": "f", "to": "g"}]},
        {"name": "answer",
         "nodes": [py("a", marker), hil, py("s", marker), py("h", marker),
                   {"id": "side", "type": "delay", "seconds": 0.3}],
         "connections": [{"from": "a", "to": "ask"}, {"from": "ask", "to": "s", "port": "ship"},
                         {"from": "ask", "to": "h", "port": "hold"}]},
        {"name": "timeout",
         "nodes": [dict(hil, timeout=1), py("s", marker), py("t", marker)],
         "connections": [{"from": "ask", "to": "s", "port": "ship"}, {"from": "ask", "to": "t", "port": "timeout"}]},
        {"name": "long",
         "nodes": [py("a", marker, sleep=60), py("b", marker)],
         "connections": [{"from": "a", "to": "b"}]},
        {"name": "parked",
         "nodes": [hil, {"id": "side", "type": "delay", "seconds": 3600}, py("s", marker)],
         "connections": [{"from": "ask", "to": "s", "port": "ship"}]},
        {"name": "partial",
         "nodes": [{"id": "ask", "type": "hil", "prompt": "extra step?"}, py("after_ask", marker),
                   py("p", marker, sleep=0.1), {"id": "pause", "type": "delay", "seconds": 1.0}, py("q", marker)],
         "connections": [{"from": "ask", "to": "after_ask"}, {"from": "p", "to": "pause"},
                         {"from": "pause", "to": "q"}]},
    ]
    return {d["name"]: write_workflow(directory, d) for d in defs}


# Each script: its workflow, the status the run must end in, the helper's task (op, delay after the
# submit), and the weight in the mix. Scripts whose features the code lacks fall back to another.
SCRIPTS = {
    "plain": ("plain", "succeeded", None, 4),
    "retry": ("retry", "succeeded", None, 4),
    "answer": ("answer", "succeeded", ("answer", (0.0, 2.0)), 4),
    "timeout": ("timeout", "succeeded", None, 2),
    "late": ("timeout", "succeeded", ("late", (0.0, 0.0)), 1),
    "cancel": ("long", "cancelled", ("cancel", (0.5, 3.0)), 2),
    "cancel_queued": ("long", "cancelled", ("cancel", (0.0, 0.0)), 1),
    "cancel_parked": ("parked", "cancelled", ("cancel", (1.5, 4.0)), 1),
    "node_cancel": ("partial", "succeeded", ("node_cancel", (0.5, 3.0)), 1),
}


def install_writer_log(db: str) -> None:
    """A trigger that copies, for each batch appended, whose lease the run was under at that moment."""
    conn = sqlite3.connect(db, timeout=60)
    try:
        conn.executescript("""
            CREATE TABLE soak_writers (run_id TEXT NOT NULL, idx INTEGER NOT NULL, pid INTEGER, token TEXT);
            CREATE TRIGGER soak_writer AFTER INSERT ON batches BEGIN
                INSERT INTO soak_writers (run_id, idx, pid, token) VALUES (NEW.run_id, NEW.idx,
                    (SELECT pid FROM leases WHERE run_id = NEW.run_id),
                    (SELECT token FROM leases WHERE run_id = NEW.run_id));
            END;
        """)
    finally:
        conn.close()


class Soak:
    def __init__(self, tmp_path, seconds: float):
        self.dir = tmp_path
        self.db = str(tmp_path / "soak.db")
        self.marker = str(tmp_path / "marks.txt")
        self.todo = str(tmp_path / "todo.jsonl")
        self.done = str(tmp_path / "done.jsonl")
        self.seconds = seconds
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.killed: set[int] = set()
        self.logs = 0

    def spawn(self, argv: list, name: str) -> subprocess.Popen:
        self.logs += 1
        with open(self.dir / f"{name}-{self.logs}.err", "w") as err:
            proc = subprocess.Popen(argv, cwd=self.dir, env=child_env(), stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_worker(self) -> subprocess.Popen:
        proc = self.spawn(flowcore("worker", "--db", self.db), "worker")
        self.workers.append(proc)
        return proc

    def kill_a_worker(self, rng: random.Random) -> None:
        victim = rng.choice([w for w in self.workers if w.poll() is None])
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
        self.killed.add(victim.pid)
        self.workers.remove(victim)
        self.start_worker()

    def task(self, **task) -> None:
        with open(self.todo, "a", encoding="utf-8") as f:
            f.write(json.dumps(task) + "\n")

    def close(self) -> None:
        kill_all(list(self.procs))


@pytest.fixture
def soak(tmp_path, soak_seconds):
    s = Soak(tmp_path, soak_seconds)
    try:
        yield s
    finally:
        s.close()


def test_soak_of_workers_killed_mid_run(soak):
    seed = int(os.environ.get("FLOWCORE_SOAK_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    seconds = soak.seconds
    window = 0.6 * seconds  # submissions spread over this
    total = max(20, round(RUNS_PER_MINUTE * seconds / 60))
    names = list(SCRIPTS)
    weights = [SCRIPTS[n][3] for n in names]
    plan = sorted((rng.uniform(0, window), rng.choices(names, weights)[0]) for _ in range(total))
    print(f"\nsoak: seed {seed}, {total} runs over {window:.0f} s")

    from adapters import Engine

    engine = Engine(db=soak.db)  # creates the store
    install_writer_log(soak.db)
    files = workflows(soak.dir, soak.marker)
    open(soak.todo, "w").close()
    helper = soak.spawn([sys.executable, "-m", "live_nodes", "helper", soak.db, soak.todo, soak.done], "helper")
    for _ in range(WORKERS):
        soak.start_worker()

    expected: dict[str, str] = {}  # run id -> script
    cli_tasks = 0
    t0 = time.monotonic()
    next_kill = t0 + rng.uniform(*KILL_EVERY)
    deadline = t0 + window + max(90.0, 0.5 * seconds)
    pending = list(plan)
    ended = {}
    last_look = 0.0
    while True:
        now = time.monotonic()
        while pending and pending[0][0] <= now - t0:
            _, script = pending.pop(0)
            workflow, _, helper_task, _ = SCRIPTS[script]
            run_id = f"{script}-{len(expected):04d}"
            engine.submit(files[workflow], run_id=run_id)
            expected[run_id] = script
            if helper_task:
                op, (lo, hi) = helper_task
                via = "cli" if rng.random() < 0.15 else "engine"
                cli_tasks += via == "cli"
                task = {"id": len(expected), "op": op, "run": run_id, "at": time.time() + rng.uniform(lo, hi),
                        "via": via}
                if op in ("answer", "late"):
                    task.update(node="ask", port="ship", value=f"ok {run_id}")
                elif op == "node_cancel":
                    task.update(node="ask")
                soak.task(**task)
        if now >= next_kill:
            soak.kill_a_worker(rng)
            next_kill = now + rng.uniform(*KILL_EVERY)
        if now - last_look > 0.5:
            last_look = now
            rows = live_nodes.run_rows(soak.db)
            ended = {r: s for r, s in rows.items() if s in ("succeeded", "failed", "cancelled")}
            if not pending and len(ended) == total:
                break
            assert helper.poll() is None, "the helper process died"
        if now > deadline:
            rows = live_nodes.run_rows(soak.db)
            stuck = {r: s for r, s in rows.items() if s not in ("succeeded", "failed", "cancelled")}
            pytest.fail(f"seed {seed}: {len(stuck)} of {total} runs had not ended after {now - t0:.0f} s: "
                        f"{dict(list(stuck.items())[:20])}")
        time.sleep(0.05)
    took = time.monotonic() - t0
    with open(soak.todo, "a", encoding="utf-8") as f:
        f.write("stop\n")  # the helper ends once its tasks are done
    for w in soak.workers:
        w.send_signal(signal.SIGTERM)
    for w in soak.workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        helper.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"seed {seed}: the helper still had answers or cancels to carry out 60 s after every run ended")
    print(f"soak: {total} runs ended in {took:.1f} s; {len(soak.killed)} workers SIGKILLed; "
          f"{cli_tasks} answers/cancels through the CLI; "
          f"{Counter(expected.values())}")

    problems: list[str] = []
    check_statuses(soak, engine, expected, problems)
    outcomes = check_helper(soak, expected, problems)
    figures = check_logs(soak, expected, problems)
    print(f"soak: {figures['completions']} logged completions checked against their marks; "
          f"{figures['taken_over']} runs driven by more than one process; {figures['killed_in_flight']} attempts "
          f"in flight when their worker was killed; {figures['redone']} done twice (killed before logging); "
          f"requests: {dict(Counter((o['op'], o['via'], o['outcome']) for o in outcomes))}, "
          f"{sum(o['tries'] > 1 for o in outcomes)} tried again before the node waited")
    assert not problems, f"seed {seed}: {len(problems)} problem(s):\n" + "\n".join(problems[:40])


def records(run: dict) -> dict:
    return {r["node"]: r for r in run["nodes"]}


def check_statuses(soak, engine, expected, problems) -> None:
    rows = live_nodes.run_rows(soak.db)
    for run_id, script in expected.items():
        _, must, _, _ = SCRIPTS[script]
        run = engine.status(run_id).to_dict()
        by = records(run)
        if run["status"] != must or rows[run_id] != must:
            problems.append(f"{run_id}: ended {run['status']} (summary row {rows[run_id]}), not {must}: "
                            f"error {run['error']}, {[(r['node'], r['status'], r['attempts']) for r in run['nodes']]}")
            continue
        want = {
            "plain": {"a": "succeeded", "pause": "succeeded", "b": "succeeded"},
            "retry": {"f": "succeeded", "g": "succeeded"},
            "answer": {"ask": "succeeded", "s": "succeeded", "h": "skipped", "side": "succeeded"},
            "timeout": {"ask": "succeeded", "t": "succeeded", "s": "skipped"},
            "late": {"ask": "succeeded", "t": "succeeded", "s": "skipped"},
            "node_cancel": {"ask": "cancelled", "after_ask": "skipped", "q": "succeeded"},
        }.get(script, {})
        got = {node: by[node]["status"] for node in want}
        if got != want:
            problems.append(f"{run_id}: records {got}, not {want}")
        if script == "retry" and by["f"]["attempts"] < 2:
            problems.append(f"{run_id}: f succeeded on attempt {by['f']['attempts']}, but its first attempt fails")
        if script == "answer" and by["s"]["output"] != f"ok {run_id}":
            problems.append(f"{run_id}: s got {by['s']['output']!r}")
        if must == "cancelled" and run["error"] != {"node": None, "type": "cancelled", "message": "soak cancel"}:
            problems.append(f"{run_id}: cancelled with error {run['error']}")


def check_helper(soak, expected, problems) -> None:
    """Every answer and cancel was carried out as its script says."""
    outcomes = [json.loads(line) for line in open(soak.done, encoding="utf-8").read().splitlines()]
    by_run = {o["run"]: o for o in outcomes}
    for run_id, script in expected.items():
        task = SCRIPTS[script][2]
        if task is None:
            continue
        o = by_run.get(run_id)
        if o is None:
            problems.append(f"{run_id}: its {task[0]} was never carried out")
            continue
        want = "refused" if task[0] == "late" else "applied"
        if o["outcome"] != want:
            problems.append(f"{run_id}: {o['op']} via {o['via']}: {o['outcome']}, not {want} ({o['detail']})")
    return outcomes


def check_logs(soak, expected, problems) -> None:
    conn = sqlite3.connect(soak.db, timeout=60)
    try:
        batches = conn.execute("SELECT run_id, idx, events FROM batches ORDER BY run_id, idx").fetchall()
        writers = {(r, i): (pid, token) for r, i, pid, token in
                   conn.execute("SELECT run_id, idx, pid, token FROM soak_writers").fetchall()}
    finally:
        conn.close()
    logs = defaultdict(list)
    for run_id, idx, text in batches:
        logs[run_id].append((idx, json.loads(text)))
    done_lines = Counter(marks(soak.marker))
    cancelled_lines = Counter(marks(soak.marker + ".cancelled"))
    lines_of = defaultdict(list)  # (run, node) -> its marks
    lines_by_run = defaultdict(list)
    for line in list(done_lines.elements()) + list(cancelled_lines.elements()):
        lines_of[(line[0], line[1])].append(line)
        lines_by_run[line[0]].append(line)
    python_nodes = {"a", "b", "f", "g", "s", "h", "t", "after_ask", "p", "q"}
    figures = Counter()
    killed_starts = [m for m in marks(soak.marker + ".start") if m[3] in soak.killed]
    figures["killed_in_flight"] = sum(1 for m in killed_starts if (m[0], m[1], m[2], m[3]) not in done_lines
                                      and (m[0], m[1], m[2], m[3]) not in cancelled_lines)
    for run_id, script in expected.items():
        log = logs.get(run_id, [])
        ended = SCRIPTS[script][1]
        if [idx for idx, _ in log] != list(range(len(log))):
            problems.append(f"{run_id}: batch indexes {[idx for idx, _ in log]} are not contiguous")
        # one driver at a time: each batch written under a lease, and a run's leases never come back
        tokens = []
        for idx, _ in log:
            pid, token = writers.get((run_id, idx), (None, None))
            if token is None:
                problems.append(f"{run_id}: batch {idx} was written while no process held the run's lease")
            elif not tokens or tokens[-1] != token:
                if token in tokens:
                    problems.append(f"{run_id}: batch {idx} was written under lease {token} again, after another")
                tokens.append(token)
        figures["taken_over"] += len(tokens) > 1
        # side effects: a logged completion was done once, by the process that logged it
        logged = {}
        for idx, events in log:
            for e in events:
                if e["type"] in ("NodeSucceeded", "NodeFailed") and e["node"] in python_nodes:
                    key = (e["node"], e["attempt"])
                    if key in logged:
                        problems.append(f"{run_id}: the completion of {key} is logged twice")
                    logged[key] = writers.get((run_id, idx), (None, None))[0]
        figures["completions"] += len(logged)
        for (node, attempt), pid in logged.items():
            n = sum(1 for line in lines_of[(run_id, node)] if line[2] == attempt and line[3] == pid)
            if n != 1:
                problems.append(f"{run_id}: {node} attempt {attempt}, logged under process {pid}'s lease, left {n} "
                                f"marks by that process: {sorted(lines_of[(run_id, node)])}")
        for line in lines_by_run[run_id]:
            _, node, attempt, pid = line
            if logged.get((node, attempt)) == pid:
                continue
            if pid in soak.killed or ended == "cancelled":
                figures["redone"] += pid in soak.killed and (node, attempt) in logged
                continue  # its process died before logging it, or the run ended under it
            problems.append(f"{run_id}: {node} attempt {attempt} was done by process {pid} (not killed) but its "
                            f"completion was never logged by it")
    return figures

