"""Events: what happened, as small immutable values fed to ``step``.

Runners, timers and people produce events; ``step`` consumes them. Each carries ``at``, the time
in seconds the runner supplies (wall clock or virtual), so the core never reads a clock. Events
name instances by node id and item path so they can be stored and replayed as plain data.

``InputProvided``, ``CancelRequested`` and ``NodeCancelRequested`` come from people: one that does
not fit the run is answered with a ``Refused`` command, never an exception.
"""
from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class RunStarted:
    at: float
    trigger: Any = None


@attrs.frozen(kw_only=True)
class NodeSucceeded:
    node: str
    item: tuple[int, ...] = ()
    attempt: int
    at: float
    ports: dict[str, Any]
    started_at: float | None = None
    logs: tuple[str, ...] = ()  # what the node logged through ctx.logger (a tuple of lines)


@attrs.frozen(kw_only=True)
class NodeFailed:
    node: str
    item: tuple[int, ...] = ()
    attempt: int
    at: float
    error_type: str
    message: str
    started_at: float | None = None
    logs: tuple[str, ...] = ()
    traceback: str | None = None  # where node code raised (its own frames); None when it did not raise


@attrs.frozen(kw_only=True)
class TimerFired:
    timer: str
    at: float


@attrs.frozen(kw_only=True)
class InputProvided:
    node: str
    item: tuple[int, ...] = ()
    at: float
    value: Any = None
    port: str | None = None


@attrs.frozen(kw_only=True)
class CancelRequested:
    """Someone asked to cancel the whole run (a queued one too: it then ends without starting)."""
    at: float
    reason: str = "cancelled by request"


@attrs.frozen(kw_only=True)
class NodeCancelRequested:
    """Someone asked to cancel the instances of ``node`` that have not ended: every one, reached or
    not (``item`` None), or the one instance at ``item``. The run goes on without them."""
    node: str
    item: tuple[int, ...] | None = None
    at: float
    reason: str = "cancelled by request"


@attrs.frozen(kw_only=True)
class CancelConfirmed:
    """A cancelled or timed-out attempt really stopped (or its runner gave up on it)."""
    node: str
    item: tuple[int, ...] = ()
    attempt: int
    at: float
    abandoned: bool = False


@attrs.frozen(kw_only=True)
class Resumed:
    """A new process took over the run: re-issue in-flight starts, timers and waits."""
    at: float


@attrs.frozen(kw_only=True)
class CapChanged:
    """The run's cap on instances in flight is ``max_parallel`` from this step on (a resume asked for
    another cap). Logged like any event, so a replay applies it at the same step."""
    at: float
    max_parallel: int


@attrs.frozen(kw_only=True)
class Draining:
    """The process driving the run is stopping: nothing new starts until a ``Resumed`` (a new driver
    took over). Running attempts go on, and their results, timers and answers are still applied."""
    at: float


EVENT_TYPES = {cls.__name__: cls for cls in (RunStarted, NodeSucceeded, NodeFailed, TimerFired,
                                             InputProvided, CancelRequested, NodeCancelRequested, CancelConfirmed,
                                             Resumed, CapChanged, Draining)}
Event = (RunStarted | NodeSucceeded | NodeFailed | TimerFired | InputProvided | CancelRequested | NodeCancelRequested
         | CancelConfirmed | Resumed | CapChanged | Draining)
