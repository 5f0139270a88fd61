"""Commands: what ``step`` asks the runner to do, as small immutable values.

Within one step, commands come in the order the core decided them while it processed the events
in order (cancellations, timers and waits as they arise), then the starts it chose once all events
were applied (highest priority first; a start with a timeout is preceded by its own ``StartTimer``),
then ``RunFinished`` if the run ended. A ``Refused`` comes where its event was applied, after what
the event did (an overdue wait timeout fired on its behalf). Where the core walks a collection (a resume, a fail-fast),
it goes by instance key or by due time, never by a map's hash order. The order is part of the
contract: replaying the same events gives the same commands.
"""
from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class StartNode:
    """Run one attempt of a task instance. Its input is one value, ``arrivals``: what each input
    edge delivered, in edge declaration order (for a root, the trigger, from no node). The other
    views a node may want (``input``, ``values``, ``inputs``) are derived from it."""

    node: str
    item: tuple[int, ...]
    attempt: int
    type: str
    arrivals: tuple[tuple[str | None, Any], ...]  # (source node id or None, value) pairs
    deadline: float | None = None
    redispatch: bool = False  # re-issued after the process that ran it died
    stimulus: str | None = attrs.field(default=None, eq=False)  # the id of the event that led to it

    @property
    def input(self) -> Any:
        """The trigger, the one delivered value, or a list of the delivered values in edge order."""
        if len(self.arrivals) == 1:
            return self.arrivals[0][1]
        return [value for _, value in self.arrivals]

    @property
    def values(self) -> tuple[Any, ...]:
        """Every delivered value, in edge declaration order."""
        return tuple(value for _, value in self.arrivals)

    @property
    def inputs(self) -> dict[str, Any]:
        """Delivered values by source node id (a list where one node delivered several)."""
        by_source: dict[str, list[Any]] = {}
        for source, value in self.arrivals:
            if source is not None:
                by_source.setdefault(source, []).append(value)
        return {name: vs[0] if len(vs) == 1 else vs for name, vs in by_source.items()}


@attrs.frozen(kw_only=True)
class CancelNode:
    node: str
    item: tuple[int, ...]
    attempt: int
    reason: str
    stimulus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class StartTimer:
    timer: str
    due: float
    stimulus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class CancelTimer:
    timer: str
    stimulus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class AwaitInput:
    node: str
    item: tuple[int, ...]
    type: str
    prompt: str | None = None
    choices: tuple[str, ...] | None = None
    stimulus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class StartChild:
    """A ``ParkForChild`` instance waits for its child run: start it (or, after a ``Resumed``, find the
    one started before and carry it on), and report its end as ``ChildEnded``. ``arrivals`` as for
    ``StartNode``."""
    node: str
    item: tuple[int, ...]
    type: str
    arrivals: tuple[tuple[str | None, Any], ...]
    stimulus: str | None = attrs.field(default=None, eq=False)

    @property
    def input(self) -> Any:
        """The trigger, the one delivered value, or a list of the delivered values in edge order."""
        if len(self.arrivals) == 1:
            return self.arrivals[0][1]
        return [value for _, value in self.arrivals]


@attrs.frozen(kw_only=True)
class CancelChild:
    """The instance no longer waits for its child run (the run ended, or a node cancel named it):
    cancel the child run, for ``reason``."""
    node: str
    item: tuple[int, ...]
    reason: str
    stimulus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class RunFinished:
    status: str  # succeeded, failed or cancelled
    error: Any = None  # an Error, or None
    stimulus: str | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class Refused:
    """An event from a person (an answer, a cancel) was not applied, for ``reason`` (what the person
    reads); it changed no record (but for the overdue wait timeout a late answer fires first).
    ``stimulus`` is the refused event's id (``"<step>.<i>"``), by which the driver finds the request
    it fed."""

    reason: str
    stimulus: str


Command = (StartNode | CancelNode | StartTimer | CancelTimer | AwaitInput | RunFinished | Refused | StartChild
           | CancelChild)
