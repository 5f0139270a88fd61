"""What the core does with a node: the few kinds of behaviour it knows, as typed values.

The core never looks at a node's *type* (``python``, ``hil``...): that name belongs to the
adapters, where each node type lives in one module and says, when a workflow is loaded, which
behaviour its nodes have. The core knows only these:

- ``RunTask``: a runner executes the node; its result names the output ports that deliver, so
  a task that puts its input on ``true`` or ``false`` *routes* (the ``if`` type) without the core
  knowing anything more about it. ``ports`` lists the ports it can produce (``None``: any), so an
  edge from a port that never exists is reported when the workflow is checked.
- ``FanOut``: a task whose ``item_port`` delivers a list that the core fans out, one instance of
  each per-item node per item, at most ``max_parallel`` of them running at once per fan-out.
- ``ParkForTimer``: takes no slot and runs no code; after ``seconds`` its input goes out on
  ``port`` (the ``delay`` type).
- ``ParkForInput``: takes no slot and runs no code; it waits for an answer (``InputProvided``),
  which goes out on ``result`` and on the chosen port (one of ``choices``) or on ``answer_port``;
  after ``timeout`` seconds without one, its input goes out on ``timeout_port`` instead.
- ``Loop``: takes no slot and runs no code; it runs its ``body`` (an inline workflow of ``nodes``
  and ``edges``, compiled into the graph as nodes ``<loop id>.<body node id>`` one item level
  deeper than the loop) again and again: the body's roots get the loop's input, then the output
  of the body's single sink, until ``until`` (JMESPath) is true of that output, at most
  ``max_iterations`` times. The last output goes out on ``result``.
- ``ParkForChild``: takes no slot and runs no code here; it asks for a child run (``StartChild``
  with its input) and waits for the child's end (``ChildEnded``): the child's output goes out on
  ``result``, its failure fails the node, its cancel cancels the node (the ``subworkflow`` type).
- ``EndRun``: runs no code and takes no slot; once ready, it succeeds at once with its input on
  ``result`` and the run ends ``succeeded``: what is in flight is cancelled, the rest recorded
  ``cancelled`` (the ``end`` type).

A new node type picks one of these; a new *kind* of behaviour is a change to the core.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Literal

import attrs

if TYPE_CHECKING:
    from .model import Edge, Node

RESULT = "result"
LOOP_BODY_PORT = "body"  # the port a loop feeds its body's roots on (never in a loop's result)
MAX_ITERATIONS = 1_000_000  # the most iterations a loop may be allowed


class Kind(enum.Enum):
    RUN = "run"
    FAN_OUT = "fan_out"
    PARK_TIMER = "park_timer"
    PARK_INPUT = "park_input"
    LOOP = "loop"
    PARK_CHILD = "park_child"
    END = "end"


def _port_set(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


@attrs.frozen
class RunTask:
    ports: frozenset[str] | None = attrs.field(default=None, converter=_port_set)
    kind: ClassVar[Literal[Kind.RUN]] = Kind.RUN  # (a literal: checking it narrows a Behaviour)


@attrs.frozen
class FanOut:
    max_parallel: int | None = None
    item_port: str = "iteration"
    kind: ClassVar[Literal[Kind.FAN_OUT]] = Kind.FAN_OUT

    @property
    def ports(self) -> frozenset[str]:
        return frozenset({RESULT, self.item_port})


@attrs.frozen
class ParkForTimer:
    seconds: float
    port: str = RESULT
    kind: ClassVar[Literal[Kind.PARK_TIMER]] = Kind.PARK_TIMER

    @property
    def ports(self) -> frozenset[str]:
        return frozenset({self.port})


@attrs.frozen
class ParkForInput:
    timeout: float | None = None
    choices: tuple[str, ...] | None = None  # an answer must name one; it goes out on that port and result
    answer_port: str | None = None  # without choices, an answer also goes out here (besides result)
    prompt: str | None = None
    timeout_port: str = "timeout"
    kind: ClassVar[Literal[Kind.PARK_INPUT]] = Kind.PARK_INPUT

    @property
    def ports(self) -> frozenset[str]:
        extra = self.choices or ((self.answer_port,) if self.answer_port else ())
        return frozenset({RESULT, self.timeout_port, *extra})

    def answer_ports(self, port: str | None) -> tuple[str, ...]:
        """The ports an answer (given on ``port``, one of the choices if there are any) goes out on."""
        named = port if self.choices else self.answer_port
        return (RESULT,) if named is None else (named, RESULT)


@attrs.frozen
class Loop:
    until: str  # a JMESPath expression on the body's output (the graph compiles it)
    max_iterations: int
    nodes: tuple[Node, ...] = ()  # the body, with ids of its own (the graph names them "<loop>.<id>")
    edges: tuple[Edge, ...] = ()
    kind: ClassVar[Literal[Kind.LOOP]] = Kind.LOOP

    @property
    def ports(self) -> frozenset[str]:
        return frozenset({RESULT, LOOP_BODY_PORT})


@attrs.frozen
class ParkForChild:
    """Waits, holding no slot, for a child run the adapters start and drive (``StartChild``); its end
    comes back as ``ChildEnded``. What the child is (a workflow file, params) is the adapters' business."""
    kind: ClassVar[Literal[Kind.PARK_CHILD]] = Kind.PARK_CHILD

    @property
    def ports(self) -> frozenset[str]:
        return frozenset({RESULT})


@attrs.frozen
class EndRun:
    """Runs no code, takes no slot: once ready it succeeds with its input on ``result`` and the run ends."""
    kind: ClassVar[Literal[Kind.END]] = Kind.END

    @property
    def ports(self) -> frozenset[str]:
        return frozenset({RESULT})


Behaviour = RunTask | FanOut | ParkForTimer | ParkForInput | Loop | ParkForChild | EndRun
PARKS = frozenset({Kind.PARK_TIMER, Kind.PARK_INPUT, Kind.PARK_CHILD})  # the kinds that wait, running no attempt
