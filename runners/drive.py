"""The drive loop every runner shares: events in, ``step``, log the events, carry out the commands.

A ``Backend`` knows how to make a ``StartNode`` into running code and how completions come back;
the loop owns everything else: the timer service, write-ahead logging through ``on_step`` (called
with the events of a step before any of its commands is carried out), and the linger rule. The
loop makes no scheduling decision: those are ``step``'s.
"""
from __future__ import annotations

import heapq
import queue
from typing import Callable, Protocol

from scheduler_core import (AwaitInput, CancelNode, CancelRequested, CancelTimer, NodeFailed, NodeSucceeded, StartNode, StartTimer,
                            State, TimerFired, step, validate_state)

from .collector import fewer_gc_passes

DEFAULT_LINGER = 60.0
DEFAULT_GRACE = 2.0


class Backend(Protocol):
    """How one runner executes node instances."""

    def now(self) -> float: ...
    def start(self, cmd: StartNode) -> None: ...
    def cancel(self, cmd: CancelNode) -> None: ...
    def in_flight(self) -> int: ...
    def wait(self, timeout: float | None) -> list: ...  # completions so far; blocks up to timeout for one
    def close(self, grace: float) -> int: ...  # returns the number of abandoned attempts


class TimerService:
    """Timers the core asked for; cancelled ones are dropped lazily."""

    def __init__(self):
        self._heap: list = []
        self._live: dict = {}

    def add(self, timer: str, due: float) -> None:
        self._live[timer] = due
        heapq.heappush(self._heap, (due, timer))

    def cancel(self, timer: str) -> None:
        self._live.pop(timer, None)

    def next_due(self) -> float | None:
        while self._heap and self._live.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list:
        fired = []
        while (due := self.next_due()) is not None and due <= now:
            _, timer = heapq.heappop(self._heap)
            del self._live[timer]
            fired.append(TimerFired(timer=timer, at=due))
        return fired


def drain(results: queue.SimpleQueue, timeout: float | None, winding_down: bool = False) -> list:
    """Every event reported so far, after waiting up to ``timeout`` (None: until one comes) for the
    first. While cancelled attempts wind down, wake at least every 50 ms to notice overdue ones."""
    if winding_down:
        timeout = 0.05 if timeout is None else min(timeout, 0.05)
    out = []
    try:
        out.append(results.get(timeout=timeout) if timeout != 0 else results.get_nowait())
    except queue.Empty:
        return out
    while True:
        try:
            out.append(results.get_nowait())
        except queue.Empty:
            return out


def ended_event(cmd: StartNode, ctx, started: float, at: float, ports=None, error: BaseException | None = None):
    """How an attempt ended, as the event the core hears (with the lines the node logged)."""
    logs = tuple(ctx.lines) if ctx is not None else ()
    if error is not None:
        return NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=at, started_at=started, logs=logs,
                          error_type=type(error).__name__, message=str(error) or repr(error))
    return NodeSucceeded(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=at, started_at=started, logs=logs,
                         ports=ports)


def attempt_event(cmd: StartNode, ctx, call: Callable[[], dict], clock: Callable[[], float]):
    """Run one attempt and describe how it ended as an event."""
    started = clock()
    try:
        ports = call()
    except Exception as exc:  # a node's failure is data, reported to the core
        return ended_event(cmd, ctx, started, clock(), error=exc)
    return ended_event(cmd, ctx, started, clock(), ports=ports)


class Drive:
    """One run being driven by one backend until it ends or only parked work is left."""

    def __init__(self, backend: Backend, *, linger: float = DEFAULT_LINGER,
                 on_step: Callable | None = None, on_await: Callable | None = None):
        self.backend = backend
        self.linger = linger
        self.on_step = on_step or (lambda events, commands, state: None)
        self.on_await = on_await or (lambda cmd: None)
        self.timers = TimerService()
        self.validate = getattr(backend, "validate", False)  # backends that want every state checked

    def run(self, state: State, events: list) -> State:
        """Feed ``events``, then keep stepping until the run ends or is waiting."""
        with fewer_gc_passes():
            return self._run(state, events)

    def _run(self, state: State, events: list) -> State:
        while True:
            state, commands = step(state, events)
            if self.validate:
                validate_state(state)
            self.on_step(events, commands, state)  # write-ahead: logged before anything is done
            self.execute(commands)
            if state.finished:
                return state
            try:
                events = self.next_events()
            except KeyboardInterrupt:  # Ctrl-C cancels the run cleanly instead of leaving it half-done
                events = [CancelRequested(at=self.backend.now(), reason="interrupted by the user (Ctrl-C)")]
            if not events:
                return state  # waiting: parked instances, or timers beyond the linger time

    def execute(self, commands) -> None:
        for c in commands:
            kind = type(c)
            if kind is StartNode:
                self.backend.start(c)
            elif kind is CancelNode:
                self.backend.cancel(c)
            elif kind is StartTimer:
                self.timers.add(c.timer, c.due)
            elif kind is CancelTimer:
                self.timers.cancel(c.timer)
            elif kind is AwaitInput:
                self.on_await(c)

    def next_events(self) -> list:
        """Completions and due timers, in time order; ``[]`` when the run should stop and wait."""
        while True:
            now = self.backend.now()
            due = self.timers.next_due()
            if self.backend.in_flight() == 0:
                if due is None or due - now > self.linger:
                    return self.backend.wait(0)  # anything already reported, else stop
                completions = self.backend.wait(max(0.0, due - now))
            else:
                completions = self.backend.wait(None if due is None else max(0.0, due - now))
            events = self.timers.pop_due(self.backend.now()) + completions
            if events:
                events.sort(key=lambda e: e.at)
                return events
