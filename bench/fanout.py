"""Section 3: fan-out. Per-item overhead of foreach -> mapped node -> gather, and a map chain with
one slow item.

The per-item figure is a fan-out run's wall time over its items; its baseline is the per-node
figure of a plain node (section 1's 10,000-node layered no-op DAG), measured again here,
interleaved, on the same runner. The map chain (foreach -> a -> b -> c, ``map: true``, every step
of item 0 slow) is measured from the records: how long after the foreach finished each other
item's last step finished, against that item's own work, and against level-by-level (all items'
``a``, then all ``b``, then all ``c``).
"""
from __future__ import annotations

import time

from .baselines import level_by_level
from .engine_runs import run_workflow
from .graphs import MAP_STEPS, fan_out_workflow, layered_dag, map_chain_workflow
from .makespan import repeats as cheap_repeats
from .measure import interleaved, median_of, peak_rss
from .nodes import sleep_item
from .table import Check, Section, ms, ratio, us

SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
MEMORY_LIMIT_MB = 1024
RUNNERS = ("serial", "thread")
CHAIN = {"items": 6, "seconds": 0.1, "slow_item": 0, "slow_seconds": 0.5}


def per_item(cfg):
    """{(what, n, runner): median seconds} for plain DAGs and fan-outs."""
    small, large = QUICK_SIZES if cfg.quick else SIZES
    plain, fan = layered_dag(small).workflow(), fan_out_workflow()
    times = {}
    for n in (small, large):
        contenders = {("fan-out", n, r): (lambda r=r, n=n: run_workflow(fan, r, trigger=list(range(n)))) for r in RUNNERS}
        if n == small:
            contenders.update({("plain", n, r): (lambda r=r: run_workflow(plain, r)) for r in RUNNERS})
        times.update(interleaved(contenders, cfg.repeats))
    return small, large, times


def per_item_section(cfg):
    small, large, t = per_item(cfg)
    rows, checks = [], []
    for r in RUNNERS:
        node, item_small, item_large = t[("plain", small, r)] / small, t[("fan-out", small, r)] / small, \
            t[("fan-out", large, r)] / large
        growth = t[("fan-out", large, r)] / t[("fan-out", small, r)]
        rows.append([r, us(node), us(item_small), us(item_large), ratio(item_small / node), ratio(growth)])
        checks += [Check(f"{r}: per-item ({small:,} items) / per-node (plain {small:,}-node DAG)", item_small / node, 2),
                   Check(f"{r}: fan-out time({large:,}) / time({small:,})", growth, 12)]
    memory = peak_rss("fanout", str(large), "serial")
    checks.append(Check(f"serial peak RSS (VmHWM), {large:,}-item fan-out, fresh process", memory["peak_rss_mb"],
                        MEMORY_LIMIT_MB, "<", " MB"))
    header = ["runner", "plain node µs", f"item µs ({small:,})", f"item µs ({large:,})", "item/node",
              f"time {large:,}/{small:,}"]
    note = (f"Peak memory of a {large:,}-item fan-out (fresh `python -m bench.peak fanout {large} serial`): "
            f"{memory['peak_rss_mb']:.0f} MB; {memory['before_run_mb']:.0f} MB before Engine.run. "
            f"The 1 GB limit is issue 2's, for 100,000 nodes.")
    return ("Per-item overhead: foreach -> each (python no-op) -> gather, trigger = list of N ints", header, rows), \
        checks, note


def chain_lags_flowcore(workflow, items) -> tuple[list[float], float]:
    """Per item: seconds from the foreach's finish to the item's last step's finish."""
    records = run_workflow(workflow, "thread", trigger=list(range(items))).to_dict()["nodes"]
    t0 = next(r["finished_at"] for r in records if r["node"] == "items")
    last = {r["item"][0]: r["finished_at"] for r in records if r["node"] == MAP_STEPS[-1]}
    return [last[i] - t0 for i in range(items)]


def chain_lags_levels(items) -> list[float]:
    params = {k: CHAIN[k] for k in ("seconds", "slow_item", "slow_seconds")}
    levels = [[(s, i) for i in range(items)] for s in MAP_STEPS]
    t0 = time.perf_counter()
    finished = level_by_level(levels, lambda x: sleep_item(x[1], **params), workers=8)
    return [finished[(MAP_STEPS[-1], i)] - t0 for i in range(items)]


def map_chain_section(cfg):
    items, slow = CHAIN["items"], CHAIN["slow_item"]
    workflow = map_chain_workflow(CHAIN["seconds"], slow, CHAIN["slow_seconds"], max_parallel=8)
    own = len(MAP_STEPS) * CHAIN["seconds"]
    runs = {"flowcore thread": [], "level-by-level": []}
    for _ in range(cheap_repeats(cfg)):
        runs["flowcore thread"].append(chain_lags_flowcore(workflow, items))
        runs["level-by-level"].append(chain_lags_levels(items))
    rows, worst = [], {}
    for name, lags in runs.items():
        worst[name] = median_of([max(l for i, l in enumerate(run) if i != slow) for run in lags])
        slow_done = median_of([run[slow] for run in lags])
        rows.append([name, ms(own), ms(worst[name]), ratio(worst[name] / own), ms(slow_done)])
    checks = [Check("map chain: other items' last step / their own work (flowcore)", worst["flowcore thread"] / own, 1.10),
              Check("map chain: flowcore / level-by-level, other items", worst["flowcore thread"] / worst["level-by-level"],
                    1.0, "<")]
    header = ["execution", "own work ms", "others done ms", "others/own", "slow item done ms"]
    caption = (f"Map chain: {items} items, a -> b -> c per item ({CHAIN['seconds'] * 1e3:.0f} ms a step; item {slow}: "
               f"{CHAIN['slow_seconds'] * 1e3:.0f} ms a step); worst other item, median of {cheap_repeats(cfg)} repeats")
    return (caption, header, rows), checks


def run(cfg) -> Section:
    item_table, item_checks, memory_note = per_item_section(cfg)
    chain_table, chain_checks = map_chain_section(cfg)
    notes = [f"Per-item: median of {cfg.repeats} interleaved repeats, per-item and per-node wall time in µs. "
             f"Map chain: times from the run's records (finished_at), from when the foreach finished.", memory_note]
    return Section("3. Fan-out (issue 3)", notes, [item_table, chain_table], item_checks + chain_checks)
