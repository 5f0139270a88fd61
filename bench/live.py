"""Section 11: live runs. A worker process against ``Engine.run``; answer and timer latency; an idle worker.

Everything about processes is measured with real ones: the workers are ``flowcore worker --db PATH``
child processes (the console script beside this interpreter, started in the repository root so
``bench.nodes`` is found), their log (stderr) kept in a file and read back to tell which process
drove which run. The measuring process only submits, answers and reads the store.

- Throughput: ``RUNS`` runs of a 10-node DAG of no-op python nodes (``ten_node_workflow``) submitted
  (``Engine(db=path).submit``, not timed) to a fresh SQLite store, then driven by one
  ``flowcore worker --once`` process, or two started together; timed from starting the process(es)
  until they exit (their start, interpreter and imports, included). The baseline is the same runs
  through one ``Engine(db=path).run`` after the other in this process. Also timed: a worker
  ``--once`` on an empty store (what starting a worker costs). Interleaved, medians of repeats;
  every run must have ended succeeded (else ``RunDidNotSucceed``), each reported by exactly one
  worker.
- Answer latency: runs of a ``hil`` beside a python node that holds until a file appears, so the
  worker's drive of the run stays busy (driving it) until the measuring process lets it go. A batch
  of ``BATCH`` (the worker's ``max_runs``) such runs is submitted; once each is driven by the worker
  (``store.driver(run_id)`` has its pid) the measuring process answers them one after the other:
  from just before ``Engine(db).resume(run_id, node="ask", input=...)`` to the inbox row's
  ``done_at`` (stamped by the driver in the transaction that logs the step applying it). A sample
  whose answer was not applied by another process (``RunResult.applied_by``) stops the benchmark.
- Timer latency: runs of ``delay -> python no-op`` submitted one every ``TIMER_GAP`` seconds,
  alternately with a delay longer than the worker's linger (``LONG_DELAY``: the drive lets the run
  go, the worker's poll finds it due and takes it over) and shorter (``SHORT_DELAY``: the drive
  waits for it). A sample is the no-op's ``started_at`` minus the delay's due time (its
  ``started_at`` + seconds): the delay's own ``finished_at`` cannot tell, as its event carries the
  due time, not when it was fired. Each long delay must have been fired by a takeover (its
  ``TimerFired`` in a step with ``Resumed``), each short one within the drive that parked it.
- Idle CPU: a ``flowcore worker`` on a store of finished runs and runs waiting for far-off timers
  and answers (some answered earlier, so the inbox has history), once it is serving: CPU seconds
  (``utime + stime`` of ``/proc/PID/stat``) over the wall time of the window.
"""
from __future__ import annotations

import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from adapters import Engine
from scheduler_core import Resumed, TimerFired

from .durability import FreshDb
from .engine_runs import RunDidNotSucceed
from .graphs import NOTHING, layered_dag
from .measure import REPO_ROOT, timed
from .table import AtLeast, Check, Section, ms, ratio

RUNS, QUICK_RUNS = 1_000, 100
SAMPLES, QUICK_SAMPLES = 200, 40  # per latency kind
IDLE_SECONDS, QUICK_IDLE_SECONDS = 60.0, 10.0
BATCH = 8  # runs the worker holds at once while they are answered: its default max_runs
LONG_DELAY, SHORT_DELAY = 1.5, 0.25  # either side of the worker's linger (1 s)
TIMER_GAP = 0.06  # seconds between two timer runs' submissions
HOLD = "bench.nodes:hold"
WAIT_SECONDS = 120.0  # how long anything here waits for a worker before calling it stuck
STOP_SECONDS = 20.0  # a worker with nothing in flight exits this soon after SIGTERM, or is stuck


class WorkerFailed(RuntimeError):
    pass


# -- the workflows ------------------------------------------------------------------------------

def ten_node_workflow() -> dict:
    """Ten no-op python nodes: three roots, joins of two, two sinks (layers of 3, up to 2 predecessors)."""
    return layered_dag(10, width=3, max_fan_in=2).workflow(name="live-ten")


def answer_workflow(release: str) -> dict:
    """``ask`` (a hil) -> ``after``, beside ``hold``, which runs until the file ``release`` exists."""
    return {"name": "live-answer", "nodes": [
        {"id": "ask", "type": "hil", "prompt": "go on?", "timeout": 3600},
        {"id": "after", "type": "python", "call": NOTHING},
        {"id": "hold", "type": "python", "call": HOLD, "params": {"path": release, "seconds": WAIT_SECONDS}},
    ], "connections": [{"from": "ask", "to": "after"}]}


def timer_workflow(seconds: float) -> dict:
    """``wait`` (a delay of ``seconds``) -> ``after`` (a no-op python node)."""
    return {"name": "live-timer", "nodes": [
        {"id": "wait", "type": "delay", "seconds": seconds},
        {"id": "after", "type": "python", "call": NOTHING},
    ], "connections": [{"from": "wait", "to": "after"}]}


# -- worker processes ---------------------------------------------------------------------------

def worker_command(db: str, *options: str) -> list[str]:
    """``flowcore worker --db DB OPTIONS``: the console script beside this interpreter (else its entry point)."""
    script = Path(sys.executable).with_name("flowcore")
    head = [str(script)] if script.exists() else [sys.executable, "-c",
                                                    "import sys; from adapters.cli import main; sys.exit(main())"]
    return [*head, "worker", "--db", db, *options]


_DROVE = re.compile(r" worker (\d+): run (\S+): (\w+)$")
_DONE = re.compile(r" worker \d+: done: (\d+) drives?$", re.MULTILINE)


class WorkerProcess:
    """``flowcore worker --db DB`` as a child process; its log (stderr) goes to ``log_path``."""

    def __init__(self, db: str, log_path: str, *options: str):
        self.log_path = log_path
        with open(log_path, "w") as log:  # faulthandler: a stuck worker is told to dump its threads' stacks
            self.proc = subprocess.Popen(worker_command(db, *options), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         env={**os.environ, "PYTHONFAULTHANDLER": "1"})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = WAIT_SECONDS) -> None:
        """Until it exits, which it must do with 0 within ``timeout``, else ``WorkerFailed`` (with its stacks)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._abort()
            raise WorkerFailed(f"worker {self.pid} still ran after {timeout:g} s:\n{self.log()}") from None
        if code != 0:
            raise WorkerFailed(f"worker {self.pid} exited {code}:\n{self.log()}")

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM, as a service manager stops it: with nothing in flight it must exit 0 within ``timeout``.
        One that does not is stuck (a defect, not a figure): ``stuck`` keeps where its main thread was
        (its stacks, dumped on SIGABRT) for the report, it is killed, and what was measured stands."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._abort()
            self.stuck = main_thread_stack(self.log())
            return
        if code != 0:
            raise WorkerFailed(f"worker {self.pid} exited {code} on SIGTERM:\n{self.log()}")

    stuck: str | None = None

    def _abort(self) -> None:
        self.proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the log
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def launched(self) -> int | None:
        """How many drives a ``--once`` worker started, by its last line (``done: N drives``): a drive
        that found the run taken by another process counts, though it logs nothing else."""
        m = _DONE.search(self.log())
        return int(m.group(1)) if m else None

    def serving(self) -> bool:
        return " serving " in self.log()

    def drove(self) -> dict[str, list[str]]:
        """run id -> what each drive of it by this worker ended with (``succeeded``, ``waiting``...), in order."""
        out: dict[str, list[str]] = {}
        for line in self.log().splitlines():
            m = _DROVE.search(line)
            if m and int(m.group(1)) == self.pid:
                out.setdefault(m.group(2), []).append(m.group(3))
        return out


def main_thread_stack(log: str) -> str:
    """The frames faulthandler wrote for the thread it was called in (a stuck worker's main thread), innermost first."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Current thread")), None)
    if start is None:
        return "(no stack in its log)"
    frames = []
    for line in lines[start + 1:]:
        if not line.startswith("  File"):
            break
        frames.append(line.strip())
    return "; ".join(frames)


def stuck_notes(*workers: WorkerProcess) -> list[str]:
    return [f"DEFECT: worker {w.pid} did not exit within {STOP_SECONDS:g} s of SIGTERM (nothing in flight); "
            f"killed. Its main thread: {w.stuck}" for w in workers if w.stuck]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS, every: float = 0.005):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise WorkerFailed(f"waited {timeout:g} s for {what}")
        time.sleep(every)


def started_worker(db: str, log_path: str) -> WorkerProcess:
    """A ``flowcore worker`` serving ``db`` (its log says so)."""
    worker = WorkerProcess(db, log_path)
    wait_until(lambda: worker.serving() or worker.proc.poll() is not None, "the worker to start")
    if not worker.serving():
        worker.wait()  # reports how it failed
    return worker


# -- 1. throughput ------------------------------------------------------------------------------

def check_all_succeeded(engine: Engine, run_ids: list[str], what: str) -> None:
    status = {r["run_id"]: r["status"] for r in engine.runs()}
    bad = [(r, status.get(r)) for r in run_ids if status.get(r) != "succeeded"]
    if bad:
        raise RunDidNotSucceed(f"{what}: {len(bad)} of {len(run_ids)} runs did not succeed, e.g. {bad[0][0]} "
                               f"ended {bad[0][1]}")


@dataclass
class Driven:
    """What one timed drive of a store's runs did: who drove which run."""

    run_ids: list[str]
    by_worker: dict[int, dict[str, list[str]]]  # worker pid -> its drove()
    launched: dict[int, int] | None = None  # worker pid -> drives it started (its launched())

    def drives(self, pid: int) -> int:
        return sum(len(ends) for ends in self.by_worker[pid].values())

    @property
    def extra(self) -> int:
        """Drives the workers reported beyond one a run: of a run another drive had ended meanwhile."""
        return sum(self.drives(pid) for pid in self.by_worker) - len(self.run_ids)


def engine_loop(fresh_db, n: int, workflow: dict):
    """The baseline: ``n`` runs, one ``Engine(db=path).run`` after the other, in this process."""
    engine = Engine(db=fresh_db())

    def go():
        ids = []
        for _ in range(n):
            result = engine.run(workflow)
            if result.status != "succeeded":
                raise RunDidNotSucceed(f"{workflow['name']}: Engine.run ended {result.status}: {result.error}")
            ids.append(result.run_id)
        return ids

    def check(ids) -> Driven:
        check_all_succeeded(engine, ids, "Engine.run loop")
        return Driven(ids, {})
    return go, check


def worker_drive(fresh_db, n: int, workflow: dict, workers: int, logs: str | None = None):
    """``n`` runs submitted to a fresh store (now, untimed); ``go`` starts ``workers`` ``flowcore worker
    --once`` processes and waits for them to exit. Their logs go beside the store's file, or into the
    directory ``logs`` (a store that is no file: PostgreSQL)."""
    db = fresh_db()
    engine = Engine(db=db)
    ids = [engine.submit(workflow) for _ in range(n)]
    procs: list[WorkerProcess] = []
    prefix = f"{db}." if logs is None else os.path.join(tempfile.mkdtemp(dir=logs), "")

    def go():
        procs[:] = [WorkerProcess(db, f"{prefix}worker{i}.log", "--once") for i in range(workers)]
        for p in procs:
            p.wait()

    def check(_) -> Driven:
        check_all_succeeded(engine, ids, f"{workers} worker process(es)")
        by_worker = {p.pid: p.drove() for p in procs}
        reported = [r for drove in by_worker.values() for r, ends in drove.items() for end in ends]
        if set(reported) != set(ids) or set(ends for d in by_worker.values() for e in d.values() for ends in e) \
                != {"succeeded"}:
            raise WorkerFailed(f"the workers' logs do not report every one of the {n} runs succeeded, and nothing else")
        return Driven(ids, by_worker, {p.pid: p.launched() for p in procs})
    return go, check


def worker_start(fresh_db):
    """``flowcore worker --once`` on a store with no runs: what starting one costs."""
    db = fresh_db()
    Engine(db=db)  # the store exists, empty

    def go():
        WorkerProcess(db, f"{db}.worker.log", "--once").wait()
    return go, lambda _: Driven([], {})


SPIN = "import sys\nn = int(sys.argv[1])\nwhile n:\n    n -= 1"
SPIN_COUNT, QUICK_SPIN_COUNT = 20_000_000, 4_000_000


def spin(processes: int, count: int):
    """The machine's own parallelism: ``count`` turns of a pure-Python loop shared by ``processes``
    fresh interpreters (no I/O, no shared state): what two CPU-bound processes can gain here."""
    def go():
        procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(count // processes)]) for _ in range(processes)]
        for p in procs:
            if p.wait(WAIT_SECONDS) != 0:
                raise WorkerFailed("a spinning process failed")
    return go, lambda _: Driven([], {})


def cpu_now() -> float:
    """CPU seconds of this process (all its threads) and of its children that have been waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def prepared_interleaved(contenders: dict[str, Callable[[], tuple]], repeats: int):
    """Like ``measure.interleaved``, but each contender is made ready untimed first: ``prepare()``
    gives ``(go, check)``; ``go()`` is timed, ``check(what go returned)`` then says it did its job.
    Medians of the wall times and of the CPU times ``go`` took (this process's and its workers'),
    and each contender's last ``Driven``."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    last: dict[str, Driven] = {}
    for _ in range(repeats):
        for name, prepare in contenders.items():
            go, check = prepare()
            out = []
            before = cpu_now()
            times[name].append(timed(lambda: out.append(go())))
            cpu[name].append(cpu_now() - before)
            last[name] = check(out[0])
    median = statistics.median
    return {name: median(ts) for name, ts in times.items()}, {name: median(cs) for name, cs in cpu.items()}, last


RUN_CONTENDERS = ("Engine.run loop", "1 worker", "2 workers")


def throughput_contenders(fresh_db, n: int, workflow: dict, spin_count: int) -> dict[str, Callable[[], tuple]]:
    return {"Engine.run loop": lambda: engine_loop(fresh_db, n, workflow),
            "1 worker": lambda: worker_drive(fresh_db, n, workflow, 1),
            "2 workers": lambda: worker_drive(fresh_db, n, workflow, 2),
            "worker start (no runs)": lambda: worker_start(fresh_db),
            "CPU spin, 1 process": lambda: spin(1, spin_count),
            "CPU spin, 2 processes": lambda: spin(2, spin_count)}


def throughput_section(cfg, fresh_db):
    n = QUICK_RUNS if cfg.quick else RUNS
    contenders = throughput_contenders(fresh_db, n, ten_node_workflow(), QUICK_SPIN_COUNT if cfg.quick else SPIN_COUNT)
    t, cpu, last = prepared_interleaved(contenders, cfg.repeats)
    loop, one, two = t["Engine.run loop"], t["1 worker"], t["2 workers"]
    rows = [[name, ms(t[name]), f"{n / t[name]:.0f}" if name in RUN_CONTENDERS else "",
             ratio(t[name] / loop) if name in RUN_CONTENDERS else "", f"{cpu[name]:.2f}", ratio(cpu[name] / t[name])]
            for name in t]
    two_last = last["2 workers"]
    split = " + ".join(str(two_last.drives(pid)) for pid in two_last.by_worker)
    started = " + ".join(str(k) for k in two_last.launched.values())
    machine = t["CPU spin, 1 process"] / t["CPU spin, 2 processes"]
    caption = (f"Throughput: {n:,} runs of a 10-node no-op DAG, SQLite, thread runner; median of {cfg.repeats} "
               f"interleaved repeats; CPU s: this process's and its children's (1 worker / loop: "
               f"{cpu['1 worker'] / cpu['Engine.run loop']:.2f}x the CPU for the same runs). 2 workers / 1: {one / two:.2f}x "
               f"the throughput, where the machine gives two CPU-bound processes {machine:.2f}x (CPU spin). "
               f"Last repeat: 1 worker started {sum(last['1 worker'].launched.values())} drives; 2 workers started "
               f"{started} (the rest found the run taken by the other) and reported {split}, {two_last.extra} of "
               f"them of a run the other had just ended")
    checks = [Check(f"1 worker process / Engine.run loop, time for {n:,} runs", one / loop, 1.5),
              AtLeast(f"2 worker processes: throughput / 1 worker's, {n:,} runs", one / two, 1.4)]
    header = ["contender", "ms", "runs/s", "/ Engine.run loop", "CPU s", "CPU/wall"]
    return (caption, header, rows), checks, []


# -- 2. latency ---------------------------------------------------------------------------------

def percentile(values, p: float) -> float:
    """Nearest rank: the smallest value at least ``p`` percent of the values are at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class AnswerSample:
    seconds: float  # from just before resume() to the inbox row's done_at
    driver_pid: int  # the run's driver just before the answer
    applied_by: str | None  # RunResult.applied_by: set when another process applied the answer


def answered_at(engine: Engine, run_id: str) -> tuple[str, float]:
    """(state, done_at) of the run's answer in the store's inbox."""
    return engine.store.conn.execute("SELECT state, done_at FROM inbox WHERE run_id = ? AND kind = 'answer'",
                                     (run_id,)).fetchone()


def answer_samples(db: str, worker: WorkerProcess, samples: int, batch: int = BATCH) -> list[AnswerSample]:
    """Answers to runs ``worker`` is driving: batches of ``batch`` runs, answered one after the other."""
    engine = Engine(db=db)
    out: list[AnswerSample] = []
    for b in range(math.ceil(samples / batch)):
        release = f"{db}.release{b}"
        workflow = answer_workflow(release)
        ids = [engine.submit(workflow) for _ in range(min(batch, samples - len(out)))]

        def held(run_id):
            lease = engine.store.driver(run_id)
            return lease is not None and lease.pid == worker.pid and engine.store.info(run_id).status == "running"
        wait_until(lambda: all(held(r) for r in ids), f"the worker to drive batch {b}")
        for run_id in ids:
            lease = engine.store.driver(run_id)
            if lease is None or lease.pid != worker.pid:
                raise WorkerFailed(f"run {run_id} is not driven by the worker {worker.pid} ({lease})")
            start = time.time()
            result = engine.resume(run_id, node="ask", input="yes", wait=WAIT_SECONDS)
            state, done_at = answered_at(engine, run_id)
            if result.applied_by is None or state != "applied":
                raise WorkerFailed(f"run {run_id}: the answer was not applied by the worker "
                                   f"(applied_by={result.applied_by}, state={state})")
            out.append(AnswerSample(done_at - start, lease.pid, result.applied_by))
        Path(release).touch()
        wait_until(lambda: all(engine.store.info(r).status not in ("queued", "running", "waiting") for r in ids),
                   f"batch {b} to end")
        check_all_succeeded(engine, ids, "answered runs")
    return out


@dataclass(frozen=True)
class TimerSample:
    seconds: float  # the successor's start minus the delay's due time
    delay: float
    by_takeover: bool  # the delay fired in a step that took the run over (Resumed), not within the drive
    late_record: float  # the delay record's finished_at minus its due time (the event carries the due time)


def fired_by_takeover(engine: Engine, run_id: str) -> bool:
    """Whether the step that fired the run's timer also took the run over (``Resumed``)."""
    _, batches, _ = engine.store.load(run_id)
    for events in batches:
        kinds = {type(e) for e in events}
        if TimerFired in kinds:
            return Resumed in kinds
    raise WorkerFailed(f"run {run_id}: no timer fired")


def timer_samples(db: str, worker: WorkerProcess, samples: int, long: float = LONG_DELAY, short: float = SHORT_DELAY,
                  gap: float = TIMER_GAP) -> list[TimerSample]:
    """Runs of ``delay -> no-op`` submitted one every ``gap`` s, alternately long and short."""
    engine = Engine(db=db)
    runs = []
    for i in range(samples):
        seconds = long if i % 2 == 0 else short
        runs.append((engine.submit(timer_workflow(seconds)), seconds))
        time.sleep(gap)
    ids = [r for r, _ in runs]
    wait_until(lambda: all(engine.store.info(r).status not in ("queued", "running", "waiting") for r in ids),
               "the timer runs to end", every=0.05)
    check_all_succeeded(engine, ids, "timer runs")
    out = []
    for run_id, seconds in runs:
        result = engine.status(run_id)
        wait, after = result.record("wait"), result.record("after")
        due = wait["started_at"] + seconds
        out.append(TimerSample(after["started_at"] - due, seconds, fired_by_takeover(engine, run_id),
                               wait["finished_at"] - due))
    # the worker logs a drive after the store says the run ended: give its log a moment to catch up
    wait_until(lambda: all(worker.drove().get(r, [None])[-1] == "succeeded" for r in ids),
               "the worker's log to report every timer run driven to its end", timeout=10, every=0.05)
    return out


def latency_row(name: str, seconds: list[float], how: str) -> list[str]:
    return [name, str(len(seconds)), ms(statistics.median(seconds)), ms(percentile(seconds, 99)), ms(max(seconds)),
            how]


def latency_section(cfg, fresh_db):
    n = QUICK_SAMPLES if cfg.quick else SAMPLES
    db = fresh_db()
    Engine(db=db)
    worker = started_worker(db, f"{db}.worker.log")
    try:
        answers = answer_samples(db, worker, n)
        timers = timer_samples(db, worker, n)
    finally:
        worker.stop()
    answer = [s.seconds for s in answers]
    fired = [s.seconds for s in timers]
    long = [s.seconds for s in timers if s.delay == LONG_DELAY]
    short = [s.seconds for s in timers if s.delay == SHORT_DELAY]
    if not all(s.by_takeover == (s.delay > 1.0) for s in timers):
        raise WorkerFailed("a long delay fired within its drive, or a short one by a takeover")
    rows = [latency_row("answer: resume() called -> applied (inbox done_at)", answer,
                        f"batches of {BATCH} runs held by the worker, answered one after the other"),
            latency_row("timer: due -> successor started, all", fired,
                        f"runs submitted one every {TIMER_GAP * 1e3:.0f} ms, delays alternately long and short"),
            latency_row(f"  delay {LONG_DELAY:g} s (> linger: fired by the worker's poll)", long, "takeover"),
            latency_row(f"  delay {SHORT_DELAY:g} s (< linger: fired within the drive)", short, "same drive")]
    late = max(abs(s.late_record) for s in timers)
    caption = (f"Latency with a `flowcore worker` process running (SQLite, one store), ms; the delay record's "
               f"finished_at is its due time (|finished_at - due| <= {late * 1e3:.3f} ms), so the successor's "
               f"start tells when it fired")
    checks = [Check(f"answer latency p99, {len(answer)} samples", percentile(answer, 99) * 1e3, 200, "<=", " ms"),
              Check(f"timer latency p99, {len(fired)} samples", percentile(fired, 99) * 1e3, 200, "<=", " ms")]
    return (caption, ["latency", "samples", "p50", "p99", "max", "how"], rows), checks, stuck_notes(worker)


# -- 3. idle CPU --------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (its threads included), from /proc/PID/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_store(db: str, finished: int = 50, waiting: int = 20) -> dict[str, int]:
    """Finished runs, runs waiting for a timer an hour away, for an answer (timeout in an hour), and
    answered ones (the inbox has history): nothing due for an hour."""
    engine = Engine(db=db)
    for _ in range(finished):
        engine.run(ten_node_workflow())
    for _ in range(waiting):
        engine.run(timer_workflow(3600))
    asked = [engine.run(answer_workflow(os.devnull)).run_id for _ in range(2 * waiting)]
    for run_id in asked[waiting:]:
        engine.resume(run_id, node="ask", input="yes")
    counts: dict[str, int] = {}
    for r in engine.runs():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def idle_cpu(db: str, seconds: float, settle: float = 1.0) -> tuple[float, float, WorkerProcess]:
    """(CPU seconds, wall seconds) of a serving ``flowcore worker`` over ``seconds``, after ``settle``."""
    worker = started_worker(db, f"{db}.worker.log")
    try:
        time.sleep(settle)
        cpu0, wall0 = cpu_seconds(worker.pid), time.perf_counter()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(worker.pid), time.perf_counter()
    finally:
        worker.stop()
    if worker.drove():
        raise WorkerFailed(f"the idle worker drove runs: {worker.drove()}")
    return cpu1 - cpu0, wall1 - wall0, worker


def idle_section(cfg, fresh_db):
    seconds = QUICK_IDLE_SECONDS if cfg.quick else IDLE_SECONDS
    db = fresh_db()
    counts = idle_store(db)
    cpu, wall, worker = idle_cpu(db, seconds)
    store = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    rows = [[f"{wall:.1f}", f"{cpu:.2f}", f"{100 * cpu / wall:.2f}", store]]
    caption = "Idle worker: `flowcore worker` on a store with nothing due for an hour, CPU from /proc/PID/stat"
    checks = [Check(f"idle worker CPU / wall over {seconds:g} s", 100 * cpu / wall, 1.0, "<", "%")]
    return (caption, ["wall s", "CPU s", "CPU %", "store"], rows), checks, stuck_notes(worker)


def run(cfg) -> Section:
    with FreshDb() as fresh_db:
        tables, checks, defects = [], [], []
        for part in (throughput_section, latency_section, idle_section):
            table, part_checks, part_defects = part(cfg, fresh_db)
            tables.append(table)
            checks += part_checks
            defects += part_defects
    notes = ["Workers are `flowcore worker --db PATH` child processes (max_runs 8, linger 1 s, poll 0.1 s); "
             "SQLite store (WAL, synchronous=NORMAL), thread runner, max_parallel 8.",
             "A worker's time includes its process start (see 'worker start'). Latency and idle CPU are one "
             "pass each (percentiles of the samples; one window), not medians of repeats.", *defects]
    return Section("11. Live runs (issue 11)", notes, tables, checks)
