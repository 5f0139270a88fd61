"""Section 2: makespan of I/O-bound DAGs (python nodes that sleep), with workers to spare.

flowcore's thread runner is timed against two baselines on the same graph: the critical path (the
sum of sleeps along the longest path, computed: no schedule can beat it) and a level-by-level
execution (each topological level on a ThreadPoolExecutor(8), the whole level awaited before the
next), measured. Graphs have branches of unequal length, where lock-step levels lose time.
"""
from __future__ import annotations

import time

from .baselines import level_by_level
from .engine_runs import run_workflow
from .graphs import Dag, random_io_dag, unequal_branches
from .measure import interleaved
from .table import Check, Section, ms, ratio

WORKERS = 8
CHEAP_REPEATS = 5  # these runs take a fraction of a second: more repeats steady the median


def repeats(cfg) -> int:
    return max(cfg.repeats, CHEAP_REPEATS)


def graphs() -> dict[str, Dag]:
    return {
        "4 chains, one slow step each (22 nodes)": unequal_branches(),
        "random layered, width 6 (48 nodes)": random_io_dag(),
    }


def level_baseline(dag: Dag):
    levels = dag.levels()
    return lambda: level_by_level(levels, lambda v: time.sleep(dag.seconds[v]), WORKERS)


def run(cfg) -> Section:
    rows, checks = [], []
    for name, dag in graphs().items():
        t = interleaved({"flowcore thread": lambda: run_workflow(dag.workflow(max_parallel=WORKERS), "thread"),
                         "level-by-level": level_baseline(dag)}, repeats(cfg))
        critical = dag.critical_path()
        flow, level = t["flowcore thread"], t["level-by-level"]
        rows.append([name, ms(critical), ms(flow), ms(level), ratio(flow / critical), ratio(flow / level),
                     ratio(level / critical)])
        checks += [Check(f"{name}: thread / critical path", flow / critical, 1.10),
                   Check(f"{name}: thread / level-by-level", flow / level, 1.0, "<")]
    notes = [f"Nodes sleep 20-100 ms; max_parallel {WORKERS} (workers suffice: no level is wider than 6). "
             f"Wall time of the whole Engine.run (load, compile, run) in ms, median of {repeats(cfg)} interleaved repeats."]
    header = ["graph", "critical ms", "thread ms", "levels ms", "thread/critical", "thread/levels", "levels/critical"]
    return Section("2. Makespan of I/O-bound DAGs (issue 2)", notes, [("Makespan", header, rows)], checks)
