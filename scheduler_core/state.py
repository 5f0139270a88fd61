"""The run state: one immutable value holding everything ``step`` knows about a run.

Large collections are persistent maps (``immutables.Map``), so a step that changes a few
instances costs O(what changed) and the state it was given stays valid. Instances are keyed by
``(node index, item path)``; an item path is a tuple of indices, ``()`` outside any fan-out.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import attrs
from immutables import Map

from .graph import Graph

PENDING, RUNNING, WAITING = "pending", "running", "waiting"
SUCCEEDED, FAILED, SKIPPED, CANCELLED = "succeeded", "failed", "skipped", "cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})


class Record(NamedTuple):
    """What happened to one node instance. (A named tuple: updated on every transition, so cheap.)"""

    node: str
    item: tuple
    status: str = PENDING
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    ports: dict | None = None
    error: tuple | None = None  # (type, message)
    started_seq: int | None = None
    finished_seq: int | None = None
    logs: tuple = ()  # lines the node logged, over all its attempts


class Payload(NamedTuple):
    """The inputs an instance was started with, kept until it ends (for retries and resumes).
    (A named tuple: one is made per instance, at half the cost of an attrs instance.)"""

    input: Any
    values: tuple
    inputs: dict


@attrs.frozen(kw_only=True)
class Timer:
    kind: str  # timeout, retry, delay, wait_timeout
    key: tuple
    attempt: int
    due: float


@attrs.frozen(kw_only=True)
class State:
    graph: Graph = attrs.field(eq=False, repr=False)
    status: str = PENDING  # pending, running, succeeded, failed, cancelled
    trigger: Any = None
    started_at: float | None = None
    finished_at: float | None = None
    error: dict | None = None
    first_failure: dict | None = None
    now: float | None = None
    seq: int = 0
    timer_seq: int = 0
    records: Map = Map()  # key -> Record
    arrivals: Map = Map()  # key -> (edges still unresolved, delivered values as a cons list)
    gathers: Map = Map()  # (edge index, prefix) -> (items still unresolved, Map item -> value)
    scopes: Map = Map()  # (foreach index, path) -> number of items it fanned out
    payloads: Map = Map()  # key -> Payload, while the instance is not terminal
    ready: Map = Map()  # queue key (pool, group) -> heap of (priority, key)
    ready_count: int = 0
    running: Map = Map()  # key -> attempt in flight
    running_count: int = 0
    pool_running: Map = Map()  # pool -> instances in flight
    group_running: Map = Map()  # fan-out group -> instances in flight
    timers: Map = Map()  # timer id -> Timer
    instance_timer: Map = Map()  # key -> its current timeout / wait timer id
    awaiting: Map = Map()  # key -> node type, instances parked for input
    stopping: Map = Map()  # key -> attempt told to stop (timed out), not yet confirmed stopped
    held: Map = Map()  # key -> attempt: retries due that wait for the stopping attempt to end
    max_parallel: int | None = None  # the run's cap once a CapChanged set it; None: the graph's

    @property
    def finished(self) -> bool:
        return self.status in (SUCCEEDED, FAILED, CANCELLED)

    @property
    def idle(self) -> bool:
        """Nothing runs or is ready: what is left waits for a person or a timer."""
        return self.running_count == 0 and self.ready_count == 0


def initial_state(graph: Graph) -> State:
    return State(graph=graph)


def sequence_keys(state: State) -> list:
    """Every succeeded instance's key, in the order the core heard of the successes.

    Derived from the records (each success takes the next ``finished_seq``) rather than kept as a
    list in the state: a run asks for it once, at its report, and every step saves a write."""
    done = [(r.finished_seq, key) for key, r in state.records.items() if r.status == SUCCEEDED]
    done.sort()
    return [key for _, key in done]
