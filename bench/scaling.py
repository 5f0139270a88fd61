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
from the scheduler's; and the same kind of DAG with its layers as wide at 100,000 nodes as at
10,000 (more layers instead), to tell the share of the wider layers: the ready queue holds a
layer, so a wider one is a larger working set between a node becoming ready and its start (the
CPU's caches), whatever the scheduler does per node.
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


def deep_contenders(n: int, layers: int = DEEP_LAYERS) -> dict:
    loaded = load_workflow(deep_join_dag(n, layers).workflow("deep-joins", node=noop_node))

    def serial():
        return run_workflow(loaded, "serial")
    return {"serial": serial, "serial, collector off": collector_off(serial)}


def deep_shapes(small: int, large: int) -> dict:
    """shape -> {nodes: layers}: the issue's 50 layers at both sizes (the layers widen), and layers as
    wide at ``large`` as at ``small`` (their number grows instead)."""
    width = small // DEEP_LAYERS
    return {f"{DEEP_LAYERS} layers": {small: DEEP_LAYERS, large: DEEP_LAYERS},
            f"layers of {width:,}": {small: DEEP_LAYERS, large: large // width}}


def deep_section(cfg):
    small, large = QUICK_DEEP_SIZES if cfg.quick else DEEP_SIZES
    shapes = deep_shapes(small, large)
    times = interleaved({(shape, name, n): fn for shape, sizes in shapes.items() for n, layers in sizes.items()
                         for name, fn in deep_contenders(n, layers).items()}, cfg.repeats)
    names = ("serial", "serial, collector off")
    rows = []
    for shape, sizes in shapes.items():
        rows += [[shape, f"{n:,}", f"{n // layers:,}", *(us(times[(shape, name, n)] / n) for name in names)]
                 for n, layers in sizes.items()]
        rows.append([shape, f"time {large:,}/{small:,}", "",
                     *(ratio(times[(shape, name, large)] / times[(shape, name, small)]) for name in names)])
    header = ["DAG", "nodes", "layer width", "serial µs/node", "collector off µs/node"]
    caption = "Serial runner on layered DAGs of noop joins (2-3 predecessors in the layer above)"
    note = (f"Deep joins: Engine.run (serial, db=None, max_parallel=8) of the workflow loaded once; wall time per node "
            f"in µs, median of {cfg.repeats} interleaved repeats; 'collector off' is the same run with gc disabled. "
            f"The target is on the {DEEP_LAYERS}-layer DAG with the collector on; the other figures split its growth: "
            f"the collector's (collector off), the wider layers' (layers of one width), and the scheduler's own "
            f"(both).")
    issue_shape = next(iter(shapes))
    check = Check(f"serial on {DEEP_LAYERS}-layer noop joins: time({large:,}) / time({small:,})",
                  times[(issue_shape, "serial", large)] / times[(issue_shape, "serial", small)], DEEP_LIMIT)
    return (caption, header, rows), [check], note


def run(cfg) -> Section:
    nested_table, nested_checks, nested_note = nested_section(cfg)
    deep_table, deep_checks, deep_note = deep_section(cfg)
    return Section("6. Scaling of the core (issue 10)", [nested_note, deep_note], [nested_table, deep_table],
                   nested_checks + deep_checks)
