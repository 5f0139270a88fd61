"""A fleet of workers on one PostgreSQL store: four ``flowcore worker`` processes, each a host of its own
(``FLOWCORE_HOST_ID``: they judge each other's leases by heartbeat only, as hosts must), drive 400
submitted runs (delays, retries, a few slow nodes). During the run one worker is SIGKILLed and
another frozen with SIGSTOP; the frozen one is woken (SIGCONT) once its leases have run out
(``FLOWCORE_LEASE_SECONDS``: a few seconds here, not 30) and other workers took its runs over.

What must hold, from the store's log and the side effects nodes leave (each python node appends
``run_id node attempt pid`` to a marker file when its attempt is done):

- no run is lost: every run ends ``succeeded``, with the records its workflow implies;
- no run is appended to by two workers: a run's batch indexes are contiguous, and a trigger this
  test installs on the batches table records, for each batch, the lease the run was under and the
  session that wrote it (each worker's connections carry its host id as ``application_name``):
  they are the same host for every batch, and a run's leases never go back to an earlier holder;
  the woken worker's own writes were refused (it says so in its log);
- no logged completion's side effect happened twice: each completion in the log was done exactly
  once by the process that logged it (an attempt done again is one whose completion was never
  logged: its worker was killed or frozen).

About 30 to 60 s on this project's 2-core machines; bounded at 150 s.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict

import pytest

import pg_support
from live_nodes import child_env, flowcore, kill_all, marks, py, write_workflow

RUNS = 400
WORKERS = 4
LEASE_SECONDS = 3.0
SUBMIT_OVER = 12.0  # seconds the submissions are spread over
KILL_AT, FREEZE_AT = 4.0, 7.0  # seconds after the first submission
DEADLINE = 150.0
ENDED = ("succeeded", "failed", "cancelled")
PYTHON_NODES = {"a", "b", "f", "g", "c1", "c2", "c3", "slow"}


def workflows(directory, marker: str) -> dict[str, str]:
    defs = [
        {"name": "plain",
         "nodes": [py("a", marker, sleep=0.1), {"id": "pause", "type": "delay", "seconds": 0.8},
                   py("b", marker, sleep=0.1)],
         "connections": [{"from": "a", "to": "pause"}, {"from": "pause", "to": "b"}]},
        {"name": "retry",
         "nodes": [dict(py("f", marker, fail_attempts=1), retry={"max_attempts": 3, "delay": 0.3}),
                   py("g", marker, sleep=0.2)],
         "connections": [{"from": "f", "to": "g"}]},
        {"name": "chain",
         "nodes": [py("c1", marker), py("c2", marker), py("c3", marker)],
         "connections": [{"from": "c1", "to": "c2"}, {"from": "c2", "to": "c3"}]},
        {"name": "slow",
         "nodes": [py("slow", marker, sleep=3.0), py("b", marker)],
         "connections": [{"from": "slow", "to": "b"}]},
    ]
    return {d["name"]: write_workflow(directory, d) for d in defs}


MIX = {"plain": 10, "retry": 5, "chain": 4, "slow": 1}
WANT = {"plain": {"a": "succeeded", "pause": "succeeded", "b": "succeeded"},
        "retry": {"f": "succeeded", "g": "succeeded"},
        "chain": {"c1": "succeeded", "c2": "succeeded", "c3": "succeeded"},
        "slow": {"slow": "succeeded", "b": "succeeded"}}

WRITERS = """
CREATE TABLE fleet_writers (run_id text NOT NULL, idx integer NOT NULL, writer text, pid integer, host text,
                            token text);
CREATE FUNCTION fleet_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleet_writers (run_id, idx, writer, pid, host, token)
    SELECT NEW.run_id, NEW.idx, current_setting('application_name'), l.pid, l.host, l.token
    FROM (SELECT 1) AS one LEFT JOIN leases l ON l.run_id = NEW.run_id;
    RETURN NEW;
END $$;
CREATE TRIGGER fleet_writer AFTER INSERT ON batches FOR EACH ROW EXECUTE FUNCTION fleet_writer();
"""


class Fleet:
    def __init__(self, tmp_path, url: str):
        self.dir = tmp_path
        self.url = url
        self.marker = str(tmp_path / "marks.txt")
        self.workers: dict[str, subprocess.Popen] = {}  # host id -> process
        self.pids: dict[int, str] = {}

    def start_worker(self, host: str) -> None:
        env = child_env()
        env.update(FLOWCORE_HOST_ID=host, FLOWCORE_LEASE_SECONDS=str(LEASE_SECONDS), PGAPPNAME=host)
        with open(self.dir / f"{host}.err", "w") as err:
            proc = subprocess.Popen(flowcore("worker", "--db", self.url), cwd=self.dir, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        self.workers[host] = proc
        self.pids[proc.pid] = host

    def log(self, host: str) -> str:
        return (self.dir / f"{host}.err").read_text()

    def rows(self, query: str, args=()) -> list:
        return pg_support.execute(self.url, query, args)

    def statuses(self) -> dict[str, str]:
        return dict(self.rows("SELECT run_id, status FROM runs"))

    def leases_of(self, host: str) -> dict[str, str]:
        """run id -> lease token of the unfinished runs ``host`` holds (a worker frozen between a run's
        last step and letting it go holds a lease on an ended run: no one needs to take that over)."""
        return dict(self.rows("SELECT l.run_id, l.token FROM leases l JOIN runs r USING (run_id) WHERE l.host = %s "
                              "AND r.status NOT IN ('succeeded', 'failed', 'cancelled')", (host,)))

    def diagnosis(self, run_ids: list[str]) -> str:
        """What the store and the server say of runs that are stuck (for a failure's message)."""
        runs = self.rows("SELECT r.run_id, r.status, r.wake_at - extract(epoch from clock_timestamp()), "
                         "l.host, extract(epoch from clock_timestamp()) - l.heartbeat, "
                         "(SELECT count(*) FROM inbox i WHERE i.run_id = r.run_id AND i.state = 'pending'), "
                         "(SELECT count(*) FROM batches b WHERE b.run_id = r.run_id) "
                         "FROM runs r LEFT JOIN leases l USING (run_id) WHERE r.run_id = ANY(%s)", (run_ids,))
        sessions = self.rows("SELECT pid, application_name, state, wait_event_type, wait_event, "
                             "now() - state_change, left(query, 120) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        locks = self.rows("SELECT l.pid, l.locktype, l.mode, l.granted, c.relname FROM pg_locks l "
                          "LEFT JOIN pg_class c ON c.oid = l.relation WHERE NOT l.granted OR l.locktype = 'tuple'")
        return (f"runs (id, status, wake_at - now, lease host, heartbeat age, pending, batches): {runs}\n"
                f"sessions: {sessions}\nlocks waited for: {locks}")

    def close(self) -> None:
        kill_all(list(self.workers.values()))


@pytest.fixture
def fleet(tmp_path, postgres_url):
    f = Fleet(tmp_path, postgres_url)
    try:
        yield f
    finally:
        f.close()


def test_a_fleet_of_workers_loses_no_run_when_one_is_killed_and_one_frozen(fleet):
    seed = int(os.environ.get("FLOWCORE_FLEET_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    from adapters import Engine

    engine = Engine(db=fleet.url)  # creates the store
    fleet.rows(WRITERS)
    files = workflows(fleet.dir, fleet.marker)
    names = list(MIX)
    plan = sorted((rng.uniform(0, SUBMIT_OVER), rng.choices(names, [MIX[n] for n in names])[0]) for _ in range(RUNS))
    hosts = [f"host-{i}" for i in range(WORKERS)]
    for host in hosts:
        fleet.start_worker(host)

    expected: dict[str, str] = {}
    killed = frozen = None
    frozen_held: dict[str, str] = {}
    woken = False
    t0 = time.monotonic()
    while True:
        now = time.monotonic() - t0
        while plan and plan[0][0] <= now:
            _, name = plan.pop(0)
            run_id = f"{name}-{len(expected):03d}"
            engine.submit(files[name], run_id=run_id)
            expected[run_id] = name
        if killed is None and now >= KILL_AT:
            killed = max(hosts, key=lambda h: len(fleet.leases_of(h)))  # the busiest: most runs to take over
            fleet.workers[killed].send_signal(signal.SIGKILL)
            fleet.workers[killed].wait(timeout=30)
        if frozen is None and now >= FREEZE_AT:
            frozen = max((h for h in hosts if h != killed), key=lambda h: len(fleet.leases_of(h)))
            os.kill(fleet.workers[frozen].pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            frozen_held = fleet.leases_of(frozen)
        if frozen is not None and not woken:
            held = fleet.leases_of(frozen)
            # its leases have run out and each run it held has been taken over (or has ended) by another
            if time.monotonic() - frozen_at > LEASE_SECONDS and not held:
                os.kill(fleet.workers[frozen].pid, signal.SIGCONT)
                woken = True
                frozen_for = time.monotonic() - frozen_at
            elif time.monotonic() - frozen_at > 30:
                pytest.fail(f"seed {seed}: the frozen worker's runs were not taken over in 30 s: {held}\n"
                            f"{fleet.diagnosis(list(held))}")
        if not plan and woken:
            statuses = fleet.statuses()
            if sum(s in ENDED for s in statuses.values()) == RUNS:
                break
        if now > DEADLINE:
            statuses = fleet.statuses()
            stuck = {r: s for r, s in statuses.items() if s not in ENDED}
            pytest.fail(f"seed {seed}: {len(stuck)} of {RUNS} runs had not ended after {now:.0f} s: "
                        f"{dict(list(stuck.items())[:20])}")
        time.sleep(0.05)
    took = time.monotonic() - t0
    for host, proc in fleet.workers.items():
        if host != killed:
            proc.send_signal(signal.SIGTERM)
    for host, proc in fleet.workers.items():
        if host != killed:
            assert proc.wait(timeout=30) == 0, fleet.log(host)[-2000:]

    problems: list[str] = []
    # 0 runs lost: each ended as its workflow says
    for run_id, name in expected.items():
        result = engine.status(run_id).to_dict()
        got = {r["node"]: r["status"] for r in result["nodes"]}
        if result["status"] != "succeeded" or got != WANT[name]:
            problems.append(f"{run_id}: {result['status']}, {got}, error {result['error']}")
        elif name == "retry" and {r["node"]: r for r in result["nodes"]}["f"]["attempts"] < 2:
            problems.append(f"{run_id}: f succeeded on its first attempt, which fails")
    figures = check_writers(fleet, expected, problems)
    figures.update(check_side_effects(fleet, expected, killed, frozen, problems))
    woken_log = fleet.log(frozen)
    refused = woken_log.count("no longer holds the run's lease")
    # frozen inside a transaction: the server ended that session once it outlived the lease
    ended_sessions = woken_log.count("server closed the connection")
    print(f"\nfleet: seed {seed}, {RUNS} runs ended in {took:.1f} s with {WORKERS} workers; {killed} SIGKILLed at "
          f"{KILL_AT:g} s, {frozen} frozen at {FREEZE_AT:g} s holding {len(frozen_held)} runs, woken after "
          f"{frozen_for:.1f} s; {refused} writes of the woken worker refused, {ended_sessions} of its sessions "
          f"ended by the server; {dict(figures)}; "
          f"{dict(Counter(expected.values()))}")
    if frozen_held:
        # what it was driving when frozen went on elsewhere: its own next write to such a run was refused
        assert refused + ended_sessions >= 1, f"seed {seed}: the woken worker logged no refused write:\n" \
                                              f"{woken_log[-3000:]}"
    assert not problems, f"seed {seed}: {len(problems)} problem(s):\n" + "\n".join(problems[:40])


def check_writers(fleet, expected, problems) -> Counter:
    """One writer at a time: contiguous batches, each written by the lease holder of the moment, and a
    run's leases never coming back to an earlier holder."""
    batches = defaultdict(list)
    for run_id, idx in fleet.rows("SELECT run_id, idx FROM batches ORDER BY run_id, idx"):
        batches[run_id].append(idx)
    writers = {(r, i): (writer, host, token) for r, i, writer, host, token in
               fleet.rows("SELECT run_id, idx, writer, host, token FROM fleet_writers")}
    figures = Counter()
    for run_id in expected:
        log = batches.get(run_id, [])
        if log != list(range(len(log))):
            problems.append(f"{run_id}: batch indexes {log} are not contiguous")
        tokens: list[str] = []
        for idx in log:
            writer, host, token = writers.get((run_id, idx), (None, None, None))
            if token is None:
                problems.append(f"{run_id}: batch {idx} was written while no process held the run's lease")
                continue
            if writer != host:
                problems.append(f"{run_id}: batch {idx} was written by {writer} under {host}'s lease")
            if not tokens or tokens[-1] != token:
                if token in tokens:
                    problems.append(f"{run_id}: batch {idx} was written under lease {token} again, after another")
                tokens.append(token)
        figures["runs driven by more than one worker"] += len(tokens) > 1
    return figures


def check_side_effects(fleet, expected, killed, frozen, problems) -> Counter:
    """A logged completion was done exactly once, by the process that logged it."""
    lead = {"killed": fleet.workers[killed].pid, "frozen": fleet.workers[frozen].pid}
    logged = defaultdict(dict)  # run -> (node, attempt) -> the logging process
    rows = fleet.rows("SELECT b.run_id, b.events, w.pid FROM batches b JOIN fleet_writers w USING (run_id, idx)")
    for run_id, text, pid in rows:
        for e in json.loads(text):
            if e["type"] in ("NodeSucceeded", "NodeFailed") and e["node"] in PYTHON_NODES:
                key = (e["node"], e["attempt"])
                if key in logged[run_id]:
                    problems.append(f"{run_id}: the completion of {key} is logged twice")
                logged[run_id][key] = pid
    lines = defaultdict(list)
    for run_id, node, attempt, pid in marks(fleet.marker):
        lines[run_id].append((node, attempt, pid))
    figures = Counter()
    for run_id in expected:
        done = Counter(lines[run_id])
        for (node, attempt), pid in logged[run_id].items():
            figures["logged completions"] += 1
            if done[(node, attempt, pid)] != 1:
                problems.append(f"{run_id}: {node} attempt {attempt}, logged by process {pid}, was done "
                                f"{done[(node, attempt, pid)]} times by it: {sorted(lines[run_id])}")
        for (node, attempt, pid), n in done.items():
            if logged[run_id].get((node, attempt)) == pid:
                continue
            if pid in lead.values():
                figures[f"attempts done again after the {'killed' if pid == lead['killed'] else 'frozen'} "
                        f"worker's run was taken over"] += n
                continue
            problems.append(f"{run_id}: {node} attempt {attempt} was done by process {pid} (neither killed nor "
                            f"frozen) but its completion was never logged by it")
    return figures
