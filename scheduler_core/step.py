"""step(state, events) -> (state, commands): every scheduling decision flowcore makes.

Theory of operation
-------------------
A run is a set of node *instances*, keyed by ``(node index, item path)``. The item path is ``()``
outside any fan-out and grows by one index per fan-out an instance runs inside of.

Edges *resolve*: when an instance ends, each of its outgoing edges either delivers a value (its
port is in the result) or is *dead* (the port is absent, or the instance failed or was skipped).
An instance becomes ready when every incoming edge has resolved; it runs if at least one
delivered and is skipped otherwise, and a skip resolves its own edges as dead, so skips spread
until they reach a join that something else feeds. Edges come in four kinds, fixed at compile
time: *plain* (same path), *iteration* (a fan-out's items: one resolution per item, path + (i,)),
*map* (per item, path unchanged) and *gather* (out of a per-item node: collected per fan-out and
delivered once, as a list in item order, when every item has resolved). A fan-out that never
expands (an empty list, a skipped or failed fan-out node) resolves its per-item nodes at the
fan-out's own path, which is the one "unexpanded" record those nodes keep; a gather out of a
fan-out that expanded to an empty list delivers ``[]`` (one that never expanded stays dead).

What the core does with a node is its ``behaviour`` (see ``behaviour.py``), never its type: a
``RunTask`` or ``FanOut`` is started on a runner; ``ParkForTimer``, ``ParkForInput`` and
``ParkForChild`` nodes never take a slot: they park, asking for a timer, for input or for a child
run (``StartChild``), whose end comes back as ``ChildEnded``: the child's output, its failure (the
instance fails from ``waiting``) or its cancel (the instance is cancelled, as by a node cancel).
An instance that stops waiting for its child (a node cancel, the run's end) asks for the child to
be cancelled (``CancelChild``); a ``Resumed`` asks again for every child still waited for. A
``ParkForChild`` node with a ``timeout`` gets a timer when it parks: a child still running when it
fires is cancelled, and the instance fails with a ``timeout`` (from ``waiting``).

Every change of an instance's status goes through ``_Transition.move``, which checks it against
the lifecycle table (``lifecycle.LIFECYCLE``). Each event of a step has an id, ``"<step>.<i>"``
(the step's index in the run's log, the event's position in its batch): the records an event
moves and the commands it causes carry it as ``stimulus``; starts chosen once all of a step's
events are applied carry the step's own id, ``"<step>"``.

Ready task instances wait in persistent heaps, one per ready *queue*, ordered by priority:
longest remaining path to a sink first, then declaration order, then item path, where an instance
inside a fan-out ranks as its outermost foreach and then by item before stage (``Graph.ready_entry``:
under a cap, a per-item chain completes item after item). A queue is a
``(pool, group)``: one per pool for most nodes, and one per item of a capped fan-out for the nodes
that run per its items. After all events of a step are applied, free slots are filled from the
queue with the best head among those whose caps have room, so ``max_parallel``, pools and a
fan-out's ``max_parallel`` hold by construction. The per-pool queues are few (the workflow
declares the pools) and are looked at directly; the per-item queues can be many, so each pool
keeps a heap of *candidates*, ``(head, queue)`` for per-item queues whose group has room, kept
up to date as heads and room change and cleaned lazily: finding the best queue costs O(log n),
never a scan of the queues.

Time arrives in events. Timeouts, retry backoff, delays and wait timeouts are timers the core
asks for with ``StartTimer`` and hears back about as ``TimerFired``. A timed-out attempt is told
to stop, and its retry waits until the runner confirms it stopped: two attempts of one instance
are never in flight. A record keeps its earlier attempts in its ``history``. A result of an attempt
that is no longer current (it was cancelled or timed out) changes nothing but that history: it is
kept there, marked late, also after the run ended (``late_result``).

Under fail-fast the first final failure ends the run: every in-flight instance is cancelled and
every instance that had not ended is recorded ``cancelled``. Under ``continue`` a failure
resolves the instance's edges as dead and the run fails once nothing is left to do.

People cancel and answer. A cancel of the whole run ends it as fail-fast does (a run not started
yet too). A node cancel (``NodeCancelRequested``) ends the open instances it names ``cancelled``
at once (stopping, unparking or dequeuing them) and keeps the request for those not reached yet,
which are cancelled instead of becoming ready or skipped; a cancelled instance resolves its edges
as dead, like a skip, and is no failure. An answer after its wait's timeout was due loses: the
timer fires first, at its own time. What people ask that does not fit the run is answered with a
``Refused`` command, never an exception (``InvalidEvent`` is for a runner's bug). While the driver
drains (``Draining`` until ``Resumed``), nothing starts.

A ``Loop`` node parks too (status ``waiting``, no slot) while its body runs. Its body's nodes are
ordinary nodes of the graph one item level deeper (``graph.py``): iteration ``i`` of the loop at
``path`` is the body's instances at ``path + (i,)``, and ``scopes[(loop, path)]`` counts the
iterations started, as it counts a foreach's items, so item paths, cancels and the end of a run
treat the iterations as items. An iteration starts by resolving the loop's entry edges with its
input; it ends when the body's sink resolves its exit edge back to the loop: ``until`` on the
sink's output decides whether the loop succeeds with it, fails (``loop_limit``) or starts the
next iteration with it. A body instance's final failure fails its loop instead of the run; a loop
that ends (cancelled, failed) cancels what is still open of its current iteration.

Every handler touches only the instances the event concerns and their neighbours: a step costs
O(what changed). The given state is never modified; the new one shares all untouched structure.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import attrs
from immutables import Map
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

from . import heap
from .behaviour import RESULT, Kind, Loop, ParkForChild, ParkForInput, ParkForTimer
from .commands import (AwaitInput, CancelChild, CancelNode, CancelTimer, Command, Refused, RunFinished, StartChild,
                       StartNode, StartTimer)
from .events import (CancelConfirmed, CancelRequested, CapChanged, ChildEnded, Draining, InputProvided,
                     NodeCancelRequested, NodeFailed, NodeSucceeded, Event, Resumed, RunStarted, TimerFired)
from .graph import FAN_OUT, GATHER, LOOP_ENTRY, LOOP_EXIT, CompiledEdge, Graph
from .lifecycle import LIFECYCLE, OPEN, RUN_ENDED, Move, RunStatus, Status, next_status
from .state import (Attempt, Delivered, Error, Group, Key, Path, Payload, Queue, ReadyEntry, Record, State, Timer,
                    attempts_of, entry_key, instance_name)

Records: TypeAlias = "Map[Key, Record] | MapMutation[Key, Record]"
Scopes: TypeAlias = "Map[Key, int] | MapMutation[Key, int]"

if TYPE_CHECKING:
    from immutables import MapMutation

    from .behaviour import Behaviour

K = TypeVar("K")
V = TypeVar("V")
Work: TypeAlias = tuple[CompiledEdge, Path, Any]  # an edge to resolve: (edge, item path, value or DEAD)
Trace: TypeAlias = list[tuple[Key, Status, Move, Status, str | None]]

DEAD = object()  # an edge that resolved without a value

# The moves and kinds as module constants: reading an enum member through its class costs about
# ten times a global read, and a step reads them per instance.
START, PARK, SUCCEED, FAIL, RETRY_LATER, RETRY_DUE, SKIP, CANCEL, RESTART = (
    Move.START, Move.PARK, Move.SUCCEED, Move.FAIL, Move.RETRY_LATER, Move.RETRY_DUE, Move.SKIP, Move.CANCEL,
    Move.RESTART)
# (Final: their literal types narrow a Behaviour, as Kind.FAN_OUT would.)
FANS_OUT: Final = Kind.FAN_OUT
PARKS_FOR_TIMER: Final = Kind.PARK_TIMER
PARKS_FOR_INPUT: Final = Kind.PARK_INPUT
LOOPS: Final = Kind.LOOP
PARKS_FOR_CHILD: Final = Kind.PARK_CHILD
ENDS: Final = Kind.END
RUNNING, PENDING, WAITING = RunStatus.RUNNING, Status.PENDING, Status.WAITING


class TimerKind:
    """What a timer is for (a timer's id is ``"<kind>:<n>"``)."""

    TIMEOUT = "timeout"  # an attempt's time is up
    RETRY = "retry"  # the delay before the next attempt is over
    DELAY = "delay"  # a ParkForTimer node's time is up
    WAIT_TIMEOUT = "wait_timeout"  # a ParkForInput node waited long enough
    CHILD_TIMEOUT = "child_timeout"  # a ParkForChild node's child run took longer than the node's timeout


class InvalidEvent(ValueError):
    """An event from a runner that does not fit the run (a result for an unknown node, a second
    ``RunStarted``...): a bug of whoever fed it. Events from people are refused instead (``Refused``)."""


@attrs.frozen
class SelectFailed:
    """An edge's ``select`` expression raised; the instance it feeds fails instead of starting."""
    message: str


def step(state: State, events: Iterable[Event], trace: Trace | None = None) -> tuple[State, tuple[Command, ...]]:
    """Apply ``events`` in order, then start what the caps allow. Pure: ``state`` is not changed.

    ``trace``, if given, gets one ``(key, old status, move, new status, stimulus)`` per instance
    transition the step made (to tell an instance's story; the step's result is the same without)."""
    tx = _Transition(state, trace)
    for i, event in enumerate(events):
        tx.apply(event, f"{state.steps}.{i}")
    tx.stimulus = str(state.steps)
    tx.fill_slots()
    tx.finish_if_done()
    return tx.result()


def input_problem(state: State, node: str, item: Iterable[int] | None = (), port: str | None = None) -> str | None:
    """Why ``InputProvided(node, item, port)`` would be refused, or None if it would be accepted."""
    problem = _input_problem(state.graph, state.awaiting, state.finished, node, tuple(item or ()), port)
    n = state.graph.index.get(node)
    if problem and n is not None and problem.endswith("is not waiting for input"):
        waiting = sorted(path for m, path in state.awaiting.keys() if m == n)
        if waiting:  # the node waits, per item: say which items do
            names = ", ".join(",".join(map(str, path)) or "(none)" for path in waiting[:10])
            problem += f"; its waiting items are {names}{' ...' if len(waiting) > 10 else ''} (use --item)"
    return problem


def _input_problem(g: Graph, awaiting: Map[Key, bool] | MapMutation[Key, bool], finished: bool, node: str, item: Path,
                   port: str | None) -> str | None:
    if finished:
        return "the run has already finished"
    n = g.index.get(node)
    if n is None:
        return f"there is no node {node!r} in this workflow"
    if awaiting.get((n, item)) is None:
        return f"node {instance_name(node, item)} is not waiting for input"
    b = g.nodes[n].behaviour
    if TYPE_CHECKING:
        assert isinstance(b, ParkForInput)  # it awaits input
    choices = b.choices or ()
    if choices and port not in choices:
        given = f"got {port!r}" if port is not None else "none was given"
        return f"node {node!r} needs one of the choices {', '.join(choices)} ({given})"
    if not choices and port is not None:
        return f"node {node!r} offers no choices; answer it without a port"
    return None


def cancel_problem(state: State, node: str, item: Iterable[int] | None = None) -> str | None:
    """Why ``NodeCancelRequested(node, item)`` would be refused, or None if it would be accepted."""
    if state.finished:
        return "the run has already finished"
    found = _cancel_targets(state.graph, state.records, state.scopes, node, None if item is None else tuple(item))
    return found if isinstance(found, str) else None


def _cancel_targets(g: Graph, records: Records, scopes: Scopes, node: str, item: Path | None) -> list[Key] | str:
    """The instances a cancel of ``node`` (every instance, or the one at ``item``) concerns: those
    that have not ended, reached or not yet; or why there are none."""
    n = g.index.get(node)
    if n is None:
        return f"there is no node {node!r} in this workflow"
    if item is not None:
        record = records.get((n, item))
        if record is None and not _will_have(g, scopes, n, item):
            return f"there is no instance {instance_name(node, item)} in this run (yet)"
        if record is not None and record.status not in OPEN:
            return f"nothing left to cancel: {instance_name(node, item)} has already ended ({record.status})"
        return [(n, item)]
    found = []
    for path in _paths_of(g, scopes, n):
        record = records.get((n, path))
        if record is None or record.status in OPEN:
            found.append((n, path))
    return found or f"nothing left to cancel: every instance of node {node!r} has already ended"


def _paths_of(g: Graph, scopes: Scopes, n: int) -> list[Path]:
    """Every item path node ``n`` has in the run so far, in item order: one per item of each
    fan-out it runs inside of, or the fan-out's own path where that has not expanded (yet)."""
    if g.depth[n] == 0:
        return [()]
    o = g.origin[n]
    paths: list[Path] = []
    for path in _paths_of(g, scopes, o):
        size = scopes.get((o, path))
        paths.extend([path + (i,) for i in range(size)] if size else [path])
    return paths


def _paths_within(g: Graph, scopes: Scopes, n: int, prefix: Path) -> list[Path]:
    """The item paths node ``n`` has so far that start with ``prefix`` (a loop iteration's path, no
    deeper than ``n``): as ``_paths_of``, from ``prefix`` down."""
    if g.depth[n] <= len(prefix):
        return [prefix[:g.depth[n]]]
    o = g.origin[n]
    paths: list[Path] = []
    for path in _paths_within(g, scopes, o, prefix):
        size = scopes.get((o, path))
        paths.extend([path + (i,) for i in range(size)] if size else [path])
    return paths


def _length(got: Delivered) -> int:
    """How many values a cons list of delivered values holds."""
    count = 0
    while got is not None:
        count += 1
        got = got[1]
    return count


def _will_have(g: Graph, scopes: Scopes, n: int, path: Path) -> bool:
    """Whether the run has (or will have, once reached) instance ``(n, path)`` of an expanded path:
    one index per fan-out ``n`` runs inside of, each within the items that fan-out expanded to."""
    while g.depth[n]:
        o = g.origin[n]
        size = scopes.get((o, path[:-1])) if len(path) == g.depth[n] else None
        if not size or not 0 <= path[-1] < size:
            return False
        n, path = o, path[:-1]
    return path == ()


class _Transition:
    """One step in the making: mutable views of the state's maps, and the commands so far."""

    def __init__(self, state: State, trace: Trace | None):
        self.state = state
        self.g = state.graph
        self.trace = trace
        self.stimulus: str | None = None
        self.commands: list[Command] = []
        self.ended = False
        # scalars
        self.status = state.status
        self.trigger = state.trigger
        self.started_at = state.started_at
        self.finished_at = state.finished_at
        self.error = state.error
        self.first_failure = state.first_failure
        self.now: float = state.now  # type: ignore[assignment]  # None only until the first event sets it
        self.seq = state.seq
        self.timer_seq = state.timer_seq
        self.ready_count = state.ready_count
        self.running_count = state.running_count
        self.max_parallel = state.max_parallel
        self.draining = state.draining
        # persistent maps, opened for mutation (O(1) to open and to finish)
        self.records = state.records.mutate()
        self.arrivals = state.arrivals.mutate()
        self.gathers = state.gathers.mutate()
        self.scopes = state.scopes.mutate()
        self.payloads = state.payloads.mutate()
        self.ready = state.ready.mutate()
        self.running = state.running.mutate()
        self.pool_running = state.pool_running.mutate()
        self.group_running = state.group_running.mutate()
        self.timers = state.timers.mutate()
        self.instance_timer = state.instance_timer.mutate()
        self.awaiting = state.awaiting.mutate()
        self.stopping = state.stopping.mutate()
        self.held = state.held.mutate()
        self.cancel_requests = state.cancel_requests.mutate()
        self.children = state.children.mutate()
        self.joined = state.joined.mutate()
        self.cancel_regions = state.cancel_regions.mutate()
        # one candidate heap per pool in use: a handful at most (the workflow declares its pools)
        self.candidates = dict(state.candidates.items()) if state.candidates else {}

    def result(self) -> tuple[State, tuple[Command, ...]]:
        if self.ended:
            self.commands.append(RunFinished(status=self.status, error=self.error, stimulus=self.stimulus))
        new = State(
            graph=self.g, status=self.status, trigger=self.trigger, started_at=self.started_at,
            finished_at=self.finished_at, error=self.error, first_failure=self.first_failure, now=self.now,
            steps=self.state.steps + 1, seq=self.seq, timer_seq=self.timer_seq,
            records=self.records.finish(), arrivals=self.arrivals.finish(), gathers=self.gathers.finish(),
            scopes=self.scopes.finish(), payloads=self.payloads.finish(), ready=self.ready.finish(),
            ready_count=self.ready_count, candidates=Map(self.candidates) if self.candidates else _NO_CANDIDATES,
            running=self.running.finish(),
            running_count=self.running_count, pool_running=self.pool_running.finish(),
            group_running=self.group_running.finish(), timers=self.timers.finish(),
            instance_timer=self.instance_timer.finish(), awaiting=self.awaiting.finish(),
            stopping=self.stopping.finish(), held=self.held.finish(), max_parallel=self.max_parallel,
            cancel_requests=self.cancel_requests.finish(), draining=self.draining,
            children=self.children.finish(),
            joined=self.joined.finish(), cancel_regions=self.cancel_regions.finish(),
        )
        return new, tuple(self.commands)

    @staticmethod
    def frozen(mutation: MapMutation[K, V]) -> tuple[Map[K, V], MapMutation[K, V]]:
        """Freeze a map to iterate it (rare: ends of runs and resumes); returns it and a new mutation."""
        frozen = mutation.finish()
        return frozen, frozen.mutate()

    # -- the lifecycle ------------------------------------------------------------------------

    def move(self, key: Key, move: Move, **changes: Any) -> Record:
        """Move an instance through the lifecycle table (``IllegalTransition`` for a move it lacks),
        recording ``changes`` with its new status."""
        old = self.records.get(key)
        if old is None:
            old = _fresh(self.g.ids[key[0]], key[1])
        status = LIFECYCLE.get((old.status, move))
        if status is None:  # the table's own refusal (IllegalTransition); looked up inline on the hot path
            status = next_status(old.status, move, f"{instance_name(old.node, old.item)} (event {self.stimulus})")
        new = _moved(old, status, self.stimulus, changes)
        self.records[key] = new
        if self.trace is not None:
            self.trace.append((key, old.status, move, status, self.stimulus))
        return new

    # -- events -------------------------------------------------------------------------------

    def apply(self, event: Event, stimulus: str) -> None:
        self.now = event.at
        self.stimulus = stimulus
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise InvalidEvent(f"unknown event {event!r}")
        if self.status in RUN_ENDED and type(event) is not RunStarted:
            if type(event) in _FROM_PEOPLE:
                self.refuse("the run has already finished")
            elif type(event) is NodeSucceeded or type(event) is NodeFailed:
                self.late_result(self.key_of(event), event)  # kept in its history, nothing else changes
            return  # timers and confirmations after the end change nothing
        handler(self, event)

    def refuse(self, reason: str) -> None:
        """The event being applied (from a person) is not applied, for ``reason``."""
        stimulus = self.stimulus
        if TYPE_CHECKING:
            assert stimulus is not None  # set by apply
        self.commands.append(Refused(reason=reason, stimulus=stimulus))

    def key_of(self, event: NodeSucceeded | NodeFailed | InputProvided | CancelConfirmed) -> Key:
        n = self.g.index.get(event.node)
        if n is None:
            raise InvalidEvent(f"event for unknown node {event.node!r}")
        return (n, tuple(event.item))

    def on_run_started(self, ev: RunStarted) -> None:
        if self.status != RunStatus.PENDING:
            raise InvalidEvent(f"the run has already {'ended' if self.status in RUN_ENDED else 'started'}")
        self.status, self.started_at, self.trigger = RunStatus.RUNNING, ev.at, ev.trigger
        for root in self.g.roots:
            if self.ended:
                return  # an end node among the roots ended the run
            key = (root, ())
            reason = self.cancel_asked(key) if self.cancel_requests or self.cancel_regions else None
            if reason is None:
                self.make_ready(key, ((None, ev.trigger),))
            else:
                self.resolve(self.cancel_by_request(key, reason))

    def on_node_succeeded(self, ev: NodeSucceeded) -> None:
        key = self.key_of(ev)
        if not self.is_current(key, ev.attempt):
            self.late_result(key, ev)
            return
        self.release(key)
        self.clear_timer(key)
        self.succeed(key, ev.ports, ev)

    def on_node_failed(self, ev: NodeFailed) -> None:
        key = self.key_of(ev)
        if not self.is_current(key, ev.attempt):
            self.late_result(key, ev)
            return
        self.release(key)
        self.clear_timer(key)
        self.note_attempt(key, ev)
        self.attempt_failed(key, Error(ev.error_type, ev.message, None, ev.traceback))

    def late_result(self, key: Key, ev: NodeSucceeded | NodeFailed) -> None:
        """The result of an attempt that is no longer current (cancelled, timed out): its record
        keeps it in its history, marked late, with the lines it logged; its status stays, and nothing
        routes or starts. Any other result is dropped: of an attempt the record never had, of one whose
        result was heard already (a runner may deliver one twice)."""
        record = self.records.get(key)
        if record is None or not _unheard(record, ev.attempt):
            return
        if isinstance(ev, NodeFailed):
            error = Error(ev.error_type, ev.message, None, ev.traceback)
            late = Attempt(ev.attempt, Status.FAILED, ev.started_at, ev.at, error, None, True)
        else:
            late = Attempt(ev.attempt, Status.SUCCEEDED, ev.started_at, ev.at, None, ev.ports, True)
        self.records[key] = record._replace(history=record.history + (late,), logs=record.logs + ev.logs)

    def note_attempt(self, key: Key, ev: NodeSucceeded | NodeFailed) -> None:
        """Keep what the runner observed of an ended attempt: its real start and its log lines."""
        if ev.started_at is not None or ev.logs:
            record = self.records[key]
            self.records[key] = record._replace(**_observed(record, ev))

    def on_timer_fired(self, ev: TimerFired) -> None:
        timer = self.timers.get(ev.timer)
        if timer is None:
            return  # cancelled meanwhile, or fired twice
        self.timers.pop(ev.timer)
        if self.instance_timer.get(timer.key) == ev.timer:
            self.instance_timer.pop(timer.key)
        _TIMER_HANDLERS[timer.kind](self, timer)

    def on_timeout(self, timer: Timer) -> None:
        key = timer.key
        if not self.is_current(key, timer.attempt):
            return
        self.release(key)
        node = self.g.nodes[key[0]]
        self.stopping[key] = timer.attempt
        self.commands.append(CancelNode(node=node.id, item=key[1], attempt=timer.attempt, reason="timeout",
                                        stimulus=self.stimulus))
        self.attempt_failed(key, Error("timeout", f"node {node.id!r} did not finish within its timeout of "
                                                  f"{node.timeout:g} s (attempt {timer.attempt})"))

    def on_retry_due(self, timer: Timer) -> None:
        if self.stopping.get(timer.key) is not None:
            self.held[timer.key] = timer.attempt  # starts once the timed-out attempt has stopped
        else:
            self.requeue(timer.key)

    def on_delay_over(self, timer: Timer) -> None:
        behaviour = self.g.nodes[timer.key[0]].behaviour
        if TYPE_CHECKING:
            assert isinstance(behaviour, ParkForTimer)  # a delay timer's
        self.succeed(timer.key, {behaviour.port: self.input_of(timer.key)})

    def on_wait_timeout(self, timer: Timer) -> None:
        self.awaiting.pop(timer.key)
        behaviour = self.g.nodes[timer.key[0]].behaviour
        if TYPE_CHECKING:
            assert isinstance(behaviour, ParkForInput)  # a wait timeout's
        self.succeed(timer.key, {behaviour.timeout_port: self.input_of(timer.key)})

    def on_child_timeout(self, timer: Timer) -> None:
        """The child run took longer than the node's ``timeout``: it is cancelled, and the instance
        fails with a ``timeout`` (its failure then goes as any failure does: ``on_error``)."""
        key, node = timer.key, self.g.nodes[timer.key[0]]
        message = f"node {node.id!r}: its child run did not end within the node's timeout of {node.timeout:g} s"
        self.unpark(key, reason=message)
        self.fail_final(key, FAIL, Error("timeout", message))

    def on_input_provided(self, ev: InputProvided) -> None:
        n = self.g.index.get(ev.node)
        if n is not None and self.timed_out_before((n, tuple(ev.item)), ev.at):
            return
        problem = _input_problem(self.g, self.awaiting, False, ev.node, tuple(ev.item), ev.port)
        if problem:
            timed_out = self.timed_out_already((n, tuple(ev.item))) if n is not None else None
            self.refuse(timed_out or problem)
            return
        key = self.key_of(ev)
        self.awaiting.pop(key)
        self.clear_timer(key)
        behaviour = self.g.nodes[key[0]].behaviour
        if TYPE_CHECKING:
            assert isinstance(behaviour, ParkForInput)  # it awaited input
        ports = behaviour.answer_ports(ev.port)
        self.succeed(key, {port: ev.value for port in ports})

    def timed_out_already(self, key: Key) -> str | None:
        """Why an answer to an instance that already took its timeout port is refused, or None."""
        record = self.records.get(key)
        behaviour = self.g.nodes[key[0]].behaviour
        if record is None or record.ports is None or not isinstance(behaviour, ParkForInput) \
                or behaviour.timeout_port not in record.ports or record.finished_at is None:
            return None
        return (f"node {instance_name(record.node, record.item)} timed out at {_when(record.finished_at)}: its "
                f"timeout of {behaviour.timeout:g} s passed before the answer came; the answer was not applied")

    def timed_out_before(self, key: Key, at: float) -> bool:
        """An answer at ``at`` never beats the wait's timeout due at ``T <= at``: fire that timer as a
        ``TimerFired(at=T)`` would (the instance takes its timeout port at ``T``), refuse the
        answer, and return True. (The timer is gone: the runner is told to drop it, and should it
        fire anyway, nothing happens.)"""
        tid = self.instance_timer.get(key)
        if tid is None or self.awaiting.get(key) is None:
            return False
        timer = self.timers[tid]
        if timer.kind != TimerKind.WAIT_TIMEOUT or timer.due > at:
            return False
        self.commands.append(CancelTimer(timer=tid, stimulus=self.stimulus))
        self.now = timer.due
        self.on_timer_fired(TimerFired(timer=tid, at=timer.due))
        self.now = at
        behaviour = self.g.nodes[key[0]].behaviour
        if TYPE_CHECKING:
            assert isinstance(behaviour, ParkForInput) and behaviour.timeout is not None  # it had a wait timeout
        self.refuse(f"node {instance_name(self.g.ids[key[0]], key[1])} timed out at {_when(timer.due)}: its timeout "
                    f"of {behaviour.timeout:g} s passed before the answer came; the answer was not applied")
        return True

    def on_cancel_requested(self, ev: CancelRequested) -> None:
        self.end_run(RunStatus.CANCELLED, Error("cancelled", ev.reason))

    def on_node_cancel_requested(self, ev: NodeCancelRequested) -> None:
        """Cancel the open instances of a node (or one of them) now; keep the request for those not
        reached yet, which ``resolve`` cancels when their inputs resolve."""
        item = None if ev.item is None else tuple(ev.item)
        targets = _cancel_targets(self.g, self.records, self.scopes, ev.node, item)
        if isinstance(targets, str):
            self.refuse(targets)
            return
        n = self.g.index[ev.node]
        work: list[Work] = []
        unreached = self.cancel_reached(targets, ev.reason, work)
        if item is not None and (n, None) not in self.cancel_requests:  # cancelled when its inputs resolve
            for key in unreached:
                self.cancel_requests[key] = ev.reason
        if item is None and (n, None) not in self.cancel_requests:  # and every instance of it reached later
            self.cancel_requests[(n, None)] = ev.reason
        self.resolve(work)

    def cancel_reached(self, targets: list[Key], reason: str, work: list[Work]) -> list[Key]:
        """Cancel the instances of ``targets`` that were reached, for ``reason``: one in flight is
        stopped, a parked one unparked (a child run it waits for is cancelled too), a ready one
        dequeued; each is recorded ``cancelled`` and its outgoing edges go into ``work``, to resolve
        dead. Returns the targets not reached yet, for the caller to cancel when they are."""
        queued = [key for key in targets if key in self.payloads and self.status_of(key) is PENDING]
        if queued:
            self.unqueue(queued)
        unreached = []
        for key in targets:
            if key in self.running:
                self.stop(key, reason)
            elif self.status_of(key) is WAITING:
                self.unpark(key, reason)
            elif key not in self.payloads:
                unreached.append(key)
                continue
            work.extend(self.cancel_by_request(key, reason))
        return unreached

    def status_of(self, key: Key) -> Status:
        record = self.records.get(key)
        return PENDING if record is None else record.status

    def stop(self, key: Key, reason: str) -> None:
        """Tell the runner to stop an attempt in flight; its slot is free at once and its result
        will be ignored (no attempt of a cancelled instance follows, so none can overlap it)."""
        attempt = self.running[key]
        self.release(key)
        self.clear_timer(key)
        self.commands.append(CancelNode(node=self.g.ids[key[0]], item=key[1], attempt=attempt, reason=reason,
                                        stimulus=self.stimulus))

    def unpark(self, key: Key, reason: str = "cancelled") -> None:
        """Take a waiting instance (for input, a delay, a retry or a child run) off whatever it waits
        for; a child run it waited for is to be cancelled, for ``reason``."""
        self.clear_timer(key)
        self.awaiting.pop(key, None)
        self.held.pop(key, None)
        if self.children.get(key) is not None:
            self.children.pop(key)
            self.commands.append(CancelChild(node=self.g.ids[key[0]], item=key[1], reason=reason,
                                             stimulus=self.stimulus))

    def unqueue(self, keys: list[Key]) -> None:
        """Take ready instances out of their queues. A cancel is rare: each queue they are in is
        rebuilt without them."""
        by_queue: dict[Queue, set[Key]] = {}
        for key in keys:
            by_queue.setdefault(self.g.queue_of(key), set()).add(key)
        for q, gone in by_queue.items():
            old = self.ready[q]
            h: heap.Heap[ReadyEntry] = None
            for entry in heap.entries(old):
                if entry_key(entry) not in gone:
                    h = heap.push(h, entry)
            self.ready_count -= len(gone)
            if h is None:
                del self.ready[q]
            else:
                self.ready[q] = h
                if q[1] is not None and heap.peek(h) != heap.peek(old) and self.group_has_room(q[1]):
                    self.add_candidate(q, heap.peek(h))

    def cancel_asked(self, key: Key) -> str | None:
        """The reason a node cancel (or a ``cancel_rest``, a ``cancel`` list) gave for an instance not
        reached yet, if one asked for it."""
        reason = self.cancel_requests.get(key)
        if reason is None:
            reason = self.cancel_requests.get((key[0], None))
        if reason is None and self.cancel_regions:
            n, path = key
            for k in range(len(path) + 1):
                reason = self.cancel_regions.get((n, path[:k]))
                if reason is not None:
                    break
        return reason

    def cancel_region(self, nodes: Iterable[int], prefix: Path, reason: str) -> list[Work]:
        """Cancel every instance of ``nodes`` under the item path ``prefix`` that has not ended, as
        a node cancel does (stopped, unparked or dequeued; recorded ``cancelled``), and those not
        reached yet when they are (``cancel_regions``). Returns the edges that resolve dead."""
        targets: list[Key] = []
        for m in nodes:
            unreached = self.g.depth[m] > len(prefix)  # items a fan-out may still expand to
            for path in _paths_within(self.g, self.scopes, m, prefix):
                record = self.records.get((m, path))
                if record is None or record.status in OPEN:
                    targets.append((m, path))
                    unreached = unreached or (record is None and (m, path) not in self.payloads)
            if unreached:
                self.cancel_regions[(m, prefix)] = reason
        work: list[Work] = []
        self.cancel_reached(targets, reason, work)  # those not reached yet: by cancel_regions, when they are
        return work

    def cancel_named(self, key: Key) -> None:
        """A node with a ``cancel`` list succeeded: cancel the named nodes' open instances in its scope."""
        n, path = key
        name = instance_name(self.g.ids[n], path)
        work: list[Work] = []
        for m, shared in self.g.cancels[n]:
            work.extend(self.cancel_region((m,), path[:shared], f"cancelled by node {name!r} (its cancel list)"))
        self.resolve(work)

    def cancel_by_request(self, key: Key, reason: str) -> list[Work]:
        """Record an instance cancelled by a node cancel; its outgoing edges resolve dead."""
        self.payloads.pop(key, None)
        self.cancel_requests.pop(key, None)
        self.move(key, CANCEL, finished_at=self.now, error=Error("cancelled", reason))
        return [(self.g.edges[ei], key[1], DEAD) for ei in self.g.out_edges[key[0]]]

    def on_draining(self, ev: Draining) -> None:
        self.draining = True

    def on_cancel_confirmed(self, ev: CancelConfirmed) -> None:
        key = self.key_of(ev)
        if self.stopping.get(key) != ev.attempt:
            return
        self.stopping.pop(key)
        if self.held.get(key) is not None:
            self.held.pop(key)
            self.requeue(key)

    def on_cap_changed(self, ev: CapChanged) -> None:
        self.max_parallel = ev.max_parallel

    def on_resumed(self, ev: Resumed) -> None:
        """A new process drives the run: nothing of the old one is running any more.

        Timers are announced by due time (then id), instances by key: never in a map's own
        order, which for string keys depends on the process's hash seed and would make a replay
        in another process decide differently.
        """
        self.draining = False
        stopping, self.stopping = self.frozen(self.stopping)
        for key in stopping:
            self.stopping.pop(key)
            if self.held.get(key) is not None:
                self.held.pop(key)
                self.requeue(key)
        timers, self.timers = self.frozen(self.timers)
        for tid, timer in _by_due(timers):
            if timer.kind != TimerKind.TIMEOUT:  # timeouts belong to running attempts, which get fresh ones
                self.commands.append(StartTimer(timer=tid, due=timer.due, stimulus=self.stimulus))
        running, self.running = self.frozen(self.running)
        for key, attempt in sorted(running.items()):
            self.clear_timer(key, announce=False)
            self.dispatch(key, attempt, redispatch=True)
        awaiting, self.awaiting = self.frozen(self.awaiting)
        for key in sorted(awaiting):
            self.announce_wait(key)
        children, self.children = self.frozen(self.children)
        for key in sorted(children):
            self.announce_child(key)

    def on_child_ended(self, ev: ChildEnded) -> None:
        """The child run of a ``ParkForChild`` instance ended: the instance succeeds with the child's
        output, fails with its error, or is cancelled (as by a node cancel: its edges resolve dead,
        and the run goes on). For an instance that no longer waits for a child (or a node the run
        lacks: the end may come through the inbox), nothing happens."""
        n = self.g.index.get(ev.node)
        if n is None or self.children.get(key := (n, tuple(ev.item))) is None:
            return
        self.children.pop(key)
        self.clear_timer(key)
        if ev.status == "succeeded":
            self.succeed(key, dict(ev.ports or {}))
        elif ev.status == "cancelled":
            self.resolve(self.cancel_by_request(key, ev.message or "the child run was cancelled"))
        else:
            self.fail_final(key, FAIL, Error(ev.error_type or "subworkflow", ev.message or "the child run failed"))

    # -- readiness ----------------------------------------------------------------------------

    def resolve(self, work: list[Work]) -> None:
        """Resolve edges ``(edge, path, value or DEAD)``; what becomes ready is queued or skipped.

        Stops as soon as the run ends (a failed ``select`` under fail-fast): what was not reached
        yet has already been recorded ``cancelled``.
        """
        g = self.g
        while work and not self.ended:
            e, path, value = work.pop()
            if e.kind is LOOP_EXIT or e.kind is LOOP_ENTRY and len(path) == g.depth[e.source] \
                    and (e.source, path) in self.scopes:
                work.extend(self.loop_edge(e, path))
                continue
            if e.kind == GATHER and len(path) == g.depth[e.source]:
                gathered = self.collect(e, path, value)
                if gathered is None:
                    continue
                path, value = gathered
                if g.gather_victims and value is not DEAD and e.index in g.gather_victims:
                    work.extend(self.cancel_region(g.gather_victims[e.index], path, f"the gather into "
                                                   f"{g.ids[e.target]!r} has its at_least (cancel_rest)"))
            elif e.kind == GATHER and value is DEAD and self.scopes.get((g.origin[e.source], path)) == 0 \
                    and e.index not in g.gather_quorum:  # (at_least K of no items: fewer than K can deliver)
                value = []  # a gather out of a fan-out that expanded to no items delivers an empty list
            elif value is not DEAD and e.select is not None:
                value = _select(e, value)
            key = (e.target, path)
            if g.quorum and e.target in g.quorum:
                self.resolve_quorum(key, e, value, work)
                continue
            remaining, got = self.arrivals.get(key) or (len(g.in_edges[e.target]), None)
            if value is not DEAD:
                got = ((e.pos, e.source, value), got)
            if remaining > 1:
                self.arrivals[key] = (remaining - 1, got)
                continue
            self.arrivals.pop(key, None)
            reason = self.cancel_asked(key) if self.cancel_requests or self.cancel_regions else None
            if reason is not None:
                work.extend(self.cancel_by_request(key, reason))
            elif got is None:
                work.extend(self.skip(key))
            else:
                self.make_ready(key, self.arrivals_in_order(got))

    def resolve_quorum(self, key: Key, e: CompiledEdge, value: Any, work: list[Work]) -> None:
        """One input edge of a ``join: any`` or ``{at_least: K}`` node resolved. It is ready as soon
        as K edges delivered (with those K values, in the order they came), skipped as soon as fewer
        than K can still deliver, and the edges that resolve after that are ignored (``joined``).
        Once it is ready, a ``cancel_rest`` cancels what only leads to it."""
        left = self.joined.get(key)
        if left is not None:
            if left > 1:
                self.joined[key] = left - 1
            else:
                self.joined.pop(key)
            return
        n = key[0]
        remaining, got = self.arrivals.get(key) or (len(self.g.in_edges[n]), None)
        if value is not DEAD:
            got = ((e.pos, e.source, value), got)
        remaining -= 1
        delivered = _length(got)
        need = self.g.quorum[n]
        if delivered < need <= delivered + remaining:
            self.arrivals[key] = (remaining, got)
            return
        self.arrivals.pop(key, None)
        if remaining:
            self.joined[key] = remaining
        reason = self.cancel_asked(key) if self.cancel_requests or self.cancel_regions else None
        if reason is not None:
            work.extend(self.cancel_by_request(key, reason))
        elif got is None or delivered < need:
            work.extend(self.skip(key))
        else:
            self.make_ready(key, self.arrivals_as_taken(got))
            victims = self.g.victims.get(n)
            if victims and not self.ended and self.status_of(key) is not Status.FAILED:
                work.extend(self.cancel_region(victims, key[1], f"join {self.g.ids[n]!r} fired "
                                                                f"(cancel_rest)"))

    def collect(self, e: CompiledEdge, path: Path, value: Any) -> tuple[Path, Any] | None:
        """One item of a gather edge resolved; return ``(prefix, list or DEAD)`` once all have (with
        ``at_least: K``, once K delivered or fewer than K still can: the later items are ignored).

        An item whose ``select`` failed makes the whole gathered value that failure, so the target
        fails instead of starting with a ``SelectFailed`` among its inputs.
        """
        prefix = path[:-1]
        gkey = (e.index, prefix)
        remaining, got = self.gathers.get(gkey) or (self.scopes[(self.g.origin[e.source], prefix)], Map())
        if got is None:  # an at_least gather that has delivered: the items that end later are ignored
            self.set_or_drop(gkey, remaining - 1)
            return None
        if value is not DEAD:
            got = got.set(path[-1], _select(e, value) if e.select is not None else value)
        need = self.g.gather_quorum.get(e.index) if self.g.gather_quorum else None
        if need is not None and (len(got) >= need or len(got) + remaining - 1 < need):
            self.set_or_drop(gkey, remaining - 1)  # K items succeeded, or fewer than K still can
            if len(got) < need:
                return prefix, DEAD
        elif remaining > 1:
            self.gathers[gkey] = (remaining - 1, got)
            return None
        else:
            self.gathers.pop(gkey, None)
        if not got:
            return prefix, DEAD
        gathered = [got[i] for i in sorted(got.keys())]
        if e.select is not None:
            return prefix, next((v for v in gathered if isinstance(v, SelectFailed)), gathered)
        return prefix, gathered

    def set_or_drop(self, gkey: tuple[int, Path], remaining: int) -> None:
        """An at_least gather has delivered: ``remaining`` items are still to be ignored as they end."""
        if remaining > 0:
            self.gathers[gkey] = (remaining, None)
        else:
            self.gathers.pop(gkey, None)

    def arrivals_as_taken(self, got: tuple[tuple[int, int, Any], Delivered]) -> Payload:
        """The delivered values (newest first) in the order they came, as ``(source id, value)`` pairs."""
        arrived: list[tuple[str | None, Any]] = []
        rest: Delivered = got
        while rest is not None:
            arrived.append((self.g.ids[rest[0][1]], rest[0][2]))
            rest = rest[1]
        return tuple(reversed(arrived))

    def arrivals_in_order(self, got: tuple[tuple[int, int, Any], Delivered]) -> Payload:
        """The delivered values (a cons list of ``(edge position, source, value)``) in edge order, as
        ``(source id, value)`` pairs."""
        ids = self.g.ids
        if got[1] is None:  # one edge delivered: the common case, without the sorting
            _, src, value = got[0]
            return ((ids[src], value),)
        arrived: list[tuple[int, int, Any]] = []
        rest: Delivered = got
        while rest is not None:
            arrived.append(rest[0])
            rest = rest[1]
        arrived.sort(key=lambda a: a[0])
        return tuple([(ids[src], value) for _, src, value in arrived])

    def input_of(self, key: Key) -> Any:
        """The single input value a parked instance passes on (a list where several delivered)."""
        arrivals = self.payloads[key]
        return arrivals[0][1] if len(arrivals) == 1 else [value for _, value in arrivals]

    def make_ready(self, key: Key, arrivals: Payload) -> None:
        node = self.g.nodes[key[0]]
        self.payloads[key] = arrivals
        failed_select = None
        if self.g.has_select:
            failed_select = next((value for _, value in arrivals if isinstance(value, SelectFailed)), None)
        if failed_select is not None:
            self.fail_final(key, FAIL, Error("select", failed_select.message))
        # (a compiled graph's nodes all have a behaviour: never None)
        elif ((kind := node.behaviour.kind) is PARKS_FOR_TIMER  # type: ignore[union-attr]
              or kind is PARKS_FOR_INPUT or kind is PARKS_FOR_CHILD):
            self.park(key)
        elif node.behaviour.kind is LOOPS:  # type: ignore[union-attr]
            self.start_loop(key)
        elif node.behaviour.kind is ENDS:  # type: ignore[union-attr]
            self.end_here(key)
        else:  # its record is made when it starts: a ready instance is pending wherever it is read
            self.enqueue(key)

    def end_here(self, key: Key) -> None:
        """An ``end`` node became ready: it succeeds at once with its input, and the run ends
        ``succeeded`` (what is in flight is cancelled, the rest recorded ``cancelled``)."""
        value = self.input_of(key)
        self.payloads.pop(key)
        self.seq += 2
        self.move(key, SUCCEED, attempts=1, started_at=self.now, finished_at=self.now, ports={RESULT: value},
                  error=None, started_seq=self.seq - 1, finished_seq=self.seq)
        self.end_run(RunStatus.SUCCEEDED, None, f"run ended by node {instance_name(self.g.ids[key[0]], key[1])!r}")

    def skip(self, key: Key) -> list[Work]:
        n, path = key
        self.move(key, SKIP, finished_at=self.now)
        return [(self.g.edges[ei], path, DEAD) for ei in self.g.out_edges[n]]

    # -- parking --------------------------------------------------------------------------------

    def park(self, key: Key) -> None:
        self.seq += 1
        self.move(key, PARK, attempts=1, started_at=self.now, started_seq=self.seq)
        behaviour = self.g.nodes[key[0]].behaviour
        if TYPE_CHECKING:
            assert isinstance(behaviour, (ParkForTimer, ParkForInput, ParkForChild))  # it parks
        if behaviour.kind is PARKS_FOR_CHILD:
            self.children[key] = True
            self.announce_child(key)
            timeout = self.g.nodes[key[0]].timeout
            if timeout is not None:
                self.set_timer(TimerKind.CHILD_TIMEOUT, key, 1, self.now + timeout)
            return
        if behaviour.kind is PARKS_FOR_TIMER:
            self.set_timer(TimerKind.DELAY, key, 1, self.now + behaviour.seconds)
            return
        self.awaiting[key] = True
        self.announce_wait(key)
        if behaviour.timeout is not None:
            self.set_timer(TimerKind.WAIT_TIMEOUT, key, 1, self.now + behaviour.timeout)

    def announce_wait(self, key: Key) -> None:
        node = self.g.nodes[key[0]]
        b = node.behaviour
        if TYPE_CHECKING:
            assert isinstance(b, ParkForInput)  # it awaits input
        self.commands.append(AwaitInput(node=node.id, item=key[1], type=node.type, prompt=b.prompt,
                                        choices=b.choices or None, stimulus=self.stimulus))

    # -- loops --------------------------------------------------------------------------------

    def start_loop(self, key: Key) -> None:
        """A ready loop parks (it takes no slot) and starts its first iteration with its input."""
        self.seq += 1
        self.move(key, PARK, attempts=1, started_at=self.now, started_seq=self.seq)
        self.resolve(self.start_iteration(key, 0, self.input_of(key)))

    def start_iteration(self, key: Key, i: int, value: Any) -> list[Work]:
        """Iteration ``i`` of loop instance ``key``: its body's roots get ``value`` at ``path + (i,)``."""
        n, path = key
        self.scopes[key] = i + 1
        edges = self.g.edges
        return [(edges[ei], path + (i,), value) for ei in self.g.loop_entries[n]]

    def loop_edge(self, e: CompiledEdge, path: Path) -> list[Work]:
        """A loop's exit edge resolved (an iteration ended), or its entry edges resolved at the loop's
        own path once the loop started (it ended: what is open of its iteration is cancelled)."""
        if e.kind is LOOP_ENTRY:
            first = self.g.edges[self.g.loop_entries[e.source][0]]
            return self.close_iteration((e.source, path)) if e is first else []
        if len(path) != self.g.depth[e.source]:
            return []  # the body never ran (its loop was skipped or cancelled before it started)
        return self.end_iteration((e.target, path[:-1]), path[-1], e.source)

    def end_iteration(self, key: Key, i: int, sink: int) -> list[Work]:
        """Iteration ``i`` of loop instance ``key`` ended with its sink's end: ``until`` decides."""
        if self.status_of(key) is not WAITING or self.scopes.get(key) != i + 1:
            return []  # the loop ended before its iteration did
        n = key[0]
        b = self.g.nodes[n].behaviour
        if TYPE_CHECKING:
            assert isinstance(b, Loop)
        end = self.records[(sink, key[1] + (i,))]
        if end.status is not Status.SUCCEEDED:
            name = instance_name(self.g.ids[n], key[1])
            self.fail_final(key, FAIL, Error("loop_body", f"loop {name}, iteration {i}: the body's last node "
                                                          f"{instance_name(end.node, end.item)} was {end.status}, "
                                                          f"so the iteration has no output"))
            return []
        output = end.ports.get(RESULT) if end.ports else None
        try:
            done = _truthy(_UNTIL.visit(self.g.loop_until[n].parsed, output))
        except JMESPathError as exc:
            name = instance_name(self.g.ids[n], key[1])
            self.fail_final(key, FAIL, Error("until", f"loop {name}: until {b.until!r} failed on the output of "
                                                      f"iteration {i}: {exc}"))
            return []
        if done:
            self.succeed(key, {RESULT: output})
        elif i + 1 >= b.max_iterations:
            name = instance_name(self.g.ids[n], key[1])
            self.fail_final(key, FAIL, Error("loop_limit", f"loop {name} ran its max_iterations ({b.max_iterations})"
                                                           f" and until {b.until!r} was still false"))
        else:
            return self.start_iteration(key, i + 1, output)
        return []

    def fail_loop_of(self, key: Key, error: Error) -> None:
        """Body instance ``key`` failed (its record says so): its loop fails, naming it; then its
        outgoing edges resolve dead (what follows it in the iteration is cancelled by then)."""
        n, path = key
        loop = self.g.loop_of[n]
        loop_key = (loop, path[:self.g.depth[loop]])
        if self.status_of(loop_key) is WAITING:
            name = instance_name(self.g.ids[n], path)
            self.fail_final(loop_key, FAIL, Error(error.type, f"body node {name} failed: {error.message}"))
        if not self.ended:
            self.resolve([(self.g.edges[ei], path, DEAD) for ei in self.g.out_edges[n]])

    def close_iteration(self, key: Key) -> list[Work]:
        """Loop instance ``key`` ended: cancel what has not ended of its current iteration (in flight,
        parked, ready; those not reached yet when they are). Nothing, once ``until`` held."""
        n, path = key
        reason = f"its loop {instance_name(self.g.ids[n], path)} ended ({self.status_of(key)})"
        return self.cancel_region(self.g.body_nodes.get(n, ()), path + (self.scopes[key] - 1,), reason)

    def announce_child(self, key: Key) -> None:
        node = self.g.nodes[key[0]]
        self.commands.append(StartChild(node=node.id, item=key[1], type=node.type, arrivals=self.payloads[key],
                                        stimulus=self.stimulus))

    # -- slots --------------------------------------------------------------------------------

    def enqueue(self, key: Key) -> None:
        n, path = key
        q = self.g.queue_of(key)
        entry = self.g.ready_entry(n, path)
        before = self.ready.get(q)
        self.ready[q] = heap.push(before, entry)
        self.ready_count += 1
        if q[1] is not None and (before is None or entry < heap.peek(before)) and self.group_has_room(q[1]):
            self.add_candidate(q, entry)  # a new head of a per-item queue that may start

    def requeue(self, key: Key) -> None:
        self.move(key, RETRY_DUE)
        self.enqueue(key)

    def pool_has_room(self, pool: str | None) -> bool:
        return pool is None or self.pool_running.get(pool, 0) < self.g.pools[pool]

    def group_has_room(self, group: Group) -> bool:
        return self.group_running.get(group, 0) < self.g.group_cap[group[0]]  # type: ignore[operator]  # a group's cap is set

    def add_candidate(self, q: Queue, head: ReadyEntry) -> None:
        self.candidates[q[0]] = heap.push(self.candidates.get(q[0]), (head, q))

    def best_candidate(self, pool: str | None) -> tuple[ReadyEntry, Queue] | None:
        """The best ``(head, queue)`` among the per-item queues of ``pool`` whose group has room;
        candidates that no longer hold (the head started, the group filled up) are dropped."""
        h = self.candidates.get(pool)
        while h is not None:
            head, q = heap.peek(h)
            qh = self.ready.get(q)
            if qh is not None and heap.peek(qh) == head and self.group_has_room(q[1]):  # type: ignore[arg-type]  # per item
                self.candidates[pool] = h
                return head, q
            h = heap.pop(h)[1]
        self.candidates.pop(pool, None)
        return None

    def best_queue(self) -> Queue | None:
        """The queue whose head starts next: the best head among the queues whose caps have room."""
        best: Queue | None = None
        best_head: Any = None  # best's head (None while best is)
        for q in self.g.plain_queues:
            h = self.ready.get(q)
            if h is not None and self.pool_has_room(q[0]) and (best is None or heap.peek(h) < best_head):
                best, best_head = q, heap.peek(h)
        if self.candidates:
            for pool in list(self.candidates):
                if self.pool_has_room(pool):
                    found = self.best_candidate(pool)
                    if found is not None and (best is None or found[0] < best_head):
                        best_head, best = found
        return best

    def fill_slots(self) -> None:
        if self.draining:
            return  # the driver is stopping: what is ready waits for the next one
        cap = self.max_parallel or self.g.max_parallel
        while self.ready_count and self.running_count < cap and not self.ended:
            q = self.best_queue()
            if q is None:
                return
            entry, rest = heap.pop(self.ready[q])
            if rest is None:
                del self.ready[q]
            else:
                self.ready[q] = rest
            self.ready_count -= 1
            key = entry_key(entry)
            record = self.records.get(key)
            self.dispatch(key, 1 if record is None else record.attempts + 1)
            if rest is not None and q[1] is not None and self.group_has_room(q[1]):
                self.add_candidate(q, heap.peek(rest))

    def count(self, key: Key, delta: int) -> None:
        self.running_count += delta
        pool, group = self.g.queue[key[0]] or self.g.queue_of(key)
        if pool is None and group is None:
            return
        if pool is not None:
            self.pool_running[pool] = self.pool_running.get(pool, 0) + delta
        if group is not None:
            running = self.group_running.get(group, 0) + delta
            self.group_running[group] = running
            if delta < 0 and running == self.g.group_cap[group[0]] - 1:  # type: ignore[operator]  # a group's cap is set
                for p in self.g.group_pools[group[0]]:  # the group was full: its queues may start again
                    qh = self.ready.get((p, group))
                    if qh is not None:
                        self.add_candidate((p, group), heap.peek(qh))

    def dispatch(self, key: Key, attempt: int, redispatch: bool = False) -> None:
        n, path = key
        node = self.g.nodes[n]
        self.seq += 1
        if redispatch:
            self.move(key, RESTART, started_at=self.now, started_seq=self.seq)
        else:
            self.running[key] = attempt
            self.count(key, +1)
            self.move(key, START, attempts=attempt, started_at=self.now, started_seq=self.seq)
        deadline = None
        if node.timeout is not None:
            deadline = self.now + node.timeout
            self.set_timer(TimerKind.TIMEOUT, key, attempt, deadline)
        self.commands.append(StartNode(node=node.id, item=path, attempt=attempt, type=node.type,
                                       arrivals=self.payloads[key], deadline=deadline, redispatch=redispatch,
                                       stimulus=self.stimulus))

    def release(self, key: Key) -> None:
        self.running.pop(key)
        self.count(key, -1)

    def is_current(self, key: Key, attempt: int) -> bool:
        return self.running.get(key) == attempt

    # -- timers -------------------------------------------------------------------------------

    def set_timer(self, kind: str, key: Key, attempt: int, due: float) -> None:
        self.timer_seq += 1
        tid = f"{kind}:{self.timer_seq}"
        self.timers[tid] = Timer(kind=kind, key=key, attempt=attempt, due=due)
        self.instance_timer[key] = tid
        self.commands.append(StartTimer(timer=tid, due=due, stimulus=self.stimulus))

    def clear_timer(self, key: Key, announce: bool = True) -> None:
        tid = self.instance_timer.get(key)
        if tid is None:
            return
        self.instance_timer.pop(key)
        self.timers.pop(tid)
        if announce:
            self.commands.append(CancelTimer(timer=tid, stimulus=self.stimulus))

    # -- endings ------------------------------------------------------------------------------

    def succeed(self, key: Key, ports: dict[str, Any], ended: NodeSucceeded | None = None) -> None:
        """The instance succeeded with ``ports`` (its attempt ``ended`` so, if it ran): record it and
        resolve its outgoing edges."""
        n, path = key
        behaviour: Behaviour = self.g.nodes[n].behaviour  # type: ignore[assignment]  # compiled: never None
        if behaviour.kind is FANS_OUT and behaviour.item_port in ports \
                and not isinstance(ports[behaviour.item_port], list):
            if ended is not None:
                self.note_attempt(key, ended)
            got = type(ports[behaviour.item_port]).__name__
            self.fail_final(key, FAIL, Error("foreach", f"foreach {self.g.ids[n]!r} needs a list of items, "
                                                             f"got {got}"))
            return
        self.payloads.pop(key, None)
        self.seq += 1
        observed = {} if ended is None else _observed(self.records[key], ended)
        self.move(key, SUCCEED, finished_at=self.now, ports=ports, error=None, finished_seq=self.seq, **observed)
        work: list[Work] = []
        for ei in self.g.out_edges[n]:
            e = self.g.edges[ei]
            value = ports.get(e.port, DEAD)
            if e.kind == FAN_OUT and value is not DEAD:
                self.scopes[key] = len(value)  # 0 for an empty list: its gathers deliver []
                work.extend((e, path + (i,), item) for i, item in enumerate(value))
                if not value:
                    work.append((e, path, DEAD))
            else:
                work.append((e, path, DEAD if e.kind == FAN_OUT else value))
        self.resolve(work)
        if self.g.cancels and n in self.g.cancels and not self.ended:
            self.cancel_named(key)

    def attempt_failed(self, key: Key, error: Error) -> None:
        record = self.records[key]
        retry = self.g.nodes[key[0]].retry
        if record.attempts < retry.max_attempts:
            ended = Attempt(record.attempts, Status.FAILED, record.started_at, self.now, error)
            self.move(key, RETRY_LATER, error=error, history=record.history + (ended,))
            self.set_timer(TimerKind.RETRY, key, record.attempts, self.now + retry.wait_after(record.attempts))
        else:
            self.fail_final(key, FAIL, error)

    def fail_final(self, key: Key, move: Move, error: Error) -> None:
        n, path = key
        self.payloads.pop(key, None)
        self.seq += 1
        self.move(key, move, finished_at=self.now, error=error, finished_seq=self.seq)
        failure = error._replace(node=self.g.ids[n])
        if self.g.loop_of and self.g.loop_of[n] >= 0:  # inside a loop's body: the loop fails instead
            self.fail_loop_of(key, error)
            return
        if self.g.fail_fast:
            self.end_run(RunStatus.FAILED, failure)
            return
        self.first_failure = self.first_failure or failure
        self.resolve([(self.g.edges[ei], path, DEAD) for ei in self.g.out_edges[n]])

    def finish_if_done(self) -> None:
        if self.status != RUNNING or self.ready_count or self.running_count:
            return
        if len(self.timers) or len(self.awaiting) or len(self.held) or len(self.children):
            return
        self.status = RunStatus.FAILED if self.first_failure else RunStatus.SUCCEEDED
        self.error = self.first_failure
        self.finished_at = self.now
        self.ended = True

    def end_run(self, status: RunStatus, error: Error | None, reason: str | None = None) -> None:
        """Fail fast, cancel or an ``end`` node: stop everything in flight and close every open instance."""
        self.status, self.error, self.finished_at, self.ended = status, error, self.now, True
        reason = reason or ("run failed" if status == RunStatus.FAILED else "run cancelled")
        for key, attempt in sorted(self.running.finish().items()):
            node = self.g.ids[key[0]]
            self.commands.append(CancelNode(node=node, item=key[1], attempt=attempt, reason=reason,
                                            stimulus=self.stimulus))
            self.cancel_record(key)
        for tid, timer in _by_due(self.timers.finish()):
            self.commands.append(CancelTimer(timer=tid, stimulus=self.stimulus))
            self.cancel_record(timer.key)
        for key in self.awaiting.finish():
            self.cancel_record(key)
        for h in self.ready.finish().values():
            for entry in heap.entries(h):
                self.cancel_record(entry_key(entry))
        for key in self.arrivals.finish():
            self.cancel_record(key)
        for key in self.held.finish():
            self.cancel_record(key)
        for key in sorted(self.children.finish()):
            self.commands.append(CancelChild(node=self.g.ids[key[0]], item=key[1], reason=reason,
                                             stimulus=self.stimulus))
            self.cancel_record(key)
        self.children = Map().mutate()
        self.cancel_unreached()
        # nothing is in flight, ready, timed or parked any more
        self.running, self.timers, self.awaiting, self.arrivals, self.held, self.payloads, self.gathers, \
            self.instance_timer, self.pool_running, self.group_running, self.ready, self.joined = \
            (Map().mutate() for _ in range(12))
        self.candidates = {}
        self.ready_count, self.running_count = 0, 0

    def cancel_record(self, key: Key) -> None:
        record = self.records.get(key)
        if record is None or record.status in OPEN:
            self.move(key, CANCEL, finished_at=self.now)

    def cancel_unreached(self) -> None:
        """Record ``cancelled`` every instance the run would have had but never reached (once per run)."""
        g = self.g
        by_node: dict[int, list[Path]] = {}  # node -> every path it has in this run, whether reached or not
        scopes, self.scopes = self.frozen(self.scopes)
        for n in g.topo:
            if g.depth[n] == 0:
                expected: list[Path] = [()]
            else:
                o = g.origin[n]
                expected = []
                for path in by_node.get(o, ()):
                    size = scopes.get((o, path))
                    expected.extend([path + (i,) for i in range(size)] if size else [path])
            for path in expected:
                self.cancel_record((n, path))
            by_node[n] = expected


def _moved(old: Record, status: Status, stimulus: str | None, changes: dict[str, Any]) -> Record:
    """``old`` with a new status, stimulus and ``changes``: ``old._replace(...)``, built positionally.

    The one speed trick of the hot path (two moves per instance): ``_replace`` costs about twice as
    much, a tenth of a plain node's scheduling."""
    if not changes:
        return tuple.__new__(Record, (*old[:2], status, *old[3:12], stimulus))
    values = list(old)
    values[2], values[12] = status, stimulus
    for name, value in changes.items():
        values[_RECORD_INDEX[name]] = value
    return tuple.__new__(Record, values)


def _fresh(node: str, item: Path) -> Record:
    """``Record(node, item)``, positionally (as ``_moved``, and for the same reason)."""
    return tuple.__new__(Record, (node, item, PENDING, 0, None, None, None, None, None, None, (), (), None))


_RECORD_INDEX = {name: i for i, name in enumerate(Record._fields)}
assert _RECORD_INDEX["status"] == 2 and _RECORD_INDEX["stimulus"] == 12 == len(Record._fields) - 1
assert Record("n", ()) == _fresh("n", ())


def _observed(r: Record, ended: NodeSucceeded | NodeFailed) -> dict[str, Any]:
    """The changes to ``r`` that record what the runner observed of its ended attempt: the real
    start and the lines it logged (none when it observed nothing)."""
    if ended.started_at is None and not ended.logs:
        return {}
    return {"started_at": r.started_at if ended.started_at is None else ended.started_at, "logs": r.logs + ended.logs}


def _unheard(record: Record, attempt: int) -> bool:
    """Whether ``attempt`` of ``record`` ended without its result: it was cancelled while it ran, or
    timed out, and no late result of it came yet."""
    own = None
    for a in attempts_of(record):
        if a.attempt == attempt:
            if a.late:
                return False
            own = a
    if own is None:
        return False
    return own.status is Status.CANCELLED or own.status is Status.FAILED and own.error is not None \
        and own.error.type == "timeout"


def _by_due(timers: Map[str, Timer]) -> list[tuple[str, Timer]]:
    """Timers in a stable order (due time, then id), whatever the process's string hash seed."""
    return sorted(timers.items(), key=lambda item: (item[1].due, item[0]))


def _when(t: float) -> str:
    """A time as people read it: ``2024-04-05T19:34:38Z (Unix time 1712345678.5)``. Calendar
    arithmetic by hand (H. Hinnant's days-to-civil), since the core imports no clock module."""
    unix = f"Unix time {t:.6f}".rstrip("0").rstrip(".")
    if not math.isfinite(t):
        return unix
    days, seconds = divmod(math.floor(t), 86400)
    era, day_of_era = divmod(days + 719468, 146097)
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    m = (5 * day_of_year + 2) // 153
    day, month = day_of_year - (153 * m + 2) // 5 + 1, m + 3 if m < 10 else m - 9
    year = year_of_era + era * 400 + (month <= 2)
    hours, minutes = divmod(seconds // 60, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds % 60:02d}Z ({unix})"


# Evaluates every loop's ``until``: what ``ParsedResult.search`` does, without making an interpreter
# (and its cache of visit methods) per search, which was most of an iteration's cost.
_UNTIL = TreeInterpreter()


def _truthy(value: Any) -> bool:
    """JMESPath truth: false, null, and empty strings, lists and objects are false; 0 is true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, (str, list, dict)) and not value)


def _select(e: CompiledEdge, value: Any) -> Any:
    if isinstance(value, SelectFailed):
        return value
    try:
        return e.select.search(value)
    except JMESPathError as exc:
        return SelectFailed(f"select {e.select_text!r} on the edge into this node failed: {exc}")


_NO_CANDIDATES: Map[str | None, heap.NonEmpty[tuple[ReadyEntry, Queue]]] = Map()

# What each event does: one handler per event type, one per timer kind.
_HANDLERS: dict[type[Event], Callable[[_Transition, Any], None]] = {
    RunStarted: _Transition.on_run_started,
    NodeSucceeded: _Transition.on_node_succeeded,
    NodeFailed: _Transition.on_node_failed,
    TimerFired: _Transition.on_timer_fired,
    InputProvided: _Transition.on_input_provided,
    CancelRequested: _Transition.on_cancel_requested,
    NodeCancelRequested: _Transition.on_node_cancel_requested,
    Draining: _Transition.on_draining,
    CancelConfirmed: _Transition.on_cancel_confirmed,
    Resumed: _Transition.on_resumed,
    CapChanged: _Transition.on_cap_changed,
    ChildEnded: _Transition.on_child_ended,
}
# Events that come from people: refused with a reason (``Refused``) when they do not fit, never raised.
_FROM_PEOPLE = frozenset({InputProvided, CancelRequested, NodeCancelRequested})
_TIMER_HANDLERS: dict[str, Callable[[_Transition, Timer], None]] = {
    TimerKind.TIMEOUT: _Transition.on_timeout,
    TimerKind.RETRY: _Transition.on_retry_due,
    TimerKind.DELAY: _Transition.on_delay_over,
    TimerKind.WAIT_TIMEOUT: _Transition.on_wait_timeout,
    TimerKind.CHILD_TIMEOUT: _Transition.on_child_timeout,
}
