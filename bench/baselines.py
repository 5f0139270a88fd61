"""What flowcore is measured against: the same graph run by the simplest correct schedulers.

- ``bare_loop``: graphlib.TopologicalSorter + ThreadPoolExecutor; submits every ready node, collects
  completions with ``wait(FIRST_COMPLETED)``, calls ``done()``. The floor for an eager thread-pool
  scheduler in Python: no records, no events, no caps beyond the pool.
- ``dask_get``: ``dask.threaded.get`` on the equivalent dask graph dict.
- ``level_by_level``: each topological level on a thread pool, waiting for the whole level before
  the next: how engines that run in lock-step "levels" behave.
"""
from __future__ import annotations

import graphlib
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from .graphs import Dag


def bare_loop(dag: Dag, call: Callable[[str], object], workers: int = 8) -> None:
    sorter = graphlib.TopologicalSorter(dag.preds)
    sorter.prepare()
    with ThreadPoolExecutor(workers) as pool:
        running: dict = {}
        while sorter.is_active():
            for v in sorter.get_ready():
                running[pool.submit(call, v)] = v
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
                sorter.done(running.pop(future))


def dask_get(dag: Dag, fn: Callable, workers: int = 8) -> None:
    import dask.threaded

    dask.threaded.get(dag.dask_graph(fn), dag.sinks(), num_workers=workers)


def level_by_level(levels: list[list], call: Callable, workers: int = 8) -> dict:
    """Run ``call(x)`` for each level in turn; returns when each ``x`` finished (perf_counter)."""
    finished: dict = {}

    def timed_call(x):
        call(x)
        finished[x] = time.perf_counter()

    with ThreadPoolExecutor(workers) as pool:
        for level in levels:
            for future in [pool.submit(timed_call, x) for x in level]:
                future.result()
    return finished
