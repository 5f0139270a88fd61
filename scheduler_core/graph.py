"""The compiled graph: a validated workflow indexed for O(1) scheduling decisions.

``compile_workflow`` checks the structure of a workflow (every problem at once, each with the node
or edge it concerns) and computes, once per run, what ``step`` needs: adjacency as tuples of
indices, each edge's kind (plain, iteration, map, gather), each node's fan-out depth, and each
node's priority (the longest remaining path to a sink, weighted by cost estimates). It reads a
node's ``behaviour`` (which ports it has, whether it fans out), never its type: type-specific
fields (a python node's ``call``, an ``if`` node's condition) are the adapters' to check.

A ``Loop`` node's body is compiled into the same graph: each body node becomes a node
``<loop id>.<body node id>`` one item level deeper than the loop (its origin is the loop, as a
foreach's items have the foreach), with a *loop entry* edge from the loop to each body root and a
*loop exit* edge from the body's single sink back to the loop. The exit edge is in the sink's
``out_edges`` only (never in the loop's ``in_edges``, nor in the order or the ranks): it tells
``step`` that an iteration ended, whichever way the sink ended.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
import jmespath

from .behaviour import LOOP_BODY_PORT, MAX_ITERATIONS, PARKS, RESULT, Kind
from .model import JOIN_ALL, JOIN_ANY, MAX_SECONDS, ON_ERROR, Edge, Node, Workflow

if TYPE_CHECKING:
    from .state import Queue

PLAIN, FAN_OUT, MAP, GATHER = "plain", "iteration", "map", "gather"
LOOP_ENTRY, LOOP_EXIT = "loop_entry", "loop_exit"  # a loop into its body's roots; its body's sink back to it
_new = tuple.__new__  # builds a named tuple from a tuple, without its keyword-handling __new__


@attrs.frozen
class Problem:
    """One thing wrong with a workflow: where it is and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class WorkflowInvalid(ValueError):
    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CompiledEdge(NamedTuple):
    """One connection as ``step`` uses it. (A named tuple: a workflow has one per edge, and building
    a 200,000-edge graph's with attrs took a tenth of loading it.)"""

    index: int  # type: ignore[assignment]  # declaration order among all connections (shadows tuple.index)
    source: int
    target: int
    port: str
    kind: str  # PLAIN, FAN_OUT, MAP or GATHER
    pos: int  # position among the target's incoming edges (declaration order)
    select: Any  # a compiled JMESPath expression (jmespath has no type stubs) or None
    select_text: str | None


@attrs.frozen(eq=False)
class Graph:
    name: str  # the workflow's; not the workflow itself, which a graph cached per workflow must not keep alive
    ids: tuple[str, ...]
    index: dict[str, int]
    nodes: tuple[Node, ...]
    edges: tuple[CompiledEdge, ...]
    out_edges: tuple[tuple[int, ...], ...]
    in_edges: tuple[tuple[int, ...], ...]
    depth: tuple[int, ...]  # how many fan-outs a node is inside of
    origin: tuple[int, ...]  # the foreach whose items a mapped node runs per, or -1
    queue: tuple[Queue | None, ...]  # a node's ready queue (pool, None), or None where it depends on the item (capped group)
    group_cap: tuple[int | None, ...]  # per node: the max_parallel of a capped fan-out node, else None
    cap_origin: tuple[int, ...]  # per node: the capped foreach whose max_parallel it counts against, or -1 (_cap_origins)
    plain_queues: tuple[Queue, ...]  # every ready queue that is one per pool: (pool, None)
    group_pools: dict[int, tuple[str | None, ...]]  # capped fan-out node -> the pools of the nodes that run per its items
    rank: tuple[float, ...]  # longest remaining path to a sink, costs included
    scope: tuple[int, ...]  # the outermost foreach a node runs per item of (itself outside any fan-out): see ready_entry
    topo: tuple[int, ...]
    roots: tuple[int, ...]
    max_parallel: int
    pools: dict[str, int]
    fail_fast: bool
    has_select: bool  # any edge with a select expression (which may fail and fail its target)
    # loops (empty without any): see the module's docstring
    loop_until: dict[int, Any] = attrs.field(factory=dict)  # loop node -> its compiled ``until``
    loop_entries: dict[int, tuple[int, ...]] = attrs.field(factory=dict)  # loop node -> its entry edges
    loop_of: tuple[int, ...] = ()  # per node: the innermost loop whose body it is in, or -1 (empty: no loops)
    body_nodes: dict[int, tuple[int, ...]] = attrs.field(factory=dict)  # loop -> the nodes whose loop_of it is
    # Control flow beyond "wait for all" (see ``_control_flow``); empty for most workflows.
    quorum: dict[int, int] = attrs.field(factory=dict)  # node with join any (1) or {at_least: K} -> K
    victims: dict[int, tuple[int, ...]] = attrs.field(factory=dict)  # cancel_rest join -> the nodes it post-dominates
    cancels: dict[int, tuple[tuple[int, int], ...]] = attrs.field(factory=dict)  # node -> (named node, shared fan-out depth)
    gather_quorum: dict[int, int] = attrs.field(factory=dict)  # gather edge (declared index) with at_least -> K
    gather_victims: dict[int, tuple[int, ...]] = attrs.field(factory=dict)  # such an edge with cancel_rest -> its items' nodes

    def edge_label(self, e: CompiledEdge) -> str:
        return f"{self.ids[e.source]} -> {self.ids[e.target]}"

    def ready_entry(self, n: int, path: tuple[int, ...]) -> tuple[float, int, tuple[int, ...], float, int]:
        """Instance ``(n, path)``'s place in a ready queue (smallest first): critical path first, then
        declaration order, then item order, where an instance inside a fan-out ranks as the outermost
        foreach it runs per item of and, within it, by item path before stage, so a capped per-item
        chain completes item after item instead of breadth-first. The instance is ``(entry[4], entry[2])``."""
        top = self.scope[n]
        return (-self.rank[top], top, path, -self.rank[n], n)

    def queue_of(self, key: tuple[int, tuple[int, ...]]) -> Queue:
        """``(pool, group)``: the ready queue instance ``key`` waits in, and the caps it counts against."""
        n, path = key
        q = self.queue[n]
        if q is not None:  # most nodes: one queue per pool, computed once per graph
            return q
        o = self.cap_origin[n]
        return (self.nodes[n].pool, (o, path[: self.depth[o]]))


def _edge_where(i: int, edge: Edge) -> str:
    return f"connection #{i + 1} ({edge.source} -> {edge.target})"


def _check_nodes(wf: Workflow, problems: list[Problem]) -> dict[str, int]:
    index: dict[str, int] = {}
    pools = wf.settings.pools
    for i, node in enumerate(wf.nodes):
        if type(node.id) is str and node.id and node.id not in index and _all_defaults(node):
            index[node.id] = i  # the usual node: nothing to report, so no 'where' to build
            continue
        where = f"node {node.id!r}"
        if not isinstance(node.id, str) or not node.id:
            problems.append(Problem(f"node #{i + 1}", "every node needs a non-empty string id"))
            continue
        if node.id in index:
            problems.append(Problem(where, "duplicate id (ids must be unique)"))
            continue
        index[node.id] = i
        if node.timeout is not None and not 0 < node.timeout <= MAX_SECONDS:
            problems.append(Problem(where, f"timeout must be a positive number of seconds, at most {MAX_SECONDS:g} "
                                           f"(a year), not {node.timeout!r}"))
        retry_problem = node.retry.problem()
        if retry_problem:
            problems.append(Problem(where, retry_problem))
        if node.behaviour is None:
            problems.append(Problem(where, f"type {node.type!r} gave it no behaviour (is the type known?)"))
        else:
            problems.extend(Problem(where, message) for message in _unused_fields(node, node.behaviour.kind))
        if node.pool is not None and type(node.pool) is not str:
            problems.append(Problem(where, f"pool must be the name of a pool in settings.pools, not {node.pool!r}"))
        elif node.pool is not None and node.pool not in pools:
            problems.append(Problem(where, f"pool {node.pool!r} is not declared in settings.pools"))
        if not 0 <= node.estimate <= MAX_SECONDS:
            problems.append(Problem(where, f"estimate must be a number of seconds from 0 to {MAX_SECONDS:g}, "
                                           f"not {node.estimate!r}"))
    return index


def _all_defaults(node: Node) -> bool:
    """No timeout, retry, pool or estimate of its own, as most nodes: nothing for ``_check_nodes`` to check."""
    return (node.timeout is None and node.retry is _NO_RETRY and node.pool is None and node.estimate == 1.0
            and node.behaviour is not None)  # (join, cancel_rest and cancel: _control_flow checks them)


_NO_RETRY = attrs.fields(Node).retry.default


def _unused_fields(node: Node, kind: Kind) -> list[str]:
    """``timeout`` and ``retry`` where they would do nothing: said, not silently ignored. A node that
    parks or ends the run runs no attempt that could be retried; a ``delay`` and an ``end`` take no
    time of their own to limit. (A child run's ``timeout`` cancels it; a ``wait`` owns its ``timeout``.
    A loop's fields are checked with its body.)"""
    if kind not in _NO_ATTEMPT:
        return []
    bad = []
    if node.retry != _NO_RETRY:
        what = ("its child run is not started again: give retry to the child workflow's nodes"
                if kind is Kind.PARK_CHILD else "give retry to the nodes that run code")
        bad.append(f"retry does nothing on a {node.type} node, which runs no attempt of its own; {what}")
    if node.timeout is not None and kind in (Kind.PARK_TIMER, Kind.END):
        bad.append(f"timeout does nothing on a {node.type} node, which takes no time of its own to limit")
    return bad


_NO_ATTEMPT = PARKS | {Kind.END}


def _check_settings(wf: Workflow, problems: list[Problem]) -> None:
    s = wf.settings
    if s.on_error not in ON_ERROR:
        problems.append(Problem("settings.on_error", f"must be one of {', '.join(ON_ERROR)}, not {s.on_error!r}"))
    if s.max_parallel is not None and (not isinstance(s.max_parallel, int) or s.max_parallel < 1):
        problems.append(Problem("settings.max_parallel", "must be a whole number >= 1"))
    for name, cap in s.pools.items():
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            problems.append(Problem(f"settings.pools.{name}", "a pool's size must be a whole number >= 1"))


def _ports_of(node: Node) -> frozenset[str] | None:
    """The ports a node can produce; None where it may produce any (or has no behaviour)."""
    return None if node.behaviour is None else node.behaviour.ports


class _Connections(NamedTuple):
    """The edges that join two nodes on a port the source has, in declaration order, as parallel
    lists (no object per edge): declaration index, edge, source and target node index."""

    declared: list[int]
    edge: list[Edge]
    source: list[int]
    target: list[int]


def _check_edges(wf: Workflow, index: dict[str, int], problems: list[Problem]) -> _Connections:
    """The good edges; a problem for each of the others."""
    numbers: list[int] = []
    edges: list[Edge] = []
    sources: list[int] = []
    targets: list[int] = []
    ports = [_ports_of(node) for node in wf.nodes]  # None: a type that may produce any port
    for i, edge in enumerate(wf.edges):
        s, t = index.get(edge.source), index.get(edge.target)
        if (s is None or t is None or edge.select is not None
                or (p := ports[s]) is not None and edge.port not in p):
            if not _edge_problems(wf, index, i, edge, problems):  # only now build a 'where'
                continue
            s, t = index[edge.source], index[edge.target]
        numbers.append(i)
        edges.append(edge)
        sources.append(s)
        targets.append(t)
    return _Connections(numbers, edges, sources, targets)


def _edge_problems(wf: Workflow, index: dict[str, int], i: int, edge: Edge, problems: list[Problem]) -> bool:
    """Report what is wrong with one edge; True if nothing is."""
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
        except RecursionError:
            problems.append(Problem(where, f"select is nested too deeply to read ({len(edge.select)} characters)"))
            bad = True
    if bad:
        return False
    ports = _ports_of(wf.nodes[index[edge.source]])
    if ports is not None and edge.port not in ports:
        problems.append(Problem(where, f"port {edge.port!r} is never produced by "
                                       f"{wf.nodes[index[edge.source]].type} node {edge.source!r}; "
                                       f"it has {', '.join(sorted(ports))}"))
        return False
    return True


class _Adjacency(NamedTuple):
    """Per node, its outgoing and incoming good edges (positions in ``_Connections``), in declaration
    order; per good edge, its position among its target's incoming edges."""

    outs: list[list[int]]
    ins: list[list[int]]
    pos: list[int]


def _adjacency(n: int, good: _Connections) -> _Adjacency:
    outs: list[list[int]] = [[] for _ in range(n)]
    ins: list[list[int]] = [[] for _ in range(n)]
    pos: list[int] = []
    for k, (s, t) in enumerate(zip(good.source, good.target)):
        outs[s].append(k)
        pos.append(len(ins[t]))
        ins[t].append(k)
    return _Adjacency(outs, ins, pos)


def _topological_order(good: _Connections, adj: _Adjacency) -> list[int]:
    """The nodes in topological order (Kahn's algorithm, O(V + E)); short of some if there is a cycle."""
    indegree = [len(incoming) for incoming in adj.ins]
    order = [i for i, d in enumerate(indegree) if d == 0]
    target = good.target
    for node in order:  # grows while it is walked
        for k in adj.outs[node]:
            t = target[k]
            indegree[t] -= 1
            if indegree[t] == 0:
                order.append(t)
    return order


def _a_cycle(nodes: Sequence[Node], good: _Connections, order: list[int]) -> list[str]:
    """The ids along one cycle among the nodes a topological ``order`` could not place."""
    import networkx as nx  # here, not at the top: only a cycle needs it, and it takes 0.1 s to import

    placed = set(order)
    g = nx.DiGraph((s, t) for s, t in zip(good.source, good.target)
                   if s not in placed and t not in placed)  # only what is left: the cycles
    cycle = nx.find_cycle(g)
    return [nodes[s].id for s, _ in cycle] + [nodes[cycle[0][0]].id]


def _loops(node: Node) -> bool:
    return node.behaviour is not None and node.behaviour.kind is Kind.LOOP


def _behaviour_kinds(nodes: Sequence[Node]) -> set[Kind]:
    """The kinds of behaviour among ``nodes``: one pass, and what needs no fan-out or loop is skipped
    (a workflow without any is most of them)."""
    return {node.behaviour.kind for node in nodes if node.behaviour is not None}


def _edge_kind(src: Node, edge: Edge, src_depth: int) -> str:
    b = src.behaviour
    if b is not None and b.kind is Kind.FAN_OUT and edge.port == b.item_port:  # (b.kind narrows b)
        return FAN_OUT
    if b is not None and b.kind is Kind.LOOP and edge.port == LOOP_BODY_PORT:
        return LOOP_ENTRY
    if src_depth > 0:
        return MAP if edge.map else GATHER
    return PLAIN


def _fan_out_levels(wf: Workflow, good: _Connections, adj: _Adjacency, topo: list[int], nests: bool,
                    problems: list[Problem]) -> tuple[list[int], list[int], list[str]]:
    """Each node's depth and origin foreach, and each good edge's kind; every input of a node must
    agree on the first two. ``nests``: some node fans out or loops."""
    n = len(wf.nodes)
    if not nests and not any(edge.map for edge in good.edge):
        return [0] * n, [-1] * n, [PLAIN] * len(good.edge)  # nothing runs per item: depth 0, edges plain
    depth = [0] * n
    origin = [-1] * n
    kinds = [PLAIN] * len(good.edge)
    for t in topo:
        seen: tuple[int, int] | None = None
        for k in adj.ins[t]:
            i, edge, s = good.declared[k], good.edge[k], good.source[k]
            kind = kinds[k] = _edge_kind(wf.nodes[s], edge, depth[s])
            if kind == GATHER and _loops(wf.nodes[origin[s]]):  # inside a loop's body: the same iteration
                kind = kinds[k] = MAP
            if edge.map and kind != MAP:
                problems.append(Problem(_edge_where(i, edge), "map: true needs a source that runs per item "
                                                              "(downstream of a foreach's iteration port)"))
            if kind == FAN_OUT or kind == LOOP_ENTRY:
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


def _ranks(nodes: Sequence[Node], good: _Connections, adj: _Adjacency, topo: list[int]) -> list[float]:
    rank = [0.0] * len(nodes)
    target = good.target
    for n in reversed(topo):
        longest = 0.0
        for k in adj.outs[n]:
            if rank[target[k]] > longest:
                longest = rank[target[k]]
        rank[n] = nodes[n].estimate + longest
    return rank


def compile_workflow(wf: Workflow, default_max_parallel: int = 8, max_parallel: int | None = None) -> Graph:
    """Validate the structure of ``wf`` and index it; raise ``WorkflowInvalid`` with every problem.

    The run's cap is ``max_parallel`` if given (a CLI flag), else the workflow's setting, else
    ``default_max_parallel`` (the engine's default).
    """
    problems: list[Problem] = []
    present = _behaviour_kinds(wf.nodes)
    sinks: dict[str, str] = {}
    if Kind.LOOP in present:
        wf, sinks = _with_loop_bodies(wf, problems)
        present = _behaviour_kinds(wf.nodes)  # its bodies' nodes too
    _check_settings(wf, problems)
    index = _check_nodes(wf, problems)
    good = _check_edges(wf, index, problems)
    adj = _adjacency(len(wf.nodes), good)
    topo = _topological_order(good, adj)
    if len(topo) < len(wf.nodes):
        cycle = _a_cycle(wf.nodes, good, topo)
        problems.append(Problem("connections", f"cycle: {' -> '.join(cycle)} (a workflow must be acyclic)"))
        raise WorkflowInvalid(problems)
    nests = Kind.FAN_OUT in present or Kind.LOOP in present
    depth, origin, kinds = _fan_out_levels(wf, good, adj, topo, nests, problems)
    flow = _control_flow(wf, index, good, adj, depth, origin, kinds, problems)
    if problems:
        raise WorkflowInvalid(problems)
    cap = max_parallel or wf.settings.max_parallel or default_max_parallel
    graph = _index(wf, index, good, adj, topo, depth, origin, kinds, cap, sinks, Kind.FAN_OUT in present)
    return attrs.evolve(graph, **flow) if flow else graph


def _anything(value: Any) -> Any:
    """A field as a workflow built in code may hold it (any type), for the checks of its type."""
    return value


def _is_whole(value: Any, least: int = 1) -> bool:
    return type(value) is int and value >= least


def _join_problems(node: Node, inputs: int) -> list[str]:
    """What is wrong with a node's ``join`` and ``cancel_rest`` (it has ``inputs`` incoming edges)."""
    out = []
    join = node.join
    if join not in (JOIN_ALL, JOIN_ANY) and not _is_whole(join):
        out.append(f"join must be all, any or {{at_least: K}} with K a whole number from 1, not {join!r}")
    elif join != JOIN_ALL and inputs < 2:
        out.append(f"join {join if isinstance(join, str) else '{at_least: ' + str(join) + '}'} needs a node with "
                   f"at least two inputs; it has {inputs}")
    elif type(join) is int and join > inputs:
        out.append(f"join at_least {join} is more than its {inputs} inputs could ever deliver")
    cancel_rest: Any = node.cancel_rest  # (a workflow built in code may hold anything)
    if type(cancel_rest) is not bool:
        out.append(f"cancel_rest must be true or false, not {cancel_rest!r}")
    elif cancel_rest and join == JOIN_ALL:
        out.append("cancel_rest needs join any or {at_least: K} (with join all nothing is left to cancel)")
    return out


def _control_flow(wf: Workflow, index: dict[str, int], good: _Connections, adj: _Adjacency, depth: list[int],
                  origin: list[int], kinds: list[str], problems: list[Problem]) -> dict[str, Any]:
    """Check the join rules, ``cancel`` lists and gather quorums, and index them for ``step``: the
    Graph fields they fill (none for a workflow that uses none of them)."""
    quorum: dict[int, int] = {}
    cancels: dict[int, tuple[tuple[int, int], ...]] = {}
    rest: list[int] = []
    for i, node in enumerate(wf.nodes):
        if node.join == JOIN_ALL and not node.cancel_rest and not node.cancel:
            continue
        where = f"node {node.id!r}"
        found = _join_problems(node, len(adj.ins[i]))
        problems.extend(Problem(where, message) for message in found)
        if not found and node.join != JOIN_ALL:
            quorum[i] = 1 if node.join == JOIN_ANY else node.join  # type: ignore[assignment]  # a whole number
            if node.cancel_rest:
                rest.append(i)
        if node.cancel:
            named = _cancel_list(node, index, problems)
            cancels[i] = tuple((m, _shared_depth(origin, depth, i, m)) for m in named)
    gather_quorum: dict[int, int] = {}
    gather_rest: dict[int, int] = {}  # edge -> its source
    for k, edge in enumerate(good.edge):
        if edge.at_least is None and not edge.cancel_rest:
            continue
        where = _edge_where(good.declared[k], edge)
        if kinds[k] != GATHER:
            problems.append(Problem(where, "at_least and cancel_rest belong on a gather edge (out of a node that "
                                           "runs per item, without map: true)"))
        elif not _is_whole(edge.at_least):
            problems.append(Problem(where, f"at_least must be a whole number from 1, not {edge.at_least!r}"
                                    if edge.at_least is not None else "cancel_rest needs at_least on the same edge"))
        elif type(edge_cancel_rest := _anything(edge.cancel_rest)) is not bool:
            problems.append(Problem(where, f"cancel_rest must be true or false, not {edge_cancel_rest!r}"))
        else:
            gather_quorum[good.declared[k]] = edge.at_least  # type: ignore[assignment]  # checked whole
            if edge.cancel_rest:
                gather_rest[good.declared[k]] = good.source[k]
    if problems or not (quorum or cancels or gather_quorum):
        return {}
    flow: dict[str, Any] = {"quorum": quorum, "cancels": cancels, "gather_quorum": gather_quorum}
    if rest or gather_rest:
        dominated = _post_dominated(len(wf.nodes), good, adj, [*rest, *gather_rest.values()])
        flow["victims"] = {n: tuple(m for m in dominated[n] if depth[m] >= depth[n]) for n in rest}
        flow["gather_victims"] = {e: tuple(m for m in (s, *dominated[s]) if depth[m] >= depth[s])
                                  for e, s in gather_rest.items()}
    return flow


def _cancel_list(node: Node, index: dict[str, int], problems: list[Problem]) -> list[int]:
    where = f"node {node.id!r}"
    named = node.cancel
    if not isinstance(named, (tuple, list)) or not all(type(m) is str for m in named):
        problems.append(Problem(where, f"cancel must be a list of node ids, not {named!r}"))
        return []
    found = []
    for m in named:
        if m == node.id:
            problems.append(Problem(where, "cancel names the node itself (it has ended when its cancel applies)"))
        elif m not in index:
            problems.append(Problem(where, f"cancel names an unknown node {m!r}"))
        else:
            found.append(index[m])
    return found


def _shared_depth(origin: list[int], depth: list[int], a: int, b: int) -> int:
    """How many fan-outs nodes ``a`` and ``b`` both run inside of (the same foreach nodes, outermost
    first): an instance of ``a`` at path p concerns the instances of ``b`` under ``p[:shared]``."""
    def chain(n: int) -> list[int]:
        out = []
        while depth[n]:
            n = origin[n]
            out.append(n)
        return out[::-1]
    shared = 0
    for x, y in zip(chain(a), chain(b)):
        if x != y:
            break
        shared += 1
    return shared


def _post_dominated(n: int, good: _Connections, adj: _Adjacency, of: list[int]) -> dict[int, list[int]]:
    """For each node of ``of``, the nodes it post-dominates (every way from them to a sink runs
    through it), itself left out: dominators of the reversed graph, from a virtual sink."""
    import networkx as nx  # here: only cancel_rest needs it, and it takes 0.1 s to import

    sink = n  # the virtual sink, after every node
    reversed_graph = nx.DiGraph()
    reversed_graph.add_nodes_from(range(n + 1))
    reversed_graph.add_edges_from((t, s) for s, t in zip(good.source, good.target))
    reversed_graph.add_edges_from((sink, v) for v in range(n) if not adj.outs[v])
    idom = nx.immediate_dominators(reversed_graph, sink)
    children: dict[int, list[int]] = {}
    for v, d in idom.items():
        if v != d:
            children.setdefault(d, []).append(v)
    out: dict[int, list[int]] = {}
    for root in of:
        below, todo = [], list(children.get(root, ()))
        while todo:
            v = todo.pop()
            below.append(v)
            todo.extend(children.get(v, ()))
        out[root] = sorted(below)
    return out


def _compiled_edges(good: _Connections, adj: _Adjacency, kinds: list[str]) -> list[CompiledEdge]:
    edges: list[CompiledEdge] = []
    for i, edge, s, t, kind, pos in zip(good.declared, good.edge, good.source, good.target, kinds, adj.pos):
        select = jmespath.compile(edge.select) if edge.select else None
        edges.append(_new(CompiledEdge, (i, s, t, edge.port, kind, pos, select, edge.select)))
    return edges


def _index(wf: Workflow, index: dict[str, int], good: _Connections, adj: _Adjacency, topo: list[int], depth: list[int],
           origin: list[int], kinds: list[str], cap: int, sinks: dict[str, str], fans_out: bool) -> Graph:
    edges = _compiled_edges(good, adj, kinds)
    s = wf.settings
    cap_origin = _cap_origins(wf.nodes, origin) if fans_out else [-1] * len(wf.nodes)
    queues = _queues(wf.nodes, cap_origin)
    rank = _ranks(wf.nodes, good, adj, topo)
    loops = _loop_index(wf, index, edges, adj, topo, origin, sinks) if sinks else {}
    # ids from the index: in a valid workflow it holds every node's id, once, in node order
    return Graph(
        name=wf.name, ids=tuple(index), index=index, nodes=tuple(wf.nodes),
        edges=tuple(edges), out_edges=tuple(map(tuple, adj.outs)), in_edges=tuple(map(tuple, adj.ins)),
        depth=tuple(depth), origin=tuple(origin), queue=queues,
        group_cap=tuple(map(_group_cap, wf.nodes)) if fans_out else (None,) * len(wf.nodes),
        cap_origin=tuple(cap_origin), plain_queues=_plain_queues(s.pools),
        group_pools=_group_pools(wf.nodes, cap_origin), rank=tuple(rank),
        scope=tuple(_scopes(origin, depth)),
        topo=tuple(topo), roots=tuple(i for i, incoming in enumerate(adj.ins) if not incoming),
        max_parallel=cap, pools=dict(s.pools),
        fail_fast=s.on_error == "fail_fast", has_select=any(e.select is not None for e in edges), **loops,
    )


def _scopes(origin: list[int], depth: list[int]) -> list[int]:
    """Each node's outermost enclosing foreach, or the node itself at depth 0."""
    scope = list(range(len(origin)))
    for n in range(len(origin)):
        top = n
        while depth[top]:
            top = origin[top]
        scope[n] = top
    return scope


def _group_cap(node: Node) -> int | None:
    b = node.behaviour
    return b.max_parallel if b is not None and b.kind is Kind.FAN_OUT else None  # (b.kind narrows b)


def _plain_queues(pools: Iterable[str]) -> tuple[Queue, ...]:
    """The per-pool ready queues: the default one, one per declared pool."""
    return ((None, None), *((pool, None) for pool in pools))


def _cap_origins(nodes: Sequence[Node], origin: list[int]) -> list[int]:
    """Per node, the capped foreach whose ``max_parallel`` it counts against, or -1: its origin if
    that is a capped foreach; in a loop's body, its loop's (a body runs as part of its loop's item,
    so a ``foreach`` capped at 2 over items that each loop runs at most 2 body instances at once).
    A foreach inside another starts a count of its own: its items count against its own cap only."""
    out = []
    for o in origin:
        while o >= 0 and _loops(nodes[o]):
            o = origin[o]
        out.append(o if o >= 0 and _group_cap(nodes[o]) else -1)
    return out


def _group_pools(nodes: Sequence[Node], cap_origin: list[int]) -> dict[int, tuple[str | None, ...]]:
    """For each capped fan-out node, the pools of the nodes whose queues are per its items."""
    out: dict[int, list[str | None]] = {}
    for node, o in zip(nodes, cap_origin):
        if o >= 0:
            pools = out.setdefault(o, [])
            if node.pool not in pools:
                pools.append(node.pool)
    return {o: tuple(pools) for o, pools in out.items()}


def _queues(nodes: Sequence[Node], cap_origin: list[int]) -> tuple[Queue | None, ...]:
    """The ready queue of each node that does not depend on the item: ``(pool, None)``; None for a
    node that counts against a fan-out's ``max_parallel`` (its queue is per item of that fan-out)."""
    shared: dict[str | None, Queue] = {}  # one tuple per pool, so most nodes share one value
    return tuple(None if o >= 0 else shared.setdefault(node.pool, (node.pool, None))
                 for node, o in zip(nodes, cap_origin))


def _with_loop_bodies(wf: Workflow, problems: list[Problem]) -> tuple[Workflow, dict[str, str]]:
    """``wf`` (which has a loop) with every loop's body (nested ones too) added as nodes ``<loop>.<id>``, its connections
    between them, and an entry edge from the loop to each body root; and each loop's body sink (by
    id). Problems of a body (none, two sinks, unknown ids, a bad ``until``) go to ``problems``."""
    nodes, edges, sinks = list(wf.nodes), list(wf.edges), {}
    inside: set[str] = set()
    i = 0
    while i < len(nodes):  # grows as bodies are added, so nested loops are reached too
        node = nodes[i]
        i += 1
        if _loops(node) and isinstance(node.id, str):
            sink = _add_body(node, nodes, edges, inside, problems)
            if sink is not None:
                sinks[node.id] = sink
    kept, loop_ids = [], {node.id for node in nodes if _loops(node)}
    for j, edge in enumerate(edges[:len(wf.edges)]):  # the workflow's own connections
        where = _edge_where(j, edge)
        if edge.source in inside or edge.target in inside:
            problems.append(Problem(where, "a loop's body nodes are connected only inside its body"))
        elif edge.port == LOOP_BODY_PORT and edge.source in loop_ids:
            problems.append(Problem(where, f"port {LOOP_BODY_PORT!r} of a loop feeds its body; connect what "
                                           f"follows the loop to {RESULT!r}"))
        else:
            kept.append(edge)
    kept.extend(edges[len(wf.edges):])
    return attrs.evolve(wf, nodes=tuple(nodes), edges=tuple(kept)), sinks


def _add_body(loop: Node, nodes: list[Node], edges: list[Edge], inside: set[str],
              problems: list[Problem]) -> str | None:
    """Append ``loop``'s body to ``nodes`` and ``edges``; its sink's id, or None if the body is bad."""
    b = loop.behaviour
    assert b is not None and b.kind is Kind.LOOP  # (narrowing b)
    where = f"node {loop.id!r}"
    bad = _loop_field_problems(b.until, b.max_iterations)
    if loop.timeout is not None or loop.retry != _NO_RETRY or loop.pool is not None:
        bad.append("a loop runs no attempt of its own and takes no slot: give timeout, retry and pool to its "
                   "body's nodes")
    problems.extend(Problem(where, message) for message in bad)
    if not b.nodes:
        problems.append(Problem(where, "its body needs at least one node"))
        return None
    local: set[str] = set()
    for k, node in enumerate(b.nodes):
        if not isinstance(node.id, str) or not node.id:
            problems.append(Problem(f"{where}, body node #{k + 1}", "every node needs a non-empty string id"))
        elif node.id in local:
            problems.append(Problem(f"{where}, body node {node.id!r}", "duplicate id (ids must be unique in a body)"))
        else:
            local.add(node.id)
            nodes.append(attrs.evolve(node, id=f"{loop.id}.{node.id}"))
            inside.add(f"{loop.id}.{node.id}")
    has_in: set[str] = set()
    has_out: set[str] = set()
    for k, edge in enumerate(b.edges):
        unknown = [end for end in (edge.source, edge.target) if end not in local]
        if unknown:
            problems.append(Problem(f"{where}, body connection #{k + 1} ({edge.source} -> {edge.target})",
                                    f"unknown body node {unknown[0]!r} (a body connects its own nodes only)"))
            continue
        edges.append(edge._replace(source=f"{loop.id}.{edge.source}", target=f"{loop.id}.{edge.target}"))
        has_out.add(edge.source)
        has_in.add(edge.target)
    ids = [node.id for node in b.nodes if node.id in local]
    ends = [i for i in dict.fromkeys(ids) if i not in has_out]
    if len(ends) != 1:
        if ends:  # (none: a cycle, which the graph's check names)
            problems.append(Problem(where, f"its body must end in exactly one node (its output is the body's "
                                           f"output); it ends in {', '.join(ends)}: join them (a merge node)"))
        return None
    for root in dict.fromkeys(i for i in ids if i not in has_in):
        edges.append(Edge(loop.id, f"{loop.id}.{root}", LOOP_BODY_PORT))
    return f"{loop.id}.{ends[0]}" if not bad else None


def _loop_field_problems(until: Any, max_iterations: Any) -> list[str]:
    out = []
    if not isinstance(until, str):
        out.append("until must be a JMESPath expression (a string)")
    else:
        try:
            jmespath.compile(until)
        except jmespath.exceptions.JMESPathError as exc:
            out.append(f"until {until!r} is not valid JMESPath: {exc}")
        except RecursionError:
            out.append(f"until is nested too deeply to read ({len(until)} characters)")
    if not (type(max_iterations) is int and 1 <= max_iterations <= MAX_ITERATIONS):
        out.append(f"max_iterations must be a whole number from 1 to {MAX_ITERATIONS:,}, not {max_iterations!r}")
    return out


def _loop_index(wf: Workflow, index: dict[str, int], edges: list[CompiledEdge], adj: _Adjacency, topo: list[int],
                origin: list[int], sinks: dict[str, str]) -> dict[str, Any]:
    """The graph's loop fields; adds each loop's exit edge (its body's sink back to it) to ``edges``
    and to the sink's outgoing edges (``adj.outs``, before they are frozen)."""
    until: dict[int, Any] = {}
    entries: dict[int, tuple[int, ...]] = {}
    for loop_id, sink_id in sinks.items():
        n, sink = index[loop_id], index[sink_id]
        b = wf.nodes[n].behaviour
        assert b is not None and b.kind is Kind.LOOP  # (narrowing b)
        until[n] = jmespath.compile(b.until)
        entries[n] = tuple(k for k in adj.outs[n] if edges[k].kind == LOOP_ENTRY)
        adj.outs[sink].append(len(edges))
        edges.append(_new(CompiledEdge, (len(edges), sink, n, RESULT, LOOP_EXIT, -1, None, None)))
    loop_of = [-1] * len(wf.nodes)
    body: dict[int, list[int]] = {}
    for n in topo:
        o = origin[n]
        if o >= 0:
            loop_of[n] = o if o in until else loop_of[o]
            if loop_of[n] >= 0:
                body.setdefault(loop_of[n], []).append(n)
    return {"loop_until": until, "loop_entries": entries, "loop_of": tuple(loop_of),
            "body_nodes": {n: tuple(members) for n, members in body.items()}}


__all__ = ["Graph", "CompiledEdge", "Problem", "WorkflowInvalid", "compile_workflow",
           "PLAIN", "FAN_OUT", "MAP", "GATHER", "LOOP_ENTRY", "LOOP_EXIT"]
