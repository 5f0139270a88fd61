"""Section 13: what a level of ``subworkflow`` nesting costs (issue 14).

A chain of ``LEVELS`` workflow files, each one ``subworkflow`` node calling the next, ends in a
leaf workflow of one ``noop`` node: one run of the top file makes ``LEVELS`` child runs, nested.
Timed interleaved with runs of the leaf alone, in the same store: from its file (as the chain's
top is run) and from a workflow loaded once (no parsing: a child's file is parsed once while it
stays the same, so a level parses nothing). A level's cost is ``(chain - leaf from its file) /
LEVELS``: one run more (its own node parks, its child is stored and driven in a thread, its end
comes back as an event). The target: a level costs at most a run of the leaf alone plus 2 ms, the
leaf's run being the smaller of the two figures (the stricter target; it is the loaded one, but
for SQLite's noise). Measured on the thread runner, in memory and in SQLite (a level's run is logged as
the leaf's is, plus its child's end).
"""
from __future__ import annotations

import os
import tempfile

import yaml

from adapters.workflow_file import load_workflow

from .engine_runs import run_workflow
from .measure import interleaved
from .table import Check, Section, ratio

LEVELS = 10
REPEATS = 15
STORES = ("memory", "sqlite")
SLACK = 0.002  # seconds a level may cost beyond a run of its child alone


def write_chain(folder: str, levels: int = LEVELS) -> tuple[str, str]:
    """(leaf path, top path): ``level_0.yaml`` is one noop; ``level_k.yaml`` calls ``level_{k-1}.yaml``."""
    def dump(name, wf):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(wf, f)
        return path
    leaf = dump("level_0.yaml", {"name": "level_0", "nodes": [{"id": "work", "type": "noop"}], "connections": []})
    top = leaf
    for k in range(1, levels + 1):
        top = dump(f"level_{k}.yaml", {"name": f"level_{k}", "nodes": [
            {"id": "down", "type": "subworkflow", "workflow": f"level_{k - 1}.yaml", "max_depth": levels}],
            "connections": []})
    return leaf, top


def contenders(folder: str) -> dict:
    leaf, top = write_chain(folder)
    loaded = load_workflow(leaf)
    runs = {}
    for store in STORES:
        db = None if store == "memory" else os.path.join(folder, "bench.db")
        runs[(store, "leaf")] = lambda db=db: run_workflow(leaf, "thread", trigger={}, db=db)
        runs[(store, "loaded")] = lambda db=db: run_workflow(loaded, "thread", trigger={}, db=db)
        runs[(store, "chain")] = lambda db=db: run_workflow(top, "thread", trigger={}, db=db)
    return runs


def run(cfg) -> Section:
    repeats = max(cfg.repeats, 3 if cfg.quick else REPEATS)
    with tempfile.TemporaryDirectory(prefix="flowcore-bench-subworkflow-") as folder:
        t = interleaved(contenders(folder), repeats)
    rows, checks = [], []
    for store in STORES:
        leaf, loaded, chain = t[(store, "leaf")], t[(store, "loaded")], t[(store, "chain")]
        level = (chain - leaf) / LEVELS
        alone = min(leaf, loaded)
        rows.append([store, f"{leaf * 1e3:.2f}", f"{loaded * 1e3:.2f}", f"{chain * 1e3:.2f}",
                     f"{level * 1e3:.2f}", ratio(level / alone)])
        checks.append(Check(f"{store}: a level of subworkflow nesting, ms beyond a run of its child alone",
                            (level - alone) * 1e3, SLACK * 1e3, unit=" ms"))
    notes = [f"Engine.run (thread runner) of a {LEVELS}-level chain of subworkflow files ending in a one-noop "
             f"workflow, against runs of that leaf workflow alone (from its file; loaded once), in the same store; "
             f"medians of {repeats} interleaved repeats, in ms. A level = (chain - leaf from its file) / {LEVELS}; "
             f"the target compares it with the smaller of the leaf's two figures."]
    header = ["store", "leaf (file) ms", "leaf (loaded) ms", f"{LEVELS}-level chain ms", "per level ms",
              "level/leaf"]
    return Section("13. Subworkflow nesting (issue 14)", notes, [("Wall time", header, rows)], checks)
