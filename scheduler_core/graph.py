"""The compiled graph: a validated workflow indexed for O(1) scheduling decisions.

``compile_workflow`` checks the structure of a workflow (every problem at once, each with the node
or edge it concerns) and computes, once per run, what ``step`` needs: adjacency as tuples of
indices, each edge's kind (plain, iteration, map, gather), each node's fan-out depth, and each
node's priority (the longest remaining path to a sink, weighted by cost estimates). Type-specific
fields (a python node's ``call``, an ``if`` node's condition) are the adapters' to check.
"""
from __future__ import annotations

import attrs
import jmespath

from .model import FOREACH, ITERATION, KNOWN_PORTS, ON_ERROR, PARKING_TYPES, Edge, Node, Workflow

PLAIN, FAN_OUT, MAP, GATHER = "plain", "iteration", "map", "gather"


@attrs.frozen
class Problem:
    """One thing wrong with a workflow: where it is and what is wrong."""

    where: str
    message: str

    def __str__(self):
        return f"{self.where}: {self.message}"


class WorkflowInvalid(ValueError):
    def __init__(self, problems):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@attrs.frozen(eq=False)
class CompiledEdge:
    index: int  # declaration order among all connections
    source: int
    target: int
    port: str
    kind: str  # PLAIN, FAN_OUT, MAP or GATHER
    pos: int  # position among the target's incoming edges (declaration order)
    select: object  # a compiled JMESPath expression or None
    select_text: str | None


@attrs.frozen(eq=False)
class Graph:
    workflow: Workflow
    ids: tuple[str, ...]
    index: dict
    nodes: tuple[Node, ...]
    edges: tuple[CompiledEdge, ...]
    out_edges: tuple[tuple[int, ...], ...]
    in_edges: tuple[tuple[int, ...], ...]
    depth: tuple[int, ...]  # how many fan-outs a node is inside of
    origin: tuple[int, ...]  # the foreach whose items a mapped node runs per, or -1
    rank: tuple[float, ...]  # longest remaining path to a sink, costs included
    topo: tuple[int, ...]
    roots: tuple[int, ...]
    max_parallel: int
    pools: dict
    fail_fast: bool
    has_select: bool  # any edge with a select expression (which may fail and fail its target)

    def edge_label(self, e: CompiledEdge) -> str:
        return f"{self.ids[e.source]} -> {self.ids[e.target]}"


def _edge_where(i: int, edge: Edge) -> str:
    return f"connection #{i + 1} ({edge.source} -> {edge.target})"


def _check_nodes(wf: Workflow, problems: list) -> dict:
    index: dict = {}
    for i, node in enumerate(wf.nodes):
        where = f"node {node.id!r}"
        if not isinstance(node.id, str) or not node.id:
            problems.append(Problem(f"node #{i + 1}", "every node needs a non-empty string id"))
            continue
        if node.id in index:
            problems.append(Problem(where, "duplicate id (ids must be unique)"))
            continue
        index[node.id] = i
        if node.timeout is not None and not node.timeout > 0:
            problems.append(Problem(where, f"timeout must be a positive number of seconds, not {node.timeout!r}"))
        r = node.retry
        if r.max_attempts < 1 or r.delay < 0 or r.backoff <= 0:
            problems.append(Problem(where, "retry needs max_attempts >= 1, delay >= 0 and backoff > 0"))
        if node.pool is not None and node.pool not in wf.settings.pools:
            problems.append(Problem(where, f"pool {node.pool!r} is not declared in settings.pools"))
        if not node.estimate >= 0:
            problems.append(Problem(where, "estimate must be a non-negative number"))
    return index


def _check_settings(wf: Workflow, problems: list) -> None:
    s = wf.settings
    if s.on_error not in ON_ERROR:
        problems.append(Problem("settings.on_error", f"must be one of {', '.join(ON_ERROR)}, not {s.on_error!r}"))
    if s.max_parallel is not None and (not isinstance(s.max_parallel, int) or s.max_parallel < 1):
        problems.append(Problem("settings.max_parallel", "must be a whole number >= 1"))
    for name, cap in s.pools.items():
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            problems.append(Problem(f"settings.pools.{name}", "a pool's size must be a whole number >= 1"))


def _ports_of(node: Node):
    if node.type == "hil":
        return frozenset({"result", "timeout", *node.config.get("choices", ())})
    return KNOWN_PORTS.get(node.type)


def _check_edges(wf: Workflow, index: dict, problems: list) -> list:
    good = []
    for i, edge in enumerate(wf.edges):
        where = _edge_where(i, edge)
        bad = False
        for end in ("source", "target"):
            if getattr(edge, end) not in index:
                problems.append(Problem(where, f"unknown {end} node {getattr(edge, end)!r}"))
                bad = True
        if edge.select is not None:
            try:
                jmespath.compile(edge.select)
            except jmespath.exceptions.JMESPathError as exc:
                problems.append(Problem(where, f"select {edge.select!r} is not valid JMESPath: {exc}"))
                bad = True
        if bad:
            continue
        ports = _ports_of(wf.nodes[index[edge.source]])
        if ports is not None and edge.port not in ports:
            problems.append(Problem(where, f"port {edge.port!r} is never produced by "
                                           f"{wf.nodes[index[edge.source]].type} node {edge.source!r}; "
                                           f"it has {', '.join(sorted(ports))}"))
            continue
        good.append((i, edge))
    return good


def _topological_order(n: int, ids, pairs) -> tuple[list, list | None]:
    """(order, None) for a DAG (Kahn's algorithm, O(V + E)); ([], cycle) naming one cycle otherwise."""
    succ = [[] for _ in range(n)]
    indegree = [0] * n
    for s, t in pairs:
        succ[s].append(t)
        indegree[t] += 1
    order = [i for i in range(n) if indegree[i] == 0]
    for node in order:  # grows while it is walked
        for t in succ[node]:
            indegree[t] -= 1
            if indegree[t] == 0:
                order.append(t)
    if len(order) == n:
        return order, None
    import networkx as nx  # here, not at the top: only a cycle needs it, and it takes 0.1 s to import

    g = nx.DiGraph((s, t) for s, t in pairs if indegree[s] and indegree[t])  # only what is left: the cycles
    cycle = nx.find_cycle(g)
    return [], [ids[s] for s, _ in cycle] + [ids[cycle[0][0]]]


def _edge_kind(src: Node, edge: Edge, src_depth: int) -> str:
    if src.type == FOREACH and edge.port == ITERATION:
        return FAN_OUT
    if src_depth > 0:
        return MAP if edge.map else GATHER
    return PLAIN


def _fan_out_levels(wf, index, good, topo, problems):
    """Each node's depth and origin foreach; every input of a node must agree on them."""
    depth = [0] * len(wf.nodes)
    origin = [-1] * len(wf.nodes)
    incoming = [[] for _ in wf.nodes]
    for i, edge in good:
        incoming[index[edge.target]].append((i, edge))
    kinds = {}
    for t in topo:
        seen = None
        for i, edge in incoming[t]:
            s = index[edge.source]
            kind = _edge_kind(wf.nodes[s], edge, depth[s])
            kinds[i] = kind
            if edge.map and kind != MAP:
                problems.append(Problem(_edge_where(i, edge), "map: true needs a source that runs per item "
                                                              "(downstream of a foreach's iteration port)"))
            if kind == FAN_OUT:
                level = (depth[s] + 1, s)
            elif kind == GATHER:
                level = (depth[s] - 1, origin[origin[s]] if depth[s] > 1 else -1)
            else:
                level = (depth[s], origin[s])
            if seen is not None and level != seen:
                problems.append(Problem(f"node {wf.nodes[t].id!r}", "its inputs come from different fan-outs "
                                        "(some per item, some not, or from two foreach nodes); "
                                        "gather first, or use a single foreach"))
                break
            seen = level
        if seen is not None:
            depth[t], origin[t] = seen
    return depth, origin, kinds


def _ranks(nodes, out_targets, topo):
    rank = [0.0] * len(nodes)
    for n in reversed(topo):
        rank[n] = nodes[n].estimate + max((rank[t] for t in out_targets[n]), default=0.0)
    return rank


def compile_workflow(wf: Workflow, default_max_parallel: int = 8, max_parallel: int | None = None) -> Graph:
    """Validate the structure of ``wf`` and index it; raise ``WorkflowInvalid`` with every problem.

    The run's cap is ``max_parallel`` if given (a CLI flag), else the workflow's setting, else
    ``default_max_parallel`` (the engine's default).
    """
    problems: list = []
    _check_settings(wf, problems)
    index = _check_nodes(wf, problems)
    good = _check_edges(wf, index, problems)
    topo, cycle = _topological_order(len(wf.nodes), [n.id for n in wf.nodes],
                                     [(index[e.source], index[e.target]) for _, e in good])
    if cycle:
        problems.append(Problem("connections", f"cycle: {' -> '.join(cycle)} (a workflow must be acyclic)"))
        raise WorkflowInvalid(problems)
    depth, origin, kinds = _fan_out_levels(wf, index, good, topo, problems)
    if problems:
        raise WorkflowInvalid(problems)
    cap = max_parallel or wf.settings.max_parallel or default_max_parallel
    return _index(wf, index, good, topo, depth, origin, kinds, cap)


def _index(wf, index, good, topo, depth, origin, kinds, cap) -> Graph:
    n = len(wf.nodes)
    ins = [[] for _ in range(n)]
    outs = [[] for _ in range(n)]
    edges = []
    for i, edge in good:
        s, t = index[edge.source], index[edge.target]
        ce = CompiledEdge(index=i, source=s, target=t, port=edge.port, kind=kinds[i], pos=len(ins[t]),
                          select=jmespath.compile(edge.select) if edge.select else None, select_text=edge.select)
        ins[t].append(len(edges))
        outs[s].append(len(edges))
        edges.append(ce)
    out_targets = [[edges[e].target for e in outs[s]] for s in range(n)]
    s = wf.settings
    return Graph(
        workflow=wf, ids=tuple(nd.id for nd in wf.nodes), index=index, nodes=tuple(wf.nodes),
        edges=tuple(edges), out_edges=tuple(map(tuple, outs)), in_edges=tuple(map(tuple, ins)),
        depth=tuple(depth), origin=tuple(origin), rank=tuple(_ranks(wf.nodes, out_targets, topo)),
        topo=tuple(topo), roots=tuple(i for i in range(n) if not ins[i]),
        max_parallel=cap, pools=dict(s.pools),
        fail_fast=s.on_error == "fail_fast", has_select=any(e.select is not None for e in edges),
    )


__all__ = ["Graph", "CompiledEdge", "Problem", "WorkflowInvalid", "compile_workflow", "PARKING_TYPES",
           "PLAIN", "FAN_OUT", "MAP", "GATHER"]
