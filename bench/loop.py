"""Section: what one iteration of a ``loop`` costs, against a plain node.

A ``loop`` of 1,000 iterations whose body is one python node (``count_up``: the input plus one;
``until: @ >= 1000``) against a chain of 1,000 of the same python node, on the same runner, timed
interleaved in the same run (medians of the repeats). Both run every node 1,000 times one after
another, so the ratio of their times is what an iteration costs beside a plain node: the loop's
work per iteration (the exit edge, ``until``, the next iteration's entry edge) against the chain's
(one edge). Both are loaded once (``load_workflow``), as the other sections' contenders are.
"""
from __future__ import annotations

from adapters.workflow_file import load_workflow

from .engine_runs import run_workflow
from .measure import interleaved
from .table import Check, Section, ratio, us

COUNT_UP = "bench.nodes:count_up"
RUNNERS = ("serial", "thread")
TARGET = 2.0


def loop_workflow(n: int) -> dict:
    return {"name": "loop", "nodes": [{"id": "count", "type": "loop", "until": f"@ >= `{n}`", "max_iterations": n,
                                       "body": {"nodes": [{"id": "step", "type": "python", "call": COUNT_UP}]}}]}


def count_chain(n: int) -> dict:
    nodes = [{"id": f"n{i}", "type": "python", "call": COUNT_UP} for i in range(n)]
    return {"name": "chain", "nodes": nodes, "connections": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(n - 1)]}


def contenders(n: int) -> dict:
    loop, chain = load_workflow(loop_workflow(n)), load_workflow(count_chain(n))
    runs = {}
    for runner in RUNNERS:
        runs[f"chain, {runner}"] = lambda runner=runner: run_workflow(chain, runner, trigger=0)
        runs[f"loop, {runner}"] = lambda runner=runner: run_workflow(loop, runner, trigger=0)
    return runs


def run(cfg) -> Section:
    n = 100 if cfg.quick else 1_000
    t = interleaved(contenders(n), cfg.repeats)
    rows = [[runner, us(t[f"chain, {runner}"] / n), us(t[f"loop, {runner}"] / n),
             ratio(t[f"loop, {runner}"] / t[f"chain, {runner}"])] for runner in RUNNERS]
    checks = [Check(f"loop of {n:,} iterations / chain of {n:,} nodes, {runner} runner",
                    t[f"loop, {runner}"] / t[f"chain, {runner}"], TARGET) for runner in RUNNERS]
    notes = [f"A loop of {n:,} iterations of a one-node body (a python node adding one; until @ >= {n}) against a "
             f"chain of {n:,} of the same python node, Engine.run (in memory, max_parallel 8) of workflows loaded "
             f"once; µs per iteration and per chain node, median of {cfg.repeats} interleaved repeats."]
    header = ["runner", "chain µs/node", "loop µs/iteration", "loop/chain"]
    return Section("Loop iterations vs plain nodes (issue 14)", notes, [("Per iteration", header, rows)], checks)
