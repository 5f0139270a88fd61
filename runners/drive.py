"""The drive loop every runner shares: events in, ``step``, log the events, carry out the commands.

A ``Backend`` knows how to make a ``StartNode`` into running code and how completions come back;
the loop owns everything else: the timer service, write-ahead logging through ``on_step`` (called
with the events of a step before any of its commands is carried out), and the linger rule. The
loop makes no scheduling decision: those are ``step``'s.
"""
from __future__ import annotations

import heapq
import os
import queue
import signal
import sysconfig
import threading
import time
import traceback
from typing import Callable, Protocol

from scheduler_core import (AwaitInput, CancelChild, CancelNode, CancelRequested, CancelTimer, Draining, NodeFailed,
                            NodeSucceeded, StartChild, StartNode, StartTimer, State, TimerFired, step, validate_state)

from .collector import fewer_gc_passes

DEFAULT_LINGER = 60.0
DEFAULT_GRACE = 2.0


class RunnerUnavailable(RuntimeError):
    """A runner that cannot run here (an optional package missing) or cannot run this workflow; the
    message says why and what to do."""


class ClusterUnreachable(RuntimeError):
    """The cluster a runner was pointed at (``--dask-address``) is not an address, or did not answer;
    nothing ran. The message says which address and what went wrong."""


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


def describe(error: BaseException) -> str:
    """What an error says: its ``str()``, else its ``repr()``, else its type's name. Node code
    defines its errors, and their ``__str__`` or ``__repr__`` may raise: that must not stop the run."""
    for show in (str, repr):
        try:
            text = show(error)
        except BaseException:  # noqa: B036 - whatever describing node code's error raises, it is skipped
            continue
        if text:
            return text
    return type(error).__name__


# Set while a real Ctrl-C (SIGINT) is being delivered to a drive loop on the main thread, so that the
# KeyboardInterrupt it raises inside a node's call (serial runner) cancels the run instead of failing
# the attempt, as a KeyboardInterrupt that node code raises itself does.
_CTRL_C = threading.Event()


def _on_sigint(signum, frame):
    _CTRL_C.set()
    raise KeyboardInterrupt


# Where flowcore's own code lives (the packages beside this one), and Python's standard library:
# frames there are not the node's, so a node's traceback starts below them.
_ENGINE_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package) + os.sep
                     for package in ("scheduler_core", "runners", "adapters"))
_STDLIB_DIRS = tuple({os.path.abspath(sysconfig.get_paths()[name]) + os.sep for name in ("stdlib", "platstdlib")})
TRACEBACK_LIMIT = 20_000  # characters kept of a traceback (its end: where the error was raised)


def _is_library(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_STDLIB_DIRS) and "-packages" + os.sep not in path


def node_traceback(error: BaseException) -> str | None:
    """The traceback of an error node code raised, as Python prints it, from the node's own function
    on: the engine's frames (and the standard library's, a thread pool's, that lead to the call)
    are left out. None when no frame of it is outside flowcore: the engine raised it, not the node."""
    tb = error.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    outside = [t for t in frames if not os.path.abspath(t.tb_frame.f_code.co_filename).startswith(_ENGINE_DIRS)]
    if not outside:
        return None
    start = next((t for t in outside if not _is_library(t.tb_frame.f_code.co_filename)), outside[0])
    try:
        text = "".join(traceback.format_exception(type(error), error, start))
    except BaseException:  # noqa: B036 - node code's error may fail to print itself: the message says what it can
        return None
    if len(text) > TRACEBACK_LIMIT:
        text = "… (the start cut)\n" + text[-TRACEBACK_LIMIT:]
    return text


def ended_event(cmd: StartNode, ctx, started: float, at: float, ports=None, error: BaseException | None = None):
    """How an attempt ended, as the event the core hears (with the lines the node logged, and where
    the node's code raised its error)."""
    logs = tuple(ctx.lines) if ctx is not None else ()
    if error is not None:
        return NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=at, started_at=started, logs=logs,
                          error_type=type(error).__name__, message=describe(error), traceback=node_traceback(error))
    return NodeSucceeded(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=at, started_at=started, logs=logs,
                         ports=ports)


def attempt_event(cmd: StartNode, ctx, call: Callable[[], dict], clock: Callable[[], float]):
    """Run one attempt and describe how it ended as an event."""
    started = clock()
    try:
        ports = call()
    except BaseException as exc:  # noqa: B036 - a node's failure is data, whatever it raised (sys.exit too)
        if type(exc) is KeyboardInterrupt and _CTRL_C.is_set():
            raise  # a real Ctrl-C, not the node's doing: the drive loop cancels the run
        return ended_event(cmd, ctx, started, clock(), error=exc)
    return ended_event(cmd, ctx, started, clock(), ports=ports)


class _ctrl_c_noticed:
    """On the main thread (where SIGINT arrives), while Python's own handler is in place: note a
    real Ctrl-C before raising KeyboardInterrupt as that handler does."""

    def __enter__(self):
        _CTRL_C.clear()
        self.installed = (threading.current_thread() is threading.main_thread()
                          and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.installed:
            signal.signal(signal.SIGINT, _on_sigint)

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _CTRL_C.clear()


class Inbox(Protocol):
    """Requests from people (answers, cancels) for the run being driven, as events to feed ``step``."""

    def poll(self, now: float) -> list: ...  # events of requests not fed yet, oldest first, each at when it was asked (never after now)


POLL_SECONDS = 0.05  # how often a drive that has an inbox looks into it while it waits


class Drive:
    """One run being driven by one backend until it ends or only parked work is left.

    With an ``inbox``, the loop also looks for requests while it waits (at least every
    ``POLL_SECONDS``) and feeds them with the completions and due timers of the moment, in time
    order. ``drain()`` (from any thread) asks the drive to stop: the core hears ``Draining`` and
    starts nothing new, the loop waits for the attempts in flight (up to ``grace`` seconds) and
    returns the run unfinished, to be taken over by another process."""

    def __init__(self, backend: Backend, *, linger: float = DEFAULT_LINGER,
                 on_step: Callable | None = None, on_await: Callable | None = None,
                 inbox: Inbox | None = None, grace: float = DEFAULT_GRACE, on_child: Callable | None = None):
        self.backend = backend
        self.linger = linger
        self.on_step = on_step or (lambda events, commands, state: None)
        self.on_await = on_await or (lambda cmd: None)
        self.on_child = on_child  # StartChild and CancelChild (child runs are the adapters' business)
        self.inbox = inbox
        self.grace = grace
        self.timers = TimerService()
        self.validate = getattr(backend, "validate", False)  # backends that want every state checked
        self._drain = threading.Event()
        self._drain_until: float | None = None  # set once Draining was fed: when to give up on attempts in flight
        self.hurried = False  # a second Ctrl-C cut the grace period short: give up on what still runs
        self._next_poll = 0.0

    @property
    def drained(self) -> bool:
        """Whether the drive stopped starting work because it was asked to stop."""
        return self._drain_until is not None

    def drain(self) -> None:
        """Stop soon (thread-safe): start nothing new, let what runs finish within the grace period."""
        self._drain.set()

    def run(self, state: State, events: list) -> State:
        """Feed ``events``, then keep stepping until the run ends or is waiting."""
        with fewer_gc_passes(), _ctrl_c_noticed():
            return self._run(state, events)

    def _run(self, state: State, events: list) -> State:
        while True:
            state, commands = step(state, events)
            if self.validate:
                validate_state(state)
            self.on_step(events, commands, state)  # write-ahead: logged before anything is done
            self.execute(commands)
            if state.finished:
                return self.late_results(state)
            try:
                events = self.next_events()
            except KeyboardInterrupt:  # a real Ctrl-C (node code's own is a failed attempt) cancels the run cleanly instead of leaving it half-done
                events = [CancelRequested(at=self.backend.now(), reason="interrupted by the user (Ctrl-C)")]
            if not events:
                return state  # waiting: parked instances, or timers beyond the linger time

    def late_results(self, state: State) -> State:
        """After the run ended: wait up to the grace period for the attempts it cancelled, and step and
        log the results that still come (the core keeps them in their instances' histories and changes
        nothing else: a side effect that happened is never hidden). What has not ended by then is the
        backend's ``close`` to give up on; a second Ctrl-C meanwhile gives up at once (``hurried``)."""
        deadline = time.monotonic() + self.grace
        try:
            while self.backend.in_flight() and (left := deadline - time.monotonic()) > 0:
                results = [e for e in self.backend.wait(min(left, POLL_SECONDS))
                           if type(e) in (NodeSucceeded, NodeFailed)]
                if results:
                    state, commands = step(state, results)
                    if self.validate:
                        validate_state(state)
                    self.on_step(results, commands, state)
        except KeyboardInterrupt:  # Ctrl-C again while the run's cancelled attempts wind down: stop waiting
            self.hurried = True
        return state

    def execute(self, commands) -> None:
        cancel_many = getattr(self.backend, "cancel_many", None)
        if cancel_many is not None:  # a backend that cancels many attempts at once (asyncio: one wake-up of its loop)
            cancels = [c for c in commands if type(c) is CancelNode]
            if len(cancels) > 1:
                cancel_many(cancels)
                commands = [c for c in commands if type(c) is not CancelNode]
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
            elif kind is StartChild or kind is CancelChild:
                if self.on_child is None:
                    raise RuntimeError(f"{c.node}: this drive cannot run child runs (subworkflow nodes)")
                self.on_child(c)

    def next_events(self) -> list:
        """Completions, due timers and requests, in time order; ``[]`` when the run should stop and wait."""
        while True:
            now = self.backend.now()
            if self._drain.is_set():
                if self._drain_until is None:
                    self._drain_until = now + self.grace
                    return [Draining(at=now)]
                if self.backend.in_flight() == 0 or now >= self._drain_until:
                    return self.backend.wait(0)  # what has ended is recorded; the rest is another driver's
                completions = self.backend.wait(min(POLL_SECONDS, self._drain_until - now))
                if completions:
                    return completions
                continue
            due = self.timers.next_due()
            if self.backend.in_flight() == 0:
                if due is None or due - now > self.linger:
                    return self.backend.wait(0) + self._requests(now, force=True)  # else stop: waiting
                completions = self.backend.wait(self._bounded(max(0.0, due - now)))
            else:
                completions = self.backend.wait(self._bounded(None if due is None else max(0.0, due - now)))
            now = self.backend.now()
            # requests are read after the due timers are taken (at once when one fired): one asked
            # before a timer fell due is among them, and the sort puts it first
            fired = self.timers.pop_due(now)
            events = fired + completions + self._requests(now, force=bool(fired))
            if events:
                events.sort(key=lambda e: e.at)
                return events

    def _bounded(self, timeout: float | None) -> float | None:
        """A wait's timeout, short enough to look into the inbox in time."""
        if self.inbox is None:
            return timeout
        return POLL_SECONDS if timeout is None else min(timeout, POLL_SECONDS)

    def _requests(self, now: float, force: bool = False) -> list:
        if self.inbox is None or (not force and now < self._next_poll):
            return []
        self._next_poll = now + POLL_SECONDS
        return self.inbox.poll(now)
