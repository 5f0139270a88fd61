"""``python -m bench [--quick] [--only NAME] [--repeats N]``: run the benchmark sections, print the report."""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from dataclasses import dataclass

SECTIONS = {
    "overhead": "per-node overhead on no-op DAGs vs graphlib loop and dask (issue 2)",
    "makespan": "I/O-bound makespan vs critical path and level-by-level (issue 2)",
    "fanout": "foreach -> mapped -> gather per-item overhead; a map chain with a slow item (issue 3)",
    "durability": "SQLite vs in-memory; loading and replaying a stored run (issue 4)",
    "simulated": "the simulated runner on 10,000 delay nodes (issue 3)",
    "scaling": "nested capped fan-outs through step; serial on a 50-layer DAG of noop joins (issue 10)",
    "values": "what copying the values node code gets costs, per node of a chain (issue 10)",
    "live": "worker processes vs Engine.run; answer and timer latency; an idle worker's CPU (issue 11)",
    "web": "flowcore serve: GET a 1,000-instance run, a 10,000-instance page in Chromium, event latency (issue 12)",
    "postgres": "the PostgreSQL store vs in memory and SQLite; 1 and 4 workers on one PostgreSQL store (issue 13)",
    "cpu": "a CPU-bound fan-out on the process runner and on a two-worker dask cluster vs the thread runner (issue 13)",
    "dask": "the dask runner's per-node overhead on a two-worker cluster vs distributed itself (issue 13)",
    "loop": "a loop of 1,000 iterations of a one-node body vs a chain of 1,000 of the node (issue 14)",
    "subworkflow": "a 10-level chain of subworkflow files vs a run of its leaf alone (issue 14)",
    "joins": "join any with cancel_rest over 100 slow branches: the losers end within 5 ms of the winner (issue 14)",
}


@dataclass(frozen=True)
class Config:
    quick: bool
    repeats: int


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     epilog="sections: " + "; ".join(f"{k}: {v}" for k, v in SECTIONS.items()))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not the figures")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", metavar="NAME",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement, at least 3 (default 3)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3: figures are medians of repeats")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    cfg = Config(quick=args.quick, repeats=args.repeats)
    names = args.only or list(SECTIONS)
    print(f"flowcore bench: {'QUICK (smoke test) ' if cfg.quick else ''}{cfg.repeats} repeats, median; "
          f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.machine()}")
    verdicts = []
    for name in names:
        start = time.perf_counter()
        section = importlib.import_module(f"bench.{name}").run(cfg)
        print()
        print(section.render())
        print(f"({name}: {time.perf_counter() - start:.0f} s)")
        sys.stdout.flush()
        verdicts += [(name, c) for c in section.checks]
    missed = [f"{name}: {c.target}" for name, c in verdicts if not c.passed]
    print(f"\n{len(verdicts) - len(missed)} of {len(verdicts)} targets met" + ("; missed:" if missed else ""))
    for line in missed:
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
