"""What a run page shows, built from the run's log: the ``--json`` object (``run_dict``), each
attempt of each instance with its times (one bar each on the timeline), the waits, what each
instance got as input, its log lines, and the workflow's graph laid out in layers.

The log is replayed from its start with the core's ``step`` (as ``story`` does): the input of an
instance is the ``arrivals`` of the command that started it, and an attempt's times come from the
events that ended it. Nothing here writes anything.
"""
from __future__ import annotations

import time

import networkx as nx

from runners import collector_paused, instance_name
from scheduler_core import NodeFailed, NodeSucceeded, StartNode, initial_state, step
from scheduler_core import Kind
from scheduler_core.graph import LOOP_ENTRY, LOOP_EXIT

from ..engine import RunResult
from ..recovery import first_cap, read_log, with_cap_history
from ..report import waiting_on
from ..workflow_file import compiled

# Timeline rows a page draws at most; the rest are summed up (a 10,000-instance run stays usable).
MAX_BARS = 2000
# The instances drawn as a wait on the timeline (they run no attempt of their own), and what for.
WAITS_FOR = {Kind.PARK_INPUT: "an answer", Kind.PARK_TIMER: "a timer", Kind.PARK_CHILD: "its child run"}
# Places of edges that skip layers a graph gets at most (a huge graph's long edges are drawn straight:
# its layout stays as quick as its nodes).
MAX_PLACES = 2000
# Layout of the graph (SVG user units).
NODE_W, NODE_H, GAP_X, GAP_Y = 168, 44, 50, 22  # (wide enough for "subworkflow" beside "succeeded")


def run_view(store, run_id: str) -> dict:
    """The run page's data: ``run`` (the ``--json`` object), ``attempts``, ``instances`` (input, logs
    per instance), ``waiting`` (instances that wait for an answer) and ``graph`` (nodes with their
    layout and aggregate status, edges). ``RunRefused`` for an unknown run."""
    info, wf, batches, prints = read_log(store, run_id)
    graph = compiled(wf, max_parallel=first_cap(info.options))
    state = initial_state(graph)
    attempts: dict[tuple, dict] = {}
    inputs: dict[tuple, object] = {}
    with collector_paused():
        for events in with_cap_history(info.options, batches, 0):
            for e in events:
                if isinstance(e, (NodeSucceeded, NodeFailed)):
                    a = attempts.setdefault((e.node, tuple(e.item), e.attempt),
                                            {"node": e.node, "item": list(e.item) or None, "attempt": e.attempt})
                    outcome = "succeeded" if isinstance(e, NodeSucceeded) else "failed"
                    error = None if isinstance(e, NodeSucceeded) else _error(e)
                    if not _current(state, graph, e):  # a result after its attempt was cancelled or timed out
                        a["late"] = {"status": outcome, "at": e.at, "error": error}
                        continue
                    a["status"] = outcome
                    a["started_at"] = e.started_at if e.started_at is not None else a.get("started_at")
                    a["finished_at"] = e.at
                    a["error"] = error
            state, commands = step(state, events)
            for c in commands:
                if isinstance(c, StartNode):
                    key = (c.node, tuple(c.item), c.attempt)
                    a = attempts.setdefault(key, {"node": c.node, "item": list(c.item) or None, "attempt": c.attempt})
                    a.setdefault("status", "running")
                    a.setdefault("started_at", state.now)
                    a.setdefault("finished_at", None)
                    a.setdefault("error", None)
                    inputs[(c.node, tuple(c.item))] = _input(c.arrivals)
    run = RunResult(run_id, state, parent=info.options.get("parent")).to_dict()  # as GET /api/runs/{id} has it
    records = {(r.node, tuple(r.item)): r for r in state.records.values()}
    names: dict[tuple, str] = {}

    def name_of(node, item):
        key = (node, item)
        name = names.get(key)
        if name is None:
            name = names[key] = instance_name(node, item)
        return name
    bars = []
    for (node, item, _), a in attempts.items():
        if a["status"] == "running":  # still running, or it ended without a result (cancelled, timed out)
            r = records.get((node, item))
            if r is not None and str(r.status) != "running" and (r.attempts != a["attempt"] or r.finished_at):
                a["status"] = str(r.status) if r.attempts == a["attempt"] else "failed"
                a["finished_at"] = r.finished_at
        a["kind"], a["name"] = "attempt", name_of(node, item)
        bars.append(a)
    for r in state.records.values():  # waits: a person, a timer or a child run held the instance
        waits_for = WAITS_FOR.get(graph.nodes[graph.index[r.node]].behaviour.kind)
        if waits_for and r.started_at is not None:
            bars.append({"node": r.node, "item": list(r.item) or None, "attempt": None, "kind": "wait",
                         "name": name_of(r.node, r.item), "status": str(r.status), "started_at": r.started_at,
                         "finished_at": r.finished_at, "error": None, "waits_for": waits_for})
    bars.sort(key=lambda b: (b["started_at"] if b["started_at"] is not None else float("inf"), b["name"]))
    instances = {}  # only those with something to show beyond their record
    for key, r in records.items():
        if key in inputs or r.logs:
            instances[name_of(*key)] = {"input": inputs.get(key), "has_input": key in inputs, "logs": list(r.logs)}
    waiting = [{"name": name, "node": node, "item": list(item) or None, "prompt": prompt, "choices": choices,
                "type": graph.nodes[graph.index[node]].type}
               for name, node, item, prompt, choices in waiting_on(state)]
    return {"run": run, "workflow": info.workflow, "attempts": bars[:MAX_BARS], "attempts_total": len(bars),
            "instances": instances, "waiting": waiting, "graph": graph_view(graph, run["nodes"]),
            "now": time.time(), "options": {"runner": info.options.get("runner")}}


def _current(state, graph, e) -> bool:
    """Whether the attempt a result event names is the one in flight (else the core keeps it as late)."""
    n = graph.index.get(e.node)
    return n is not None and not state.finished and state.running.get((n, tuple(e.item))) == e.attempt


def _error(e: NodeFailed) -> dict:
    error = {"type": e.error_type, "message": e.message}
    if e.traceback is not None:
        error["traceback"] = e.traceback
    return error


def _input(arrivals) -> object:
    """What a node got: the one value delivered, or ``{source: value}`` when several edges delivered."""
    if len(arrivals) == 1:
        return arrivals[0][1]
    return [{"from": source, "value": value} for source, value in arrivals]


STATUS_ORDER = ("failed", "running", "waiting", "pending", "cancelled", "succeeded", "skipped")


def node_summary(records: list[dict]) -> dict:
    """A node's status over its instances: the most pressing one (failed, running, waiting, ...) and
    the count of each."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    status = next((s for s in STATUS_ORDER if s in counts), "pending")
    if status in ("cancelled", "skipped") and counts.get("succeeded"):
        status = "succeeded"
    return {"status": status, "counts": counts, "instances": len(records)}


def graph_view(graph, records: list[dict]) -> dict:
    """Nodes placed in layers (a node one layer below its lowest input; within a layer, ordered by
    the mean position of its inputs, a few sweeps down), edges as SVG paths. An edge that skips
    layers passes through a place of its own in each layer between (as a node would), so it is
    never drawn across a node it does not touch."""
    g = nx.DiGraph()
    g.add_nodes_from(range(len(graph.ids)))
    drawn = [e for e in graph.edges if e.kind != LOOP_EXIT]  # a loop's body drawn below it, not back into it
    g.add_edges_from((e.source, e.target) for e in drawn)
    # what follows a loop is placed below its body (it runs after it), not beside it
    body_sink = {e.target: e.source for e in graph.edges if e.kind == LOOP_EXIT}
    layering = g.copy()
    layering.add_edges_from((body_sink[e.source], e.target) for e in drawn
                            if e.source in body_sink and e.kind != LOOP_ENTRY)
    depth = {n: d for d, layer in enumerate(nx.topological_generations(layering)) for n in layer}
    layers: list[list] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in sorted(depth):
        layers[depth[n]].append(n)
    routes = []  # per drawn edge: the places it passes through, one per layer it skips
    routed = sum(max(0, depth[e.target] - depth[e.source] - 1) for e in drawn) <= MAX_PLACES
    for i, e in enumerate(drawn):
        routes.append([("via", i, d) for d in range(depth[e.source] + 1, depth[e.target])] if routed else [])
        hops = [e.source, *routes[-1], e.target]
        for place in routes[-1]:
            layers[place[2]].append(place)
        g.add_edges_from(zip(hops, hops[1:]))
    pos: dict = {}
    for layer in layers:
        for i, n in enumerate(layer):
            pos[n] = i
    for _ in range(2):  # barycentre sweeps: fewer crossings
        for layer in layers[1:]:
            layer.sort(key=lambda n: (sum(pos[p] for p in g.predecessors(n)) / max(1, g.in_degree(n)), _order(n)))
            for i, n in enumerate(layer):
                pos[n] = i
    widest = max((len(layer) for layer in layers), default=1)
    by_node: dict[str, list] = {}
    for r in records:
        by_node.setdefault(r["node"], []).append(r)
    nodes, xy = [], {}
    for d, layer in enumerate(layers):
        offset = (widest - len(layer)) * (NODE_W + GAP_X) / 2
        for i, n in enumerate(layer):
            x, y = 20 + offset + i * (NODE_W + GAP_X), 20 + d * (NODE_H + GAP_Y * 2)
            xy[n] = (x, y)
            if isinstance(n, tuple):
                continue  # a place an edge passes through
            node = graph.nodes[n]
            b = node.behaviour
            nodes.append({"id": node.id, "type": node.type, "x": x, "y": y, "w": NODE_W, "h": NODE_H,
                          "mapped": graph.depth[n] > 0,
                          "prompt": getattr(b, "prompt", None), "choices": list(getattr(b, "choices", None) or []),
                          **node_summary(by_node.get(node.id, []))})
    edges = []
    for e, via in zip(drawn, routes):
        hops = [xy[h] for h in (e.source, *via, e.target)]
        path, label = _edge_path(hops)
        edges.append({"from": graph.ids[e.source], "to": graph.ids[e.target],
                      "port": e.port if e.port != "result" else None, "kind": e.kind,
                      "path": path, "label_x": label[0], "label_y": label[1]})
    width = 40 + widest * (NODE_W + GAP_X) - GAP_X
    height = 40 + len(layers) * (NODE_H + GAP_Y * 2) - GAP_Y * 2
    return {"nodes": nodes, "edges": edges, "width": max(width, 200), "height": max(height, 80)}


def _order(n) -> tuple:
    """Ties in a layer: nodes by declaration, then the places of edges, by edge."""
    return (0, n) if not isinstance(n, tuple) else (1, n[1])


def _edge_path(hops: list[tuple]) -> tuple[str, tuple[float, float]]:
    """An SVG path from the bottom of the first box to the top of the last, through the middle of the
    places between (an S-curve between two layers, straight down through a place); and where its
    port label goes (the middle of its first curve)."""
    cx = NODE_W / 2
    x, y = hops[0][0] + cx, hops[0][1] + NODE_H
    parts = [f"M{x:.0f},{y:.0f}"]
    label = None
    for i, (hx, hy) in enumerate(hops[1:], 1):
        tx, ty = hx + cx, hy - (4 if i == len(hops) - 1 else 0)
        mid = (y + ty) / 2
        parts.append(f"C{x:.0f},{mid:.0f} {tx:.0f},{mid:.0f} {tx:.0f},{ty:.0f}")
        label = label or ((x + tx) / 2, mid)
        x, y = tx, hy + NODE_H
        if i < len(hops) - 1:
            parts.append(f"L{x:.0f},{y:.0f}")
    return " ".join(parts), label
