"""Section 14: the dask runner's per-node overhead on a real cluster, against distributed itself (issue 13).

The section starts a ``dask scheduler`` and two ``dask worker`` processes, one thread each, on
this machine (``two_worker_cluster``: the repository on their ``PYTHONPATH``, so ``bench.nodes``
imports there too), and stops them at its end; starting them is not timed. The same cluster
serves the ``cpu`` section's dask contender (``cluster_runs``).

The layered no-op DAG of section 1 is run by flowcore's dask runner on the cluster
(``Engine(runner="dask", dask_address=...).run`` of the workflow loaded once; connecting to the
scheduler is part of each run), against the same graph given to ``distributed`` directly on the
same cluster through one client connected beforehand: ``client.get`` of the whole graph dict (the
scheduler resolves the dependencies; the target's baseline), and ``client.submit`` node by node
with the predecessors' futures as arguments. flowcore runs with ``max_parallel`` at the layer
width, so its cap is not what limits it; at the default cap of 8 it is latency-bound (every
node's result comes back to the driving process before its successors start), shown beside it
and not targeted.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from adapters.workflow_file import load_workflow

from .engine_runs import run_workflow
from .graphs import layered_dag
from .measure import REPO_ROOT, interleaved
from .nodes import nothing
from .table import Check, Section, ratio

NODES, QUICK_NODES = 2_000, 300
WIDTH = 100  # the layered DAG's layer width: flowcore's max_parallel in the overhead runs
WORKERS, THREADS = 2, 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def two_worker_cluster():
    """The address of a scheduler and ``WORKERS`` workers of ``THREADS`` threads, for the block."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    commands = [["scheduler", "--host", "127.0.0.1", "--port", address.rpartition(":")[2], "--no-dashboard"]]
    commands += [["worker", address, "--nthreads", str(THREADS), "--no-dashboard", "--memory-limit", "0"]] * WORKERS
    with tempfile.TemporaryFile("w+") as log:
        processes = [subprocess.Popen([dask, *c], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True) for c in commands]
        try:
            with Client(address, timeout=30, set_as_default=False) as client:
                client.wait_for_workers(WORKERS, timeout=60)
            yield address
        finally:
            for p in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)  # its session: a nanny and the worker it started
            for p in processes:
                p.wait(30)


def cluster_runs(max_parallel: int):
    """A ``cpu`` contender's ``runs``: the dask runner on a two-worker cluster started for its repeats."""

    @contextlib.contextmanager
    def runs(workflow: dict, trigger: list):
        with two_worker_cluster() as address:
            yield lambda: run_workflow(workflow, "dask", trigger=trigger, max_parallel=max_parallel,
                                       dask_address=address)
    return runs


def overhead_contenders(address: str, client, n: int) -> dict:
    dag = layered_dag(n, width=WIDTH)
    loaded = load_workflow(dag.workflow())
    graph, sinks = dag.dask_graph(nothing), dag.sinks()

    def by_futures():
        futures: dict = {}
        for v, us in dag.preds.items():  # keys of their own: the same keys would be the last run's results
            futures[v] = client.submit(nothing, *(futures[u] for u in us), key=f"{v}-{time.monotonic_ns()}")
        client.gather([futures[s] for s in sinks])

    return {
        "distributed client.get": lambda: client.get(graph, sinks),
        "distributed submit": by_futures,
        "flowcore dask": lambda: run_workflow(loaded, "dask", max_parallel=WIDTH, dask_address=address),
        "flowcore dask, cap 8": lambda: run_workflow(loaded, "dask", max_parallel=8, dask_address=address),
    }


def run(cfg) -> Section:
    from distributed import Client

    n = QUICK_NODES if cfg.quick else NODES
    with two_worker_cluster() as address, Client(address, set_as_default=False) as client:
        per_node = {k: v / n for k, v in interleaved(overhead_contenders(address, client, n), cfg.repeats).items()}
    base = per_node["distributed client.get"]
    rows = [[name, f"{seconds * 1e3:.2f}", ratio(seconds / base)] for name, seconds in per_node.items()]
    checks = [Check(f"flowcore dask / distributed client.get, per node, {n:,}-node DAG on the cluster",
                    per_node["flowcore dask"] / base, 1.5)]
    notes = [
        f"A dask scheduler and {WORKERS} worker processes of {THREADS} thread each on this machine; median of "
        f"{cfg.repeats} interleaved repeats. Random layered no-op DAG of {n:,} nodes (layers of {WIDTH}); flowcore at "
        f"max_parallel {WIDTH} (and at the default 8, latency-bound: each result comes back to the driving process "
        f"before its successors start), each run connecting its own client; distributed through one client connected "
        f"beforehand. The CPU-bound fan-out on this cluster is a contender of the cpu section.",
    ]
    return Section("14. The dask runner's per-node overhead on a two-worker cluster (issue 13)", notes,
                   [("Per-node wall time", ["contender", "ms per node", "/ client.get"], rows)], checks)
