"""Section 9: the dask runner on a real cluster (issue 13).

The section starts a ``dask scheduler`` and two ``dask worker`` processes, one thread each, on
this machine (the repository on their ``PYTHONPATH``, so ``bench.nodes`` imports there too), and
stops them at its end; starting them is not timed.

- **Per-node overhead**: the layered no-op DAG of section 1 run by flowcore's dask runner on the
  cluster (``Engine(runner="dask", dask_address=...).run`` of the workflow loaded once; connecting
  to the scheduler is part of each run), against the same graph given to ``distributed`` directly
  on the same cluster through one client connected beforehand: ``client.get`` of the whole graph
  dict (the scheduler resolves the dependencies; the target's baseline), and ``client.submit``
  node by node with the predecessors' futures as arguments. flowcore runs with ``max_parallel``
  at the layer width, so its cap is not what limits it; at the default cap of 8 it is latency-bound
  (every node's result comes back to the driving process before its successors start), shown
  beside it and not targeted.
- **CPU-bound fan-out**: ``foreach`` -> 16 items of ``bench.nodes.crunch`` (pure Python, sized to
  take about 0.5 s in this process, measured first) -> gather, with ``max_parallel: 16``, on the
  thread runner (one process: the GIL runs one item at a time) and on the dask runner on the
  cluster (two worker processes: two items at a time, on the machine's two cores). Beside them,
  interleaved, what the machine gives two CPU-bound processes at that moment (``live``'s CPU
  spin: a pure-Python loop in one fresh interpreter, and split between two; three times live's
  count, so that it lasts about as long as a fan-out run): the ceiling of the speed-up on a
  machine other processes share.
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
from .graphs import fan_out_workflow, layered_dag
from .live import QUICK_SPIN_COUNT, SPIN_COUNT, AtLeast, spin
from .measure import REPO_ROOT, interleaved
from .nodes import crunch, nothing
from .table import Check, Section, ms, ratio

NODES, QUICK_NODES = 2_000, 300
ITEMS = 16
ITEM_SECONDS, QUICK_ITEM_SECONDS = 0.5, 0.1
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


def crunch_rounds(seconds: float) -> int:
    """How many rounds of ``crunch`` take about ``seconds`` in this process (the best of a few tries)."""
    probe = 200_000
    best = min(_time(lambda: crunch(None, probe)) for _ in range(7))  # the least disturbed by other processes
    return max(1, round(probe * seconds / best))


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def overhead_contenders(address: str, client, n: int) -> dict:
    dag = layered_dag(n, width=WIDTH)
    loaded = load_workflow(dag.workflow())
    graph, sinks = dag.dask_graph(nothing), dag.sinks()

    def by_futures():
        futures: dict = {}
        for v, us in dag.preds.items():
            futures[v] = client.submit(nothing, *(futures[u] for u in us), key=f"{v}-{time.monotonic_ns()}")
        client.gather([futures[s] for s in sinks])

    return {
        "distributed client.get": lambda: client.get(graph, sinks),
        "distributed submit": by_futures,
        "flowcore dask": lambda: run_workflow(loaded, "dask", max_parallel=WIDTH, dask_address=address),
        "flowcore dask, cap 8": lambda: run_workflow(loaded, "dask", max_parallel=8, dask_address=address),
    }


def fan_out_contenders(address: str, rounds: int, spin_count: int = 0) -> dict:
    workflow = fan_out_workflow({"type": "python", "call": "bench.nodes:crunch", "params": {"n": rounds}})
    items = list(range(ITEMS))
    contenders = {
        "one item alone, in this process": lambda: crunch(None, rounds),
        "thread": lambda: run_workflow(workflow, "thread", trigger=items, max_parallel=ITEMS),
        "dask cluster": lambda: run_workflow(workflow, "dask", trigger=items, max_parallel=ITEMS,
                                             dask_address=address),
    }
    if spin_count:
        contenders["CPU spin, 1 process"] = spin(1, spin_count)[0]
        contenders["CPU spin, 2 processes"] = spin(2, spin_count)[0]
    return contenders


def run(cfg) -> Section:
    from distributed import Client

    n = QUICK_NODES if cfg.quick else NODES
    item_seconds = QUICK_ITEM_SECONDS if cfg.quick else ITEM_SECONDS
    rounds = crunch_rounds(item_seconds)
    with two_worker_cluster() as address, Client(address, set_as_default=False) as client:
        per_node = {k: v / n for k, v in interleaved(overhead_contenders(address, client, n), cfg.repeats).items()}
        fan = interleaved(fan_out_contenders(address, rounds, QUICK_SPIN_COUNT if cfg.quick else 3 * SPIN_COUNT),
                          cfg.repeats)
    base = per_node["distributed client.get"]
    overhead_rows = [[name, f"{seconds * 1e3:.2f}", ratio(seconds / base)] for name, seconds in per_node.items()]
    speed_up = fan["thread"] / fan["dask cluster"]
    machine = fan["CPU spin, 1 process"] / fan["CPU spin, 2 processes"]
    one_item = fan["one item alone, in this process"]
    fan_rows = [["one item alone, in this process", ms(one_item), ""],
                [f"{ITEMS} items one after another (computed)", ms(ITEMS * one_item), ""],
                *([name, ms(fan[name]), ratio(fan["thread"] / fan[name])] for name in ("thread", "dask cluster")),
                *([name, ms(fan[name]), ratio(fan["CPU spin, 1 process"] / fan[name])]
                  for name in ("CPU spin, 1 process", "CPU spin, 2 processes"))]
    checks = [
        Check(f"flowcore dask / distributed client.get, per node, {n:,}-node DAG on the cluster",
              per_node["flowcore dask"] / base, 1.5),
        AtLeast(f"CPU-bound fan-out ({ITEMS} x {item_seconds:g} s): thread time / dask cluster time", speed_up, 1.6),
    ]
    notes = [
        f"A dask scheduler and {WORKERS} worker processes of {THREADS} thread each on this machine; median of "
        f"{cfg.repeats} interleaved repeats.",
        f"Per-node overhead: random layered no-op DAG of {n:,} nodes (layers of {WIDTH}); flowcore at max_parallel "
        f"{WIDTH} (and at the default 8, latency-bound: each result comes back to the driving process before its "
        f"successors start), each run connecting its own client; distributed through one client connected "
        f"beforehand.",
        f"CPU-bound fan-out: foreach -> {ITEMS} x bench.nodes.crunch({rounds:,} rounds of pure Python, sized to "
        f"{item_seconds:g} s before the runs; {one_item * 1e3:.0f} ms alone here during them) -> gather, max_parallel "
        f"{ITEMS}: the dask cluster {speed_up:.2f}x "
        f"the thread runner's speed, where the machine gave two CPU-bound processes {machine:.2f}x (CPU spin; its "
        f"speed-up column is against one spinning process).",
    ]
    return Section("9. The dask runner on a two-worker cluster (issue 13)", notes, [
        ("Per-node wall time", ["contender", "ms per node", "/ client.get"], overhead_rows),
        ("CPU-bound fan-out", ["contender", "wall ms", "speed-up"], fan_rows),
    ], checks)
