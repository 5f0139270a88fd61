"""The graphs the benchmarks run, each in every form a contender takes it in.

A ``Dag`` is a predecessor map in topological order. From it come the flowcore workflow dict,
the ``graphlib`` predecessor map, the ``dask`` graph dict and the topological levels, so every
contender runs the same graph. Random graphs are seeded: the same sizes give the same graphs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

NOTHING = "bench.nodes:nothing"
SLEEP = "bench.nodes:sleep"
SLEEP_ITEM = "bench.nodes:sleep_item"
PASS_ON = "bench.nodes:pass_on"


@dataclass(frozen=True)
class Dag:
    preds: dict[str, list[str]]  # node -> its predecessors, in topological order
    seconds: dict[str, float] | None = None  # per-node sleep, for I/O-bound graphs

    def __len__(self) -> int:
        return len(self.preds)

    def workflow(self, name: str = "bench", node: Callable[[str], dict] | None = None, **settings) -> dict:
        """The flowcore workflow dict: python nodes calling the no-op (or ``node(id)``'s fields)."""
        node = node or self._node
        return {"name": name, "settings": settings,
                "nodes": [{"id": v, **node(v)} for v in self.preds],
                "connections": [{"from": u, "to": v} for v, us in self.preds.items() for u in us]}

    def _node(self, v: str) -> dict:
        if self.seconds is None:
            return {"type": "python", "call": NOTHING}
        return {"type": "python", "call": SLEEP, "params": {"seconds": self.seconds[v]}}

    def dask_graph(self, fn: Callable) -> dict:
        """``{key: (fn, *predecessor keys)}``: dask calls ``fn`` with the predecessors' results."""
        return {v: (fn, *us) for v, us in self.preds.items()}

    def sinks(self) -> list[str]:
        has_successor = {u for us in self.preds.values() for u in us}
        return [v for v in self.preds if v not in has_successor]

    def levels(self) -> list[list[str]]:
        """Topological generations: a node's level is the longest path (in edges) from a root."""
        depth: dict[str, int] = {}
        for v, us in self.preds.items():
            depth[v] = 1 + max((depth[u] for u in us), default=-1)
        levels: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
        for v, d in depth.items():
            levels[d].append(v)
        return levels

    def critical_path(self) -> float:
        """The longest sum of sleeps along any path: no schedule can finish sooner."""
        finish: dict[str, float] = {}
        for v, us in self.preds.items():
            finish[v] = self.seconds[v] + max((finish[u] for u in us), default=0.0)
        return max(finish.values())


def layered_dag(n: int, width: int = 100, max_fan_in: int = 3, seed: int = 0) -> Dag:
    """``n`` nodes in layers of ``width``; each node below the first layer has 1..``max_fan_in``
    random predecessors in the layer above."""
    rng = random.Random(seed)
    preds: dict[str, list[str]] = {}
    above: list[str] = []
    for start in range(0, n, width):
        layer = [f"n{i}" for i in range(start, min(n, start + width))]
        for v in layer:
            preds[v] = rng.sample(above, rng.randint(1, min(max_fan_in, len(above)))) if above else []
        above = layer
    return Dag(preds)


def unequal_branches(short: float = 0.02, long: float = 0.1, branches: int = 4) -> Dag:
    """A root, ``branches`` parallel chains and a join. Chain *j* is slow at step *j* only, so every
    level holds one slow node but each chain holds just one: level-by-level pays for a slow node
    at every level, an eager scheduler only once."""
    preds: dict[str, list[str]] = {"root": []}
    seconds = {"root": short}
    ends = []
    for j in range(branches):
        prev = "root"
        for s in range(branches + 1):
            v = f"b{j}s{s}"
            preds[v], seconds[v], prev = [prev], (long if s == j else short), v
        ends.append(prev)
    preds["join"], seconds["join"] = ends, short
    return Dag(preds, seconds)


def random_io_dag(n: int = 48, width: int = 6, low: float = 0.02, high: float = 0.1, seed: int = 1) -> Dag:
    """A random layered DAG whose nodes sleep between ``low`` and ``high`` seconds."""
    dag = layered_dag(n, width=width, max_fan_in=2, seed=seed)
    rng = random.Random(seed)
    return Dag(dag.preds, {v: round(rng.uniform(low, high), 3) for v in dag.preds})


def fan_out_workflow(step: dict | None = None) -> dict:
    """``items`` (foreach over the trigger) -> ``each`` (one instance per item) -> ``gather``."""
    step = step or {"type": "python", "call": NOTHING}
    return {"name": "fan-out", "nodes": [
        {"id": "items", "type": "foreach"},
        {"id": "each", **step},
        {"id": "gather", "type": "python", "call": NOTHING},
    ], "connections": [
        {"from": "items", "to": "each", "port": "iteration"},
        {"from": "each", "to": "gather"},
    ]}


MAP_STEPS = ("a", "b", "c")


def map_chain_workflow(seconds: float, slow_item: int, slow_seconds: float, max_parallel: int) -> dict:
    """``items`` -> a -> b -> c, per item (``map: true``); every step of ``slow_item`` is slow."""
    params = {"seconds": seconds, "slow_item": slow_item, "slow_seconds": slow_seconds}
    steps = [{"id": s, "type": "python", "call": SLEEP_ITEM, "params": params} for s in MAP_STEPS]
    edges = [{"from": "items", "to": "a", "port": "iteration"}]
    edges += [{"from": u, "to": v, "map": True} for u, v in zip(MAP_STEPS, MAP_STEPS[1:])]
    return {"name": "map-chain", "settings": {"max_parallel": max_parallel},
            "nodes": [{"id": "items", "type": "foreach"}, *steps], "connections": edges}


def deep_join_dag(n: int, layers: int = 50, fan_in: tuple[int, int] = (2, 3), seed: int = 0) -> Dag:
    """``n`` nodes in ``layers`` layers of ``n // layers``; each node below the first joins
    ``fan_in[0]``..``fan_in[1]`` random nodes of the layer above. Issue 10's serial-scaling graph:
    the layers widen with ``n``, so the ready queue holds a whole layer (2,000 nodes at 100,000)."""
    rng = random.Random(seed)
    width = n // layers
    preds: dict[str, list[str]] = {}
    above: list[str] = []
    for start in range(0, layers * width, width):
        layer = [f"n{i}" for i in range(start, start + width)]
        for v in layer:
            preds[v] = rng.sample(above, min(rng.randint(*fan_in), len(above))) if above else []
        above = layer
    return Dag(preds)


def noop_node(v: str) -> dict:
    return {"type": "noop"}


def nested_fan_out_workflow(inner_max_parallel: int | None) -> dict:
    """``outer`` (foreach over the trigger, a list of lists) -> ``inner`` (foreach over one outer
    item; capped at ``inner_max_parallel`` of its items at a time, or not at all) -> ``each`` (noop).
    A capped inner foreach makes one fan-out group, so one ready queue, per outer item."""
    inner = {"id": "inner", "type": "foreach"}
    if inner_max_parallel is not None:
        inner["max_parallel"] = inner_max_parallel
    return {"name": "nested-fan-out", "nodes": [
        {"id": "outer", "type": "foreach"},
        inner,
        {"id": "each", "type": "noop"},
    ], "connections": [
        {"from": "outer", "to": "inner", "port": "iteration"},
        {"from": "inner", "to": "each", "port": "iteration"},
    ]}
def chain_workflow(n: int) -> dict:
    """``n`` python nodes in a line, each passing its input on (the trigger travels the whole chain)."""
    nodes = [{"id": f"n{i}", "type": "python", "call": PASS_ON} for i in range(n)]
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(n - 1)]
    return {"name": "chain", "nodes": nodes, "connections": edges}


def kilobyte_payload() -> dict:
    """About 1 KB of JSON in the shape of a typical record: scalars, a list of tags, a list of line items."""
    return {"id": 12345, "name": "a customer record", "tags": ["alpha", "beta", "gamma"],
            "items": [{"sku": f"SKU-{i}", "qty": i, "price": 9.99 + i, "ok": True} for i in range(12)],
            "address": {"street": "1 Long Road", "city": "Somewhere", "zip": "12345"}}
