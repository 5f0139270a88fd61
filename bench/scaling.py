"""Section 6: how the core's cost grows with the run (issue 10). Nested capped fan-outs, and the
serial runner on a 50-layer DAG of ``noop`` joins.

Nested fan-outs are driven through ``step`` by hand (``step_runs.drive_step``: no runner, every
started instance completed at once, one completion per step), so the figure is what a step costs.
The inner foreach capped at ``max_parallel: 1`` makes one ready queue per outer item; its baseline
is the same workflow uncapped, timed interleaved with it at each size. A step that costs O(change)
costs about the same either way, at any size; one that costs O(ready queues) grows with the
outer items.

The serial runner (``Engine(db=None)``, ``max_parallel=8``, on the workflow loaded once, as in
section 1) runs a DAG of 50 layers whose width grows with the nodes, each node joining 2-3 of the
layer above; time(100,000) / time(10,000) is 10 for a cost per node that does not grow. Beside it,
the same runs with the cyclic collector disabled, to tell the collector's share of the growth
from the scheduler's.
"""
from __future__ import annotations

import gc

from adapters.workflow_file import load_workflow
from scheduler_core import compile_workflow

from .engine_runs import run_workflow
from .graphs import deep_join_dag, nested_fan_out_workflow, noop_node
from .measure import interleaved
from .step_runs import drive_step
from .table import Check, Section, ratio, us

NESTED_SIZES, QUICK_NESTED_SIZES = (500, 2_000), (100, 400)  # outer items
INNER_ITEMS = 3
INNER_CAP = 1
NESTED_LIMIT = 2  # a capped step costs about what an uncapped one does
DEEP_SIZES, QUICK_DEEP_SIZES = (10_000, 100_000), (1_000, 10_000)
DEEP_LAYERS = 50
DEEP_LIMIT = 11


def nested_trigger(outer: int) -> list:
    return [list(range(INNER_ITEMS)) for _ in range(outer)]


def nested_graphs() -> dict:
    """{"capped" | "uncapped": the compiled graph}, compiled once (the engine's default cap of 8)."""
    caps = {"capped": INNER_CAP, "uncapped": None}
    return {name: compile_workflow(load_workflow(nested_fan_out_workflow(cap)), max_parallel=8)
            for name, cap in caps.items()}


def nested_contenders(outer: int, steps: dict) -> dict:
    """{name: one run through step}; each run notes its step count in ``steps[(name, outer)]``."""
    trigger = nested_trigger(outer)

    def contender(name, graph):
        def run():
            steps[(name, outer)] = drive_step(graph, trigger)
        return run
    return {name: contender(name, g) for name, g in nested_graphs().items()}


def nested_section(cfg):
    sizes = QUICK_NESTED_SIZES if cfg.quick else NESTED_SIZES
    steps: dict = {}
    times = interleaved({(name, n): fn for n in sizes for name, fn in nested_contenders(n, steps).items()},
                        cfg.repeats)
    per_step = {key: t / steps[key] for key, t in times.items()}
    rows = [[f"{n:,}", f"{steps[('capped', n)]:,}", us(per_step[("uncapped", n)]), us(per_step[("capped", n)]),
             ratio(per_step[("capped", n)] / per_step[("uncapped", n)])] for n in sizes]
    small, large = sizes
    growth = {name: per_step[(name, large)] / per_step[(name, small)] for name in ("capped", "uncapped")}
    header = ["outer items", "steps", "uncapped µs/step", "capped µs/step", "capped/uncapped"]
    caption = (f"Nested fan-outs driven through step: outer foreach -> inner foreach of {INNER_ITEMS} items "
               f"(capped: max_parallel {INNER_CAP}) -> noop")
    note = (f"Nested fan-outs: per-step µs, median of {cfg.repeats} interleaved repeats; both workflows take the same "
            f"steps (the start, the outer foreach, each inner foreach, each of their items). Per-step time from {small:,} to {large:,} outer "
            f"items ({large / small:g}x the queues when capped): capped {ratio(growth['capped'])}x, "
            f"uncapped {ratio(growth['uncapped'])}x.")
    check = Check(f"nested fan-out, {large:,} outer items: capped / uncapped per step",
                  per_step[("capped", large)] / per_step[("uncapped", large)], NESTED_LIMIT)
    return (caption, header, rows), [check], note


def collector_off(fn):
    """``fn`` with the cyclic collector disabled for the call (restored after, as it was)."""
    def call():
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if was_enabled:
                gc.enable()
    return call


def deep_contenders(n: int) -> dict:
    loaded = load_workflow(deep_join_dag(n, DEEP_LAYERS).workflow("deep-joins", node=noop_node))

    def serial():
        return run_workflow(loaded, "serial")
    return {"serial": serial, "serial, collector off": collector_off(serial)}


def deep_section(cfg):
    small, large = QUICK_DEEP_SIZES if cfg.quick else DEEP_SIZES
    times = interleaved({(name, n): fn for n in (small, large) for name, fn in deep_contenders(n).items()},
                        cfg.repeats)
    names = ("serial", "serial, collector off")
    rows = [[f"{n:,}", f"{n // DEEP_LAYERS:,}", *(us(times[(name, n)] / n) for name in names)] for n in (small, large)]
    rows.append([f"time {large:,}/{small:,}", "", *(ratio(times[(name, large)] / times[(name, small)]) for name in names)])
    header = ["nodes", "layer width", "serial µs/node", "collector off µs/node"]
    caption = f"Serial runner on a {DEEP_LAYERS}-layer DAG of noop joins (2-3 predecessors in the layer above)"
    note = (f"Deep joins: Engine.run (serial, db=None, max_parallel=8) of the workflow loaded once; wall time per node "
            f"in µs, median of {cfg.repeats} interleaved repeats; 'collector off' is the same run with gc disabled.")
    check = Check(f"serial on {DEEP_LAYERS}-layer noop joins: time({large:,}) / time({small:,})",
                  times[("serial", large)] / times[("serial", small)], DEEP_LIMIT)
    return (caption, header, rows), [check], note


def run(cfg) -> Section:
    nested_table, nested_checks, nested_note = nested_section(cfg)
    deep_table, deep_checks, deep_note = deep_section(cfg)
    return Section("6. Scaling of the core (issue 10)", [nested_note, deep_note], [nested_table, deep_table],
                   nested_checks + deep_checks)
