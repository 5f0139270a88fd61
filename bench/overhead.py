"""Section 1: per-node overhead on random layered no-op DAGs.

Every node is a python node calling ``bench.nodes.nothing``, so a run's wall time divided by its
nodes is what scheduling one node costs. flowcore's serial and thread runners (``Engine(db=None)``,
``max_parallel=8``) are timed against the bare graphlib + ThreadPoolExecutor(8) loop and
``dask.threaded.get`` on the same graph, interleaved, median of the repeats.

Each contender is handed its graph built: the bare loop a dict of predecessors, dask its task
dict, flowcore the workflow loaded once (``load_workflow``: parsed, validated, compiled). What
loading costs is timed on its own, as a contender of its own, and the whole ``Engine.run`` of the
workflow as a dict (load + run) is quoted beside the runner figures.
"""
from __future__ import annotations

from adapters.workflow_file import load_workflow

from .baselines import bare_loop, dask_get
from .engine_runs import run_workflow
from .graphs import layered_dag
from .measure import interleaved, peak_rss
from .nodes import nothing
from .table import Check, Section, ratio, us

SIZES = (10_000, 20_000, 100_000)
QUICK_SIZES = (1_000, 2_000, 10_000)
MEMORY_LIMIT_MB = 1024


def contenders(dag) -> dict:
    declared = dag.workflow()
    loaded = load_workflow(declared)  # what the runs are given; loading is the "load" contender
    return {
        "bare loop": lambda: bare_loop(dag, nothing),
        "dask.threaded.get": lambda: dask_get(dag, nothing),
        "load": lambda: load_workflow(declared),
        "serial": lambda: run_workflow(loaded, "serial"),
        "thread": lambda: run_workflow(loaded, "thread"),
    }


def run(cfg) -> Section:
    small, mid, large = QUICK_SIZES if cfg.quick else SIZES
    times = {n: interleaved(contenders(layered_dag(n)), cfg.repeats) for n in (small, mid, large)}
    rows = []
    for n, t in times.items():
        per = {k: v / n for k, v in t.items()}
        rows.append([f"{n:,}", *(us(per[k]) for k in t), us(per["load"] + per["thread"]),
                     ratio(t["thread"] / t["dask.threaded.get"]), ratio(t["thread"] / t["bare loop"]),
                     ratio((t["load"] + t["thread"]) / t["bare loop"]), ratio(t["serial"] / t["bare loop"])])
    memory = peak_rss("dag", str(large), "serial")
    mid_t, scale = times[mid], large / small
    whole = {n: {r: t["load"] + t[r] for r in ("serial", "thread")} for n, t in times.items()}
    checks = [
        Check(f"thread / dask.threaded.get per node, {mid:,} nodes", mid_t["thread"] / mid_t["dask.threaded.get"], 0.5),
        Check(f"thread / bare loop per node, {mid:,} nodes", mid_t["thread"] / mid_t["bare loop"], 3),
        Check(f"serial time({large:,}) / time({small:,})", times[large]["serial"] / times[small]["serial"], 12),
        Check(f"serial peak RSS (VmHWM), {large:,} nodes, fresh process", memory["peak_rss_mb"], MEMORY_LIMIT_MB, "<", " MB"),
    ]
    notes = [
        f"Random layered DAGs: layers of 100, 1-3 random predecessors in the layer above; python nodes calling "
        f"a no-op. Wall time per node in µs, median of {cfg.repeats} interleaved repeats. Each contender is given "
        f"its graph built (the bare loop a predecessor dict, dask a task dict); serial and thread are Engine.run "
        f"of a workflow loaded once, and 'load µs' is load_workflow of the declared dict (parse, validate, "
        f"compile), which a run from a file or dict pays too: 'load+thread µs' and '(load+thread)/bare'.",
        f"Whole Engine.run from the dict (load + run), {mid:,} nodes: thread / bare loop "
        f"{ratio(whole[mid]['thread'] / mid_t['bare loop'])}x, thread / dask "
        f"{ratio(whole[mid]['thread'] / mid_t['dask.threaded.get'])}x; serial time({large:,}) / time({small:,}) "
        f"{ratio(whole[large]['serial'] / whole[small]['serial'])}x.",
        f"Scaling ({large:,} vs {small:,} nodes, {scale:g}x the nodes): serial {ratio(times[large]['serial'] / times[small]['serial'])}x, "
        f"thread {ratio(times[large]['thread'] / times[small]['thread'])}x, "
        f"load {ratio(times[large]['load'] / times[small]['load'])}x, "
        f"bare loop {ratio(times[large]['bare loop'] / times[small]['bare loop'])}x, "
        f"dask {ratio(times[large]['dask.threaded.get'] / times[small]['dask.threaded.get'])}x.",
        f"Peak memory: VmHWM (peak RSS) of a fresh `python -m bench.peak dag {large} serial` (interpreter, imports, graph "
        f"and the whole Engine.run from the dict): {memory['peak_rss_mb']:.0f} MB; {memory['before_run_mb']:.0f} MB "
        f"before Engine.run.",
    ]
    header = ["nodes", "bare µs", "dask µs", "load µs", "serial µs", "thread µs", "load+thread µs", "thread/dask",
              "thread/bare", "(load+thread)/bare", "serial/bare"]
    return Section("1. Per-node overhead (issue 2)", notes, [("Per-node wall time", header, rows)], checks)
