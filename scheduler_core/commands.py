"""Commands: what ``step`` asks the runner to do, as small immutable values.

Within one step, commands come in the order the core decided them while it processed the events
in order (cancellations, timers and waits as they arise), then the starts it chose once all events
were applied (highest priority first; a start with a timeout is preceded by its own ``StartTimer``),
then ``RunFinished`` if the run ended. Where the core walks a collection (a resume, a fail-fast),
it goes by instance key or by due time, never by a map's hash order. The order is part of the
contract: replaying the same events gives the same commands.
"""
from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class StartNode:
    node: str
    item: tuple
    attempt: int
    type: str
    input: Any  # the resolved input: trigger, the one delivered value, or a list in edge order
    values: tuple  # every delivered value in edge declaration order
    inputs: dict  # delivered values keyed by source node id
    deadline: float | None = None
    redispatch: bool = False  # re-issued after the process that ran it died


@attrs.frozen(kw_only=True)
class CancelNode:
    node: str
    item: tuple
    attempt: int
    reason: str


@attrs.frozen(kw_only=True)
class StartTimer:
    timer: str
    due: float


@attrs.frozen(kw_only=True)
class CancelTimer:
    timer: str


@attrs.frozen(kw_only=True)
class AwaitInput:
    node: str
    item: tuple
    type: str
    prompt: str | None = None
    choices: tuple | None = None


@attrs.frozen(kw_only=True)
class RunFinished:
    status: str  # succeeded, failed or cancelled
    error: dict | None = None
