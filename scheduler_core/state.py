"""The run state: one immutable value holding everything ``step`` knows about a run.

Large collections are persistent maps (``immutables.Map``), so a step that changes a few
instances costs O(what changed) and the state it was given stays valid. Instances are keyed by
``(node index, item path)``; an item path is a tuple of indices, ``()`` outside any fan-out.

Where an instance is, besides its record's status (see ``lifecycle``):

============== ===========================================================================
``ready``      PENDING and ready to start: in a ready queue (``ready``), its inputs in ``payloads``
``running``    RUNNING: the attempt in flight; its timeout timer in ``instance_timer``
``awaiting``   WAITING for an answer (a ``ParkForInput`` node), maybe with a timeout timer
``children``   WAITING for its child run to end (a ``ParkForChild`` node), its inputs in ``payloads``
``timers``     every timer: an attempt's timeout, a retry's delay, a delay, a wait's timeout
``stopping``   a timed-out attempt told to stop, not yet confirmed stopped
``held``       a retry that fell due while its timed-out attempt was still stopping
``arrivals``   not ready yet: the input edges still unresolved and the values delivered so far
============== ===========================================================================

``joined`` holds the quorum joins (``join: any`` or ``{at_least: K}``) that fired or gave up while
some of their input edges were still unresolved: key -> how many; those edges' values are ignored
as they come, and the entry goes once they all have. ``cancel_regions`` keeps what a ``cancel_rest``
or a node's ``cancel`` list asked for instances not reached yet: ``(node, path prefix)`` -> reason,
for every instance of the node under that prefix (``()``: all of them).

``cancel_requests`` keeps the node cancels that still wait for instances not reached yet:
``(node, path)`` for one instance, ``(node, None)`` for every instance of the node. An instance
they name is recorded ``cancelled`` when its inputs resolve, instead of starting, parking or being
skipped. ``draining`` is set while the driving process is stopping: nothing new starts.

``validate.validate_state`` checks that these agree with each other and with the records.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import attrs
from immutables import Map

from .graph import Graph
from .lifecycle import OPEN, RUN_ENDED, TERMINAL, RunStatus, Status

if TYPE_CHECKING:
    from .heap import NonEmpty

# The core's keys and queue entries are plain tuples (one is built per instance and per transition),
# named here for the type checker only.
Path: TypeAlias = tuple[int, ...]  # an item path: one index per fan-out the instance runs inside of
Key: TypeAlias = tuple[int, Path]  # an instance: (node index, item path)
Group: TypeAlias = tuple[int, Path]  # a capped fan-out's items: (foreach node index, its path prefix)
Queue: TypeAlias = tuple[str | None, Group | None]  # a ready queue: (pool, group or None)
# in a ready heap (Graph.ready_entry): (-rank of its scope, its scope, item path, -rank, node index)
ReadyEntry: TypeAlias = tuple[float, int, Path, float, int]
Candidate: TypeAlias = tuple[ReadyEntry, Queue]  # in a pool's candidate heap: (the queue's head, the queue)
Payload: TypeAlias = tuple[tuple[str | None, Any], ...]  # an instance's arrivals: (source id, value) in edge order
# The values delivered to a not-yet-ready instance, newest first: a cons list of (edge position, source, value).
Delivered: TypeAlias = "tuple[tuple[int, int, Any], Delivered] | None"

# The statuses under their old names, for readers of records.
PENDING, RUNNING, WAITING = Status.PENDING, Status.RUNNING, Status.WAITING
SUCCEEDED, FAILED, SKIPPED, CANCELLED = Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED


class Error(NamedTuple):
    """What went wrong, one shape everywhere: an instance's ``error`` (``node`` is None there) and
    the run's (``node`` names the instance that failed it, None for a cancel of the whole run)."""

    type: str
    message: str
    node: str | None = None
    traceback: str | None = None  # where node code raised it (its frames only), as Python prints it

    def as_dict(self, with_node: bool) -> dict[str, str | None]:
        """The ``--json`` shape: an instance's ``{type, message}`` and its ``traceback`` when node code
        raised; the run's ``{node, type, message}`` (the failed instance's record holds the traceback)."""
        out: dict[str, str | None] = {"type": self.type, "message": self.message}
        if with_node:
            return {"node": self.node, **out}
        if self.traceback is not None:
            out["traceback"] = self.traceback
        return out


class Attempt(NamedTuple):
    """One attempt of an instance, as its record's ``history`` keeps it: an earlier attempt that
    ended (it failed, and a retry followed), or a result that came ``late``: after its attempt was
    cancelled or timed out. Such a result changes nothing else, but it happened, so it is kept.
    (The current attempt is the record's own fields: the hot path builds nothing more.)"""

    attempt: int
    status: Status
    started_at: float | None
    finished_at: float | None
    error: Error | None = None
    ports: dict[str, Any] | None = None
    late: bool = False


class Record(NamedTuple):
    """What happened to one node instance. (A named tuple: one is built on every transition.)"""

    node: str
    item: Path
    status: Status = Status.PENDING
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    ports: dict[str, Any] | None = None
    error: Error | None = None
    started_seq: int | None = None  # when it (last) started or parked, in the order the core decided
    finished_seq: int | None = None  # when it ended
    logs: tuple[str, ...] = ()  # lines the node logged, over all its attempts
    history: tuple[Attempt, ...] = ()  # attempts before the current one, and late results (see ``Attempt``)
    stimulus: str | None = None  # the id of the event that last moved it (see ``step``)


@attrs.frozen(kw_only=True)
class Timer:
    kind: str  # a TimerKind
    key: Key
    attempt: int
    due: float


@attrs.frozen(kw_only=True)
class State:
    graph: Graph = attrs.field(eq=False, repr=False)
    status: RunStatus = RunStatus.PENDING
    trigger: Any = None
    started_at: float | None = None
    finished_at: float | None = None
    error: Error | None = None
    first_failure: Error | None = None
    now: float | None = None
    steps: int = 0  # steps applied so far: an event's id is "<step>.<position in its batch>"
    seq: int = 0
    timer_seq: int = 0
    records: Map[Key, Record] = Map()  # key -> Record
    arrivals: Map[Key, tuple[int, Delivered]] = Map()  # key -> (edges still unresolved, delivered (edge position, source, value) as a cons list)
    gathers: Map[tuple[int, Path], tuple[int, Map[int, Any] | None]] = Map()  # (edge index, prefix) -> (items still unresolved, Map item -> value; None once an at_least gather delivered)
    scopes: Map[Key, int] = Map()  # (foreach index, path) -> number of items it fanned out
    payloads: Map[Key, Payload] = Map()  # key -> its arrivals (source, value) in edge order, while it is not terminal
    ready: Map[Queue, NonEmpty[ReadyEntry]] = Map()  # ready queue (pool, group) -> heap of (priority, node, path)
    ready_count: int = 0
    candidates: Map[str | None, NonEmpty[Candidate]] = Map()  # pool -> heap of (head entry, queue) for queues of capped fan-outs with room
    running: Map[Key, int] = Map()  # key -> attempt in flight
    running_count: int = 0
    pool_running: Map[str, int] = Map()  # pool -> instances in flight
    group_running: Map[Group, int] = Map()  # fan-out group -> instances in flight
    timers: Map[str, Timer] = Map()  # timer id -> Timer
    instance_timer: Map[Key, str] = Map()  # key -> its current timeout / retry / delay / wait timer id
    awaiting: Map[Key, bool] = Map()  # key -> True: instances parked for input
    stopping: Map[Key, int] = Map()  # key -> attempt told to stop (timed out), not yet confirmed stopped
    held: Map[Key, int] = Map()  # key -> attempt: retries due that wait for the stopping attempt to end
    max_parallel: int | None = None  # the run's cap once a CapChanged set it; None: the graph's
    cancel_requests: Map[tuple[int, Path | None], str] = Map()  # (node, path or None: all) -> reason, see above
    draining: bool = False  # a Draining came and no Resumed since: nothing new starts
    children: Map[Key, bool] = Map()  # key -> True: instances parked until their child run ends
    joined: Map[Key, int] = Map()  # quorum join that fired or was skipped -> its input edges still unresolved
    cancel_regions: Map[tuple[int, Path], str] = Map()  # (node, path prefix) -> reason: cancel those reached later

    @property
    def finished(self) -> bool:
        return self.status in RUN_ENDED

    @property
    def idle(self) -> bool:
        """Nothing runs or is ready: what is left waits for a person or a timer."""
        return self.running_count == 0 and self.ready_count == 0


def entry_key(entry: ReadyEntry) -> Key:
    """The instance a ready-queue entry stands for."""
    return (entry[4], entry[2])


def instance_name(node: str, item: Iterable[int]) -> str:
    """``node``, ``node[2]`` or ``node[2][0]``: how people and the ``--json`` sequence name an instance."""
    return node + "".join(f"[{i}]" for i in item)


def initial_state(graph: Graph) -> State:
    return State(graph=graph)


def sequence_keys(state: State) -> list[Key]:
    """Every succeeded instance's key, in the order the core heard of the successes.

    Derived from the records (each success takes the next ``finished_seq``) rather than kept as a
    list in the state: a run asks for it once, at its report, and every step saves a write."""
    done = [(r.finished_seq, key) for key, r in state.records.items() if r.status == SUCCEEDED]
    done.sort()
    return [key for _, key in done]


def attempts_of(record: Record) -> list[Attempt]:
    """Every attempt of ``record``, numbered from 1: the earlier ones and late results its history
    keeps, and the current one made from the record's own fields; a late result comes right after
    its attempt's own entry. (A record that never started or parked has none.)"""
    ended = [a for a in record.history if not a.late]
    done = ended[-1].attempt if ended else 0
    out = ended
    if record.attempts > done:
        status, error = record.status, record.error
        # a retry keeps its predecessor's error in the record until it ends: it is not this attempt's
        if status is not Status.FAILED and (status is not Status.CANCELLED or ended and error == ended[-1].error):
            error = None
        out = ended + [Attempt(record.attempts, status, record.started_at, record.finished_at, error,
                               record.ports if status is Status.SUCCEEDED else None)]
    late = [a for a in record.history if a.late]
    if late:
        out = sorted(out + late, key=lambda a: (a.attempt, a.late))
    return out


__all__ = ["Error", "Attempt", "attempts_of", "Record", "entry_key", "instance_name", "Timer", "State", "initial_state",
           "sequence_keys", "TERMINAL", "OPEN", "Status", "RunStatus", "PENDING", "RUNNING", "WAITING", "SUCCEEDED",
           "FAILED", "SKIPPED", "CANCELLED"]
