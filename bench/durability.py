"""Section 4: durability. The SQLite store against the in-memory store, and loading a stored run.

The same 10,000-node no-op DAG runs with ``Engine(db=None)`` and ``Engine(db=path)`` (a fresh
file per run, in a temporary directory), interleaved, on the serial and thread runners. Then a
run of 100,000 events is stored once and loaded back by a fresh ``Engine`` (no cache):
``Engine.load`` reads the snapshot the run left (tagged JSON, ``adapters.snapshots``; the section
fails if a run long enough to leave one did not) and replays the log after it through ``step``; the time it took to *run*
is its baseline. Two such runs: a 100,000-node DAG (a big definition) and a 100,000-item fan-out
(a three-node definition).
"""
from __future__ import annotations

import os
import tempfile
import time

from adapters import Engine, recovery, snapshots

from .engine_runs import run_workflow
from .graphs import fan_out_workflow, layered_dag
from .measure import interleaved, median_of, timed
from .table import Check, Section, ms, ratio

SIZE, QUICK_SIZE = 10_000, 1_000
EVENTS, QUICK_EVENTS = 100_000, 10_000
RUNNERS = ("serial", "thread")


class FreshDb:
    """A new SQLite file path per call, all in one temporary directory removed at the end."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="flowcore-bench-")
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return os.path.join(self.dir.name, f"run{self.count}.db")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.dir.cleanup()


def store_section(cfg, fresh_db):
    n = QUICK_SIZE if cfg.quick else SIZE
    workflow = layered_dag(n).workflow()
    contenders = {}
    for r in RUNNERS:
        contenders[("memory", r)] = lambda r=r: run_workflow(workflow, r)
        contenders[("sqlite", r)] = lambda r=r: run_workflow(workflow, r, db=fresh_db())
    t = interleaved(contenders, cfg.repeats)
    rows, checks = [], []
    for r in RUNNERS:
        memory, sqlite = t[("memory", r)], t[("sqlite", r)]
        rows.append([r, ms(memory), ms(sqlite), ratio(sqlite / memory)])
        checks.append(Check(f"{r}: SQLite / in-memory, {n:,}-node no-op DAG", sqlite / memory, 1.5))
    header = ["runner", "in-memory ms", "SQLite ms", "SQLite/memory"]
    return (f"Store: {n:,}-node layered no-op DAG, median of {cfg.repeats} interleaved repeats", header, rows), checks


def stored_runs(events: int) -> dict:
    """name -> (workflow, trigger): runs that log about ``events`` events (one per instance)."""
    return {f"{events:,}-node DAG": (layered_dag(events).workflow(), None),
            f"{events:,}-item fan-out": (fan_out_workflow(), list(range(events)))}


def load_once(path: str, run_id: str, use_snapshot: bool = True):
    return Engine(db=path).load(run_id, use_snapshot=use_snapshot)


def replay_row(cfg, name, workflow, trigger, path):
    start = time.perf_counter()
    result = run_workflow(workflow, "serial", trigger=trigger, db=path)
    ran = time.perf_counter() - start
    store = Engine(db=path).store
    _, batches, _ = store.load(result.run_id)
    events = sum(len(b) for b in batches)
    snap = store.snapshot(result.run_id)
    usable = snap is not None and snap.version == snapshots.version()
    if events >= recovery.SNAPSHOT_EVERY and not usable:  # else 'load' would time a full replay
        raise RuntimeError(f"the stored run {name} left no snapshot this code can load")
    read = median_of([timed(lambda: store.load(result.run_id)) for _ in range(cfg.repeats)])
    load = median_of([timed(lambda: load_once(path, result.run_id)) for _ in range(cfg.repeats)])
    full = median_of([timed(lambda: load_once(path, result.run_id, False)) for _ in range(cfg.repeats)])
    row = [name, f"{events:,}", f"{len(snap.data) / 1e6:.1f}" if usable else "none", ms(ran), ms(read), ms(load), ms(full), ratio(load / ran)]
    return row, Check(f"load (snapshot + replay of the tail), {name} ({events:,} events)", load, 1.0, "<", " s")


def replay_section(cfg, fresh_db):
    events = QUICK_EVENTS if cfg.quick else EVENTS
    rows, checks = [], []
    for name, (workflow, trigger) in stored_runs(events).items():
        row, check = replay_row(cfg, name, workflow, trigger, fresh_db())
        rows.append(row)
        checks.append(check)
    header = ["stored run (SQLite, serial runner)", "events", "snapshot MB", "run ms", "read+decode ms", "load ms",
              "full replay ms", "load/run"]
    caption = (f"Loading a stored run in a fresh Engine, median of {cfg.repeats}: 'load' is Engine(db=path).load(run_id) "
               f"(the snapshot the run left, then a checked replay of any steps after it); 'full replay' is "
               f"load(run_id, use_snapshot=False), every event through step; read+decode is the store's part")
    return (caption, header, rows), checks


def run(cfg) -> Section:
    with FreshDb() as fresh_db:
        store_table, store_checks = store_section(cfg, fresh_db)
        replay_table, replay_checks = replay_section(cfg, fresh_db)
    notes = ["SQLite: WAL, synchronous=NORMAL, one transaction per step (the store's defaults); a fresh file per run."]
    return Section("4. Durability (issue 4)", notes, [store_table, replay_table], store_checks + replay_checks)
