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
- ``EndRun``: runs no code and takes no slot; once ready, it succeeds at once with its input on
  ``result`` and the run ends ``succeeded``: what is in flight is cancelled, the rest recorded
  ``cancelled`` (the ``end`` type).

A new node type picks one of these; a new *kind* of behaviour is a change to the core.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import ClassVar, Literal

import attrs

RESULT = "result"


class Kind(enum.Enum):
    RUN = "run"
    FAN_OUT = "fan_out"
    PARK_TIMER = "park_timer"
    PARK_INPUT = "park_input"
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
class EndRun:
    kind: ClassVar[Literal[Kind.END]] = Kind.END

    @property
    def ports(self) -> frozenset[str]:
        return frozenset({RESULT})


Behaviour = RunTask | FanOut | ParkForTimer | ParkForInput | EndRun
PARKS = frozenset({Kind.PARK_TIMER, Kind.PARK_INPUT})
