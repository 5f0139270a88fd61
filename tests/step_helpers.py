"""Build small workflows and drive ``step`` by hand, for the ``test_step_*`` unit tests.

``graph("a -> b", "a -> c")`` compiles a workflow from edge strings; ``Run(g)`` feeds events to
``step`` one batch at a time, keeps every batch (for replay) and the commands of the last one, and
remembers the attempt of each started instance so a test can say ``run.succeed("a", 1)``.
No threads, no clock, no sleeps: time is whatever ``at`` a test passes.
"""
from __future__ import annotations

from adapters.node_types import NODE_TYPES
from scheduler_core import (CancelConfirmed, CancelNode, CancelTimer, InputProvided, Node, NodeFailed, NodeSucceeded,
                            Resumed, RunStarted, Settings, StartNode, StartTimer, TimerFired, Edge, Workflow,
                            compile_workflow, initial_state, step, validate_state)

TASK = "python"


def edge(spec: str, **fields) -> Edge:
    """``"a -> b"`` or ``"a.port -> b"`` as an ``Edge``; ``fields`` adds ``map``/``select``."""
    left, right = (part.strip() for part in spec.split("->"))
    source, _, port = left.partition(".")
    return Edge(source=source, target=right, port=port or "result", **fields)


def graph(*edges, nodes=(), **settings):
    """Compile a workflow: ``edges`` are ``"a -> b"``, a lone ``"a"`` or an ``Edge``; ``nodes`` are ``Node``.

    Nodes appear in declaration order: first those given in ``nodes``, then new names in the order
    ``edges`` mention them. A node not given in ``nodes`` is a python task.
    """
    declared = {n.id: n for n in nodes}
    edge_values = []
    for spec in edges:
        if isinstance(spec, str) and "->" not in spec:
            declared.setdefault(spec, node(spec))
            continue
        e = edge(spec) if isinstance(spec, str) else spec
        edge_values.append(e)
        for name in (e.source, e.target):
            declared.setdefault(name, node(name))
    wf = Workflow(name="test", nodes=tuple(declared.values()), edges=tuple(edge_values), settings=Settings(**settings))
    return compile_workflow(wf)


def node(id: str, type: str = TASK, **fields) -> Node:
    """A node of a built-in ``type``, with the behaviour that type gives it."""
    config = fields.pop("config", {})
    return Node(id=id, type=type, config=config, behaviour=NODE_TYPES[type].behaviour(config), **fields)


class Run:
    """One run driven through ``step`` by a test."""

    def __init__(self, g, trace: list | None = None):
        self.trace = trace  # if given, every instance transition the steps make is appended
        self.state = initial_state(g)
        self.batches: list = []
        self.commands: tuple = ()
        self.attempts: dict = {}
        self.now = 0.0

    def step(self, *events) -> tuple:
        for e in events:
            self.now = e.at
        self.batches.append(events)
        self.state, self.commands = step(self.state, events, trace=self.trace)
        validate_state(self.state)  # every step of every step test leaves a consistent state
        for c in self.commands:
            if isinstance(c, StartNode):
                self.attempts[(c.node, c.item)] = c.attempt
        return self.commands

    def _at(self, at):
        return self.now if at is None else at

    def start(self, trigger=None, at=0.0) -> tuple:
        return self.step(RunStarted(at=at, trigger=trigger))

    def succeeded(self, name, value=None, item=(), at=None, ports=None, attempt=None) -> NodeSucceeded:
        return NodeSucceeded(node=name, item=tuple(item), attempt=attempt or self.attempts[(name, tuple(item))],
                             at=self._at(at), ports={"result": value} if ports is None else ports)

    def failed(self, name, item=(), at=None, attempt=None, error_type="ValueError", message="boom") -> NodeFailed:
        return NodeFailed(node=name, item=tuple(item), attempt=attempt or self.attempts[(name, tuple(item))],
                          at=self._at(at), error_type=error_type, message=message)

    def succeed(self, name, value=None, item=(), at=None, ports=None, attempt=None) -> tuple:
        return self.step(self.succeeded(name, value, item, at, ports, attempt))

    def fail(self, name, item=(), at=None, **kw) -> tuple:
        return self.step(self.failed(name, item, at, **kw))

    def fire(self, timer, at=None) -> tuple:
        return self.step(TimerFired(timer=timer, at=self._at(at)))

    def confirm(self, name, item=(), at=None, attempt=None) -> tuple:
        return self.step(CancelConfirmed(node=name, item=tuple(item), attempt=attempt or self.attempts[(name, tuple(item))],
                                         at=self._at(at)))

    def provide(self, name, value=None, item=(), port=None, at=None) -> tuple:
        return self.step(InputProvided(node=name, item=tuple(item), value=value, port=port, at=self._at(at)))

    def resume(self, at=None) -> tuple:
        return self.step(Resumed(at=self._at(at)))

    def record(self, name, item=()):
        return self.state.records[(self.state.graph.index[name], tuple(item))]

    def has_record(self, name, item=()) -> bool:
        return (self.state.graph.index[name], tuple(item)) in self.state.records

    def status(self, name, item=()) -> str | None:
        """The instance's status, or None while it has no record yet."""
        return self.record(name, item).status if self.has_record(name, item) else None

    @property
    def in_flight(self) -> int:
        return self.state.running_count


def starts(commands) -> list:
    """The instances a step started, in command order: ``"a"`` or ``("a", item)``."""
    return [c.node if not c.item else (c.node, c.item) for c in commands if isinstance(c, StartNode)]


def start_of(commands, name, item=()) -> StartNode:
    return next(c for c in commands if isinstance(c, StartNode) and c.node == name and c.item == tuple(item))


def cancels(commands) -> list:
    return [c.node if not c.item else (c.node, c.item) for c in commands if isinstance(c, CancelNode)]


def timers(commands) -> list:
    return [c for c in commands if isinstance(c, StartTimer)]


def cancelled_timers(commands) -> list:
    return [c.timer for c in commands if isinstance(c, CancelTimer)]


def of_type(commands, cls) -> list:
    return [c for c in commands if isinstance(c, cls)]
