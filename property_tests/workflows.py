"""A hypothesis strategy for random workflow definitions (the dict a user would write in YAML).

Nodes are declared in topological order (every edge points to a later node), so there is never a
cycle. Each node lives in a *scope*: the top level or the items of one ``foreach``; its inputs
all come from its own scope (a plain or ``map: true`` edge), from the ``iteration`` port of the
foreach that opens the scope, or from a scope nested one level deeper (a gather). That is exactly
what ``compile_workflow`` accepts, so every drawn definition is valid. A ``loop`` node carries a
small body of its own: a chain of up to three nodes (with a shortcut edge now and then) that ends in
a python node, its single sink.

With ``control_flow``, a fair share of the nodes with several inputs get a join rule (``any`` or
``{at_least: K}``, sometimes with ``cancel_rest``), some gather edges an ``at_least`` (sometimes with
``cancel_rest``), some nodes a ``cancel`` list naming nodes declared before them, and ``end`` and
``fail`` nodes appear among the types. What these decide depends on which input comes first, so
tests that compare completion orders or runners leave them out.
"""
from __future__ import annotations

import os

import attrs
from hypothesis import strategies as st

CALL = "property_tests.pure_nodes:mix"
PYTHON_PORTS = ("result", "a", "b")
OUT_PORTS = {"python": PYTHON_PORTS, "if": ("true", "false"), "foreach": ("result",), "merge": ("result",),
             "noop": ("result",), "delay": ("result",), "wait": ("result", "completed", "timeout"),
             "hil": ("result", "timeout"), "loop": ("result",), "subworkflow": ("result",),
             "end": ("result",), "fail": ("result",)}  # a hil also has one port per choice (``_ports``)
TASK_TYPES = ("python", "if", "foreach", "merge", "noop")
PARKING_TYPES = ("delay", "wait", "hil", "loop", "subworkflow")  # instances that park (a timer, an answer, a body, a child run), never run
CHILD_WORKFLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child_workflow.yaml")
WAITING_TYPES = ("wait", "hil")  # parked until answered (or until their own timeout, if they have one)
HIL_CHOICES = (None, ("approve", "reject"), ("a", "b", "c"))
FOREACH_ITEMS = ("`[]`", "[@]", "[@, @]", "[@, @, @]")
CONDITIONS = ("@ > `500`", "@", "@ == `7`")
MAX_FOREACH_DEPTH = 2
MAX_PASSED_SIZE = 40  # a node whose input could hold more numbers is a python node, which hashes it


@attrs.frozen
class Vocabulary:
    """Which parts of the workflow language random definitions use."""

    max_nodes: int = 60
    fan_out: bool = True
    delays: bool = True
    delay_seconds: tuple = (0, 0.5, 1, 3)
    timeouts: bool = True
    timeout_odds: int = 3  # one task node in this many has a timeout
    retries: bool = True
    retry_odds: int = 3
    retry_delays: tuple = (0, 0.5, 1)
    caps: bool = True
    selects: tuple = ("@", "[0]", "length(@)")  # on an edge; length() of a number fails the target
    select_odds: int = 6
    on_error: tuple = ("fail_fast", "continue")
    fail_percent: int = 0  # for the pure node functions the runners call
    waits: bool = True  # wait and hil nodes, which a person (the step driver) answers
    wait_timeouts: bool = True  # a wait or hil may have a timeout: it ends answered, or timed out
    answers: bool = True  # False: nobody answers (a runner on its own), so every wait and hil has a timeout
    wait_seconds: tuple = (1, 3, 10)
    loops: bool = True  # loop nodes, with a small body (see ``_loop_config``)
    loop_iterations: tuple = (1, 2, 3)  # their max_iterations
    loop_failures: bool = True  # False: a loop's body is one python node that ends it once it gives a result
    children: bool = True  # subworkflow nodes, whose child's end the step driver reports (runners: no child runs)
    control_flow: bool = True  # join rules, cancel_rest, gather at_least, cancel lists, end and fail nodes
    join_odds: int = 3  # one node in this many is drawn with several inputs and a join rule
    cancel_odds: int = 8  # one node in this many has a cancel list
    end_or_fail_odds: int = 20  # one node in this many is an end or a fail node


STEP_VOCABULARY = Vocabulary()
# Runner tests run real code on real clocks: short delays, no timeouts (a timeout races the clock).
# Nobody answers a wait there, so no wait or hil nodes.
RUNNER_VOCABULARY = Vocabulary(max_nodes=12, timeouts=False, delay_seconds=(0, 0.01, 0.03),
                               retry_delays=(0, 0.01), fail_percent=15, waits=False, children=False,
                               control_flow=False)


@attrs.define
class _Declared:
    id: str
    type: str
    scope: str | None  # the foreach whose items this node runs per, or None at the top level
    depth: int
    size: int  # a bound on how many numbers its output holds: values passed on must not grow exponentially
    ports: tuple  # the ports edges may read: its type's, and a hil's choices
    closed: bool = False  # feeds a cancel_rest join, which it then leads to only: later nodes do not read it


@st.composite
def workflow_definitions(draw, vocab: Vocabulary = STEP_VOCABULARY):
    """A random, valid workflow definition as a dict."""
    settings = _settings(draw, vocab)
    declared: list[_Declared] = []
    nodes, connections = [], []
    for i in range(draw(st.integers(1, vocab.max_nodes))):
        node, edges = _node(draw, vocab, i, declared, settings)
        nodes.append(node)
        connections.extend(edges)
    return {"name": "random", "settings": settings, "nodes": nodes, "connections": connections}


def _settings(draw, vocab: Vocabulary) -> dict:
    settings = {"on_error": draw(st.sampled_from(vocab.on_error))}
    if vocab.caps:
        settings["max_parallel"] = draw(st.integers(1, 8))
        settings["pools"] = {"p1": draw(st.integers(1, 3)), "p2": draw(st.integers(1, 3))}
    else:
        settings["max_parallel"] = 64
    return settings


def _node(draw, vocab, i, declared, settings):
    scope = _scope(draw, vocab, declared)
    depth = 0 if scope is None else next(d.depth for d in declared if d.id == scope) + 1
    joins = vocab.control_flow and _one_in(draw, vocab.join_odds)
    edges = _incoming(draw, vocab, i, scope, declared, several=joins)
    size = _input_size(edges, declared)
    kind = draw(st.sampled_from(_types(vocab, depth))) if size <= MAX_PASSED_SIZE else "python"
    if vocab.control_flow and _one_in(draw, vocab.end_or_fail_odds):
        kind = draw(st.sampled_from(("end", "fail", "fail")))  # an end cuts a run short: fewer of them
    node = {"id": f"n{i}", "type": kind, **_config(draw, vocab, i, kind)}
    if kind in TASK_TYPES or kind == "fail":
        node.update(_task_fields(draw, vocab, settings))
    if kind == "loop":
        node.update(_loop_config(draw, vocab, i, settings))
    if vocab.control_flow:
        node.update(_control_fields(draw, vocab, edges, declared, joins))
    if kind == "python" and "retry" in node:
        node["params"]["flaky_attempts"] = draw(st.integers(0, node["retry"]["max_attempts"] - 1))
    declared.append(_Declared(node["id"], kind, scope, depth, 1 if kind in ("python", "loop") else size, _ports(node)))
    return node, [{"to": node["id"], **e} for e in edges]


def _control_fields(draw, vocab, edges, declared, joins) -> dict:
    """A join rule for a node with several inputs; a cancel list naming earlier nodes."""
    fields: dict = {}
    if joins and len(edges) >= 2:
        k = draw(st.integers(1, len(edges) - 1)) if draw(st.integers(0, 3)) else len(edges)  # mostly fewer than all
        fields["join"] = "any" if k == 1 and draw(st.booleans()) else {"at_least": k}
        if draw(st.integers(0, 3)):
            fields["cancel_rest"] = True
            for d in declared:  # so that the join post-dominates its inputs, and has something to cancel
                if any(e["from"] == d.id for e in edges):
                    d.closed = True
    if declared and _one_in(draw, vocab.cancel_odds):
        fields["cancel"] = draw(st.lists(st.sampled_from([d.id for d in declared]), min_size=1, max_size=2,
                                         unique=True))
    return fields


def _ports(node) -> tuple:
    return OUT_PORTS[node["type"]] + tuple(node.get("choices", ()))


def _input_size(edges, declared) -> int:
    """Merges, noops, ifs, delays and foreach pass on what they get; a gather collects up to 3 items."""
    by_id = {d.id: d for d in declared}
    sizes = [by_id[e["from"]].size * (3 if _is_gather(e, by_id) else 1) for e in edges]
    return sum(sizes) or 1


def _is_gather(edge, by_id) -> bool:
    return by_id[edge["from"]].scope is not None and not edge.get("map") and edge["port"] != "iteration"


def _scope(draw, vocab, declared):
    scopes = [None] + [d.id for d in declared if d.type == "foreach" and d.depth < MAX_FOREACH_DEPTH]
    return draw(st.sampled_from(scopes)) if vocab.fan_out else None


def _types(vocab, depth) -> list:
    kinds = ["python", "python", "python", "if", "merge", "noop"]
    if vocab.fan_out and depth < MAX_FOREACH_DEPTH:
        kinds.append("foreach")
    if vocab.delays:
        kinds.append("delay")
    if vocab.waits:
        kinds.extend(("wait", "hil"))
    if vocab.loops and depth < MAX_FOREACH_DEPTH:
        kinds.append("loop")
    if vocab.children:
        kinds.append("subworkflow")
    return kinds


def _candidates(scope, declared) -> list:
    """Every (source, port, map) that may feed a node in ``scope``."""
    parent = {d.id: d.scope for d in declared}
    out = []
    for d in declared:
        if d.id == scope:
            out.append((d.id, "iteration", False))
        if d.closed:
            continue
        if d.scope == scope:
            out.extend((d.id, port, scope is not None) for port in d.ports)
        elif d.scope is not None and parent[d.scope] == scope:
            out.extend((d.id, port, False) for port in d.ports)  # a gather
    return out


def _incoming(draw, vocab, i, scope, declared, several=False) -> list:
    """The node's input edges: one to three (two to four for a node drawn to get a join rule)."""
    candidates = _candidates(scope, declared)
    if scope is None and (i == 0 or not candidates or _one_in(draw, 10)):
        return []  # a root: it receives the trigger
    fewest = 2 if several and len(set(candidates)) >= 2 else 1
    chosen = draw(st.lists(st.sampled_from(candidates), min_size=fewest, max_size=4 if several else 3, unique=True))
    scope_of = {d.id: d.scope for d in declared}
    return [_edge(draw, vocab, *c, gathers=scope_of[c[0]] != scope and c[0] != scope) for c in chosen]


def _edge(draw, vocab, source, port, mapped, gathers=False) -> dict:
    edge = {"from": source, "port": port}
    if mapped:
        edge["map"] = True
    if vocab.selects and _one_in(draw, vocab.select_odds):
        edge["select"] = draw(st.sampled_from(vocab.selects))
    if gathers and vocab.control_flow and _one_in(draw, vocab.join_odds):
        edge["at_least"] = draw(st.sampled_from((1, 1, 2, 3)))  # a fan-out has 0 to 3 items
        if draw(st.booleans()):
            edge["cancel_rest"] = True
    return edge


def _config(draw, vocab, i, kind) -> dict:
    if kind == "python":
        return {"call": CALL, "params": {"salt": i, "ports": list(PYTHON_PORTS), "fail_percent": vocab.fail_percent}}
    if kind == "if":
        return {"condition": draw(st.sampled_from(CONDITIONS))}
    if kind == "foreach":
        config = {"items": draw(st.sampled_from(FOREACH_ITEMS))}
        if vocab.caps and draw(st.booleans()):
            config["max_parallel"] = draw(st.integers(1, 2))
        return config
    if kind == "delay":
        return {"seconds": draw(st.sampled_from(vocab.delay_seconds))}
    if kind in WAITING_TYPES:
        return _wait_config(draw, vocab, kind)
    if kind == "subworkflow":  # a timeout bounds the child run (it is cancelled, the node fails)
        timeout = vocab.timeouts and _one_in(draw, vocab.timeout_odds)
        return {"workflow": CHILD_WORKFLOW, **({"timeout": draw(st.sampled_from((1, 3, 10)))} if timeout else {})}
    if kind == "fail":
        return {"message": f"n{i} fails"}
    return {}


BODY_TYPES = ("python", "python", "noop", "if", "merge")


def _loop_config(draw, vocab, i, settings) -> dict:
    """A loop's fields: until, max_iterations and a body b0 -> b1 -> ... ending in a python node."""
    kinds = list(BODY_TYPES) + (["delay"] if vocab.delays else []) + (["hil"] if vocab.waits else [])
    size = draw(st.integers(1, 3)) if vocab.loop_failures else 1
    nodes, connections = [], []
    for j in range(size):
        kind = "python" if j == size - 1 else draw(st.sampled_from(kinds))
        body_node = {"id": f"b{j}", "type": kind, **_config(draw, vocab, 1000 * (i + 1) + j, kind)}
        if kind in TASK_TYPES:
            body_node.update(_task_fields(draw, vocab, settings))
        nodes.append(body_node)
        if j:
            previous = nodes[j - 1]
            port = draw(st.sampled_from(_ports(previous))) if _one_in(draw, 3) else _ports(previous)[0]
            connections.append({"from": previous["id"], "to": body_node["id"], "port": port})
        if j >= 2 and _one_in(draw, 3):
            connections.append({"from": nodes[j - 2]["id"], "to": body_node["id"], "port": _ports(nodes[j - 2])[0]})
    if not vocab.loop_failures:  # a result comes at each iteration with odds 3/4: 20 iterations are plenty
        return {"until": "@ != `null`", "max_iterations": 20, "body": {"nodes": nodes, "connections": connections}}
    return {"until": draw(st.sampled_from(CONDITIONS)), "max_iterations": draw(st.sampled_from(vocab.loop_iterations)),
            "body": {"nodes": nodes, "connections": connections}}


def _wait_config(draw, vocab, kind) -> dict:
    config = {}
    if kind == "hil":
        config["prompt"] = "go on?"
        choices = draw(st.sampled_from(HIL_CHOICES))
        if choices:
            config["choices"] = list(choices)
    if vocab.wait_timeouts and (not vocab.answers or draw(st.booleans())):
        config["timeout"] = draw(st.sampled_from(vocab.wait_seconds))
    return config


def _task_fields(draw, vocab, settings) -> dict:
    fields = {"estimate": draw(st.sampled_from((1, 0.5, 2)))}
    if vocab.timeouts and _one_in(draw, vocab.timeout_odds):
        fields["timeout"] = draw(st.sampled_from((1, 3, 10)))
    if vocab.retries and _one_in(draw, vocab.retry_odds):
        fields["retry"] = {"max_attempts": draw(st.integers(2, 3)), "delay": draw(st.sampled_from(vocab.retry_delays)),
                           "backoff": draw(st.sampled_from((1, 2)))}
    if settings.get("pools") and _one_in(draw, 3):
        fields["pool"] = draw(st.sampled_from(sorted(settings["pools"])))
    return fields


def _one_in(draw, odds: int) -> bool:
    """True about once in ``odds`` draws; shrinks to False."""
    return draw(st.integers(0, odds - 1)) == odds - 1
