"""Section 13: a CPU-bound fan-out. The process runner and a two-worker Dask cluster against the thread runner.

A ``foreach`` of 16 items, each a python node doing about 0.5 s of pure-Python arithmetic
(``bench.nodes.crunch``: its rounds are calibrated at the start of the section, so that one item
takes that long alone on this machine), then a gather. Threads cannot run such code at once (one
interpreter lock), so the thread runner takes about the sum of the items' work: it is the baseline,
and each other contender's figure is its speed-up over it, measured in the same run, interleaved.

Contenders are the list ``CONTENDERS`` (the baseline is ``BASELINE``). Each has a name and a
``runs(workflow, trigger)`` context manager, entered once around all the repeats (where a contender
sets up what its runs need, a cluster say, and takes it down after), which yields the call that
runs the workflow once. The Dask cluster's ``runs`` (``bench.dask.cluster_runs``) starts a
scheduler and two ``dask worker`` processes of one thread each, and yields a call running the
workflow with the ``dask`` runner at their address.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

from .dask import cluster_runs
from .engine_runs import RunDidNotSucceed, run_workflow
from .live import QUICK_SPIN_COUNT, SPIN, SPIN_COUNT
from .measure import interleaved, median_of, timed
from .nodes import crunch
from .table import AtLeast, Section, ratio

ITEMS, QUICK_ITEMS = 16, 4
ITEM_SECONDS, QUICK_ITEM_SECONDS = 0.5, 0.2
WORKERS = os.cpu_count() or 2  # max_parallel of every contender: more than the CPUs cannot help CPU-bound work
SPEED_UP = 1.6  # issue 13's target on a 2-core machine
PROBE_ROUNDS = 300_000


@dataclass(frozen=True)
class Contender:
    """One way to run the fan-out (see the module's docstring)."""

    name: str
    runs: Callable  # (workflow, trigger) -> a context manager yielding a call that runs it once (a RunResult)


def on_runner(runner: str, **engine_options) -> Callable:
    """``runs`` for a runner of this process's ``Engine``: nothing to set up."""

    @contextlib.contextmanager
    def runs(workflow: dict, trigger: list):
        yield lambda: run_workflow(workflow, runner, trigger=trigger, max_parallel=WORKERS, **engine_options)

    return runs


BASELINE = Contender("thread runner", on_runner("thread"))
CONTENDERS = [Contender("process runner", on_runner("process")),
              Contender("dask runner, two-worker cluster", cluster_runs(WORKERS))]


def workflow(rounds: int) -> dict:
    return {"name": "cpu-fan-out",
            "nodes": [{"id": "each", "type": "foreach"},
                      {"id": "crunch", "type": "python", "call": "bench.nodes:crunch", "params": {"rounds": rounds}},
                      {"id": "gather", "type": "python", "call": "bench.nodes:pass_on"}],
            "connections": [{"from": "each", "to": "crunch", "port": "iteration"},
                            {"from": "crunch", "to": "gather"}]}


def calibrated_rounds(seconds: float) -> int:
    """The rounds of ``crunch`` that take about ``seconds`` alone here: from the fastest of five probes,
    the one other processes disturbed least (the machine is shared)."""
    probe = min(timed(lambda: crunch(rounds=PROBE_ROUNDS)) for _ in range(5))
    return max(1, round(PROBE_ROUNDS * seconds / probe))


@dataclass(frozen=True)
class Work:
    """What one run's items report: the CPU seconds their threads spent, and the processes they ran in."""

    cpu: float
    pids: frozenset


def work_of(result, items: int) -> Work:
    """The items' reports, from the gather's output; a run that did not run each item once is refused."""
    done = result.record("gather")["output"]
    if [d["item"] for d in done] != list(range(items)):
        raise RunDidNotSucceed(f"the fan-out's gather got items {[d['item'] for d in done]}, not 0..{items - 1}")
    return Work(sum(d["cpu"] for d in done), frozenset(d["pid"] for d in done))


def spinning(processes: int, count: int) -> Callable[[], None]:
    """What the machine gives CPU-bound processes now: ``count`` turns of a pure-Python loop shared
    by ``processes`` fresh interpreters (no flowcore, nothing shared): the ceiling of any contender."""
    def go():
        procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(count // processes)]) for _ in range(processes)]
        if any(p.wait() != 0 for p in procs):
            raise RuntimeError("a spinning process failed")
    return go


def measured(contenders: list[Contender], wf: dict, items: int, repeats: int,
             references: dict | None = None) -> tuple[dict, dict]:
    """{name: median wall seconds}, {name: [Work of each timed run]}: one untimed run of each first,
    then ``repeats`` interleaved rounds, in which ``references`` (name: a call) are timed too."""
    seen: dict[str, list[Work]] = {c.name: [] for c in contenders}
    with contextlib.ExitStack() as stack:
        calls = {c.name: stack.enter_context(c.runs(wf, list(range(items)))) for c in contenders}
        for call in calls.values():
            work_of(call(), items)  # warm: imports, caches, the process runner's fork server

        def recording(name, call):
            return lambda: seen[name].append(work_of(call(), items))

        timed_calls = {name: recording(name, call) for name, call in calls.items()}
        times = interleaved({**timed_calls, **(references or {})}, repeats)
    return times, seen


def run(cfg) -> Section:
    items, seconds = (QUICK_ITEMS, QUICK_ITEM_SECONDS) if cfg.quick else (ITEMS, ITEM_SECONDS)
    rounds = calibrated_rounds(seconds)
    count = QUICK_SPIN_COUNT if cfg.quick else SPIN_COUNT
    spins = {"CPU spin, 1 process": spinning(1, count), f"CPU spin, {WORKERS} processes": spinning(WORKERS, count)}
    times, seen = measured([BASELINE, *CONTENDERS], workflow(rounds), items, cfg.repeats, references=spins)
    machine = times["CPU spin, 1 process"] / times[f"CPU spin, {WORKERS} processes"]
    base = times[BASELINE.name]
    rows, checks = [], []
    for c in [BASELINE, *CONTENDERS]:
        wall = times[c.name]
        cpu = median_of([w.cpu for w in seen[c.name]])
        processes = max(len(w.pids) for w in seen[c.name])
        rows.append([c.name, f"{wall:.2f}", ratio(base / wall), ratio(cpu / wall), str(processes)])
        if c is not BASELINE:
            checks.append(AtLeast(f"{c.name}: speed-up over the thread runner, {items} items x {seconds:g} s",
                                  base / wall, SPEED_UP))
    notes = [f"foreach of {items} items -> crunch (pure-Python arithmetic, {rounds:,} rounds: about {seconds:g} s "
             f"alone here, calibrated at the start) -> gather; max_parallel {WORKERS} (this machine's CPUs) for every "
             f"contender. Wall time of the whole Engine.run in memory, median of {cfg.repeats} interleaved repeats, "
             f"after one untimed run each (the process runner's fork server starts once per driving process; its "
             f"workers start within every timed run). 'node CPU / wall': the CPU seconds the items' threads spent "
             f"over the wall time, how many cores the run kept busy. The machine is shared: CPU-bound contenders get "
             f"what other processes leave them. In the same rounds, {WORKERS} fresh interpreters spinning on a "
             f"pure-Python loop ran {machine:.2f}x as fast as one doing all the turns ({count:,}; CPU spin): what "
             f"the machine gave {WORKERS} CPU-bound processes meanwhile, the ceiling of any speed-up here."]
    header = ["contender", "wall s", "speed-up", "node CPU / wall", "processes"]
    return Section("13. CPU-bound fan-out (issue 13)", notes, [("CPU-bound fan-out", header, rows)], checks)
