"""Section 6: what giving node code values of its own costs (issue 10).

A python node's function gets copies of its input and params, and a result is recorded as a copy
(``runners.private_values``). Each workflow runs twice, interleaved: as flowcore runs it, and with
the copies switched off (``values_shared``: the function gets, and the record keeps, the very
object, as before issue 10); the ratio of the two is the copies' cost. Two workflows: a chain of
python nodes passing a 1 KB dict on (two copies of it per node: the input, the recorded result),
and section 1's 10,000-node layered no-op DAG (inputs None, or a list of Nones at a join: the
fast path every no-op node of the other sections pays).
"""
from __future__ import annotations

import contextlib
import json

import adapters.node_types.python
from adapters.workflow_file import load_workflow

from .engine_runs import run_workflow
from .graphs import chain_workflow, kilobyte_payload, layered_dag
from .measure import interleaved
from .table import Check, Section, ratio, us

SIZES = {"chain": 2_000, "dag": 10_000}
QUICK_SIZES = {"chain": 300, "dag": 1_000}
RUNNERS = ("serial", "thread")
REPEATS = 7  # at least: the differences are a few per cent of a figure


@contextlib.contextmanager
def values_shared():
    """Runs inside hand node code the recorded objects themselves, and record results uncopied."""
    module = adapters.node_types.python
    saved = module.private_copy, module.recorded_ports
    module.private_copy = module.recorded_ports = _same
    try:
        yield
    finally:
        module.private_copy, module.recorded_ports = saved


def _same(value):
    return value


def shared(run):
    def in_shared_mode():
        with values_shared():
            return run()
    return in_shared_mode


def contenders(sizes: dict) -> dict:
    """{(workflow, runner, "copied" | "shared"): run}"""
    workflows = {"chain": (load_workflow(chain_workflow(sizes["chain"])), kilobyte_payload()),
                 "dag": (load_workflow(layered_dag(sizes["dag"]).workflow()), None)}
    runs = {}
    for name, (workflow, trigger) in workflows.items():
        for runner in RUNNERS:
            def run(workflow=workflow, runner=runner, trigger=trigger):
                return run_workflow(workflow, runner, trigger=trigger)
            runs[(name, runner, "copied")] = run
            runs[(name, runner, "shared")] = shared(run)
    return runs


def run(cfg) -> Section:
    sizes = QUICK_SIZES if cfg.quick else SIZES
    repeats = max(cfg.repeats, REPEATS)
    t = interleaved(contenders(sizes), repeats)
    labels = {"chain": f"1 KB dict, {sizes['chain']:,}-node chain", "dag": f"no-op, {sizes['dag']:,}-node DAG"}
    rows, checks = [], []
    for name, label in labels.items():
        n = sizes[name]
        for runner in RUNNERS:
            copied, kept = t[(name, runner, "copied")], t[(name, runner, "shared")]
            rows.append([label, runner, us(kept / n), us(copied / n), us((copied - kept) / n), ratio(copied / kept)])
    for runner in RUNNERS:
        checks.append(Check(f"{runner}: no-op DAG per node, values copied / shared",
                            t[("dag", runner, "copied")] / t[("dag", runner, "shared")], 1.05))
    size = len(json.dumps(kilobyte_payload()))
    notes = [f"Engine.run in memory of a workflow loaded once; wall time per node in µs, median of {repeats} "
             f"interleaved repeats. The chain's trigger is a {size}-byte JSON record (tags, 12 line items) that every "
             f"node returns as it got it. 'shared' switches the copies off, as before issue 10. The copies of the "
             f"chain's payload are reported, not targeted (they grow with the payload); the no-op DAG's are held "
             f"to noise."]
    header = ["workflow", "runner", "shared µs", "copied µs", "copies µs", "copied/shared"]
    return Section("6. Values of their own (issue 10)", notes, [("Per-node wall time", header, rows)], checks)
