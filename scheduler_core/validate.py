"""``validate_state``: the invariants every state ``step`` returns must satisfy, checked in full.

Like dask's ``WorkerState.validate_state``: O(size of the state), so it is for tests, the property
tests (after every step) and the simulated runner, never for a production drive. It raises
``InvalidState`` naming the first broken invariant.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import heap
from .behaviour import Kind
from .lifecycle import OPEN, RUN_ENDED, TERMINAL, RunStatus, Status
from .state import Group, Key, Record, State, entry_key, instance_name

if TYPE_CHECKING:
    from .graph import Graph


class InvalidState(AssertionError):
    pass


def _check(ok: bool, message: str | Callable[[], str]) -> None:
    """Raise ``InvalidState`` with ``message`` unless ``ok``; a message that names things is a
    function, called only then (a check runs per instance, after every step)."""
    if not ok:
        raise InvalidState(message if isinstance(message, str) else message())


def _name(g: Graph, key: Key) -> str:
    return instance_name(g.ids[key[0]], key[1])


def validate_state(state: State) -> None:
    g = state.graph
    records = state.records
    for key, record in records.items():
        _check(record.status in Status.__members__.values(),
               lambda: f"{_name(g, key)}: unknown status {record.status!r}")
        _check(record.node == g.ids[key[0]] and tuple(record.item) == key[1],
               lambda: f"{_name(g, key)}: record names {record.node}{record.item}")
        if record.status in TERMINAL:
            _check(record.finished_at is not None, lambda: f"{_name(g, key)}: {record.status} without finished_at")
            _check(key not in state.payloads, lambda: f"{_name(g, key)}: {record.status} but still holds its inputs")
        if record.status == Status.SUCCEEDED:
            _check(record.ports is not None and record.error is None,
                   lambda: f"{_name(g, key)}: succeeded without ports or with an error")
        if record.status == Status.FAILED:
            _check(record.error is not None, lambda: f"{_name(g, key)}: failed without an error")
        if record.history:
            _check_history(g, key, record)

    _check_cancel_requests(state)
    _check_cancel_regions(state)
    if state.status in RUN_ENDED:
        for name in ("running", "timers", "awaiting", "ready", "held", "payloads", "arrivals", "gathers", "children",
                     "joined"):
            _check(len(getattr(state, name)) == 0, lambda: f"the run ended {state.status} with {name} not empty")
        _check(state.running_count == 0 and state.ready_count == 0, "the run ended with instances counted in flight")
        open_ = [_name(g, k) for k, r in records.items() if r.status in OPEN]
        _check(not open_, lambda: f"the run ended {state.status} with instances not ended: {open_[:5]}")
        return
    _check(state.status in (RunStatus.PENDING, RunStatus.RUNNING), lambda: f"unknown run status {state.status!r}")

    r: Record | None
    # running: each attempt in flight is its record's current one, and the counts add up
    _check(state.running_count == len(state.running),
           lambda: f"running_count {state.running_count} != {len(state.running)}")
    cap = state.max_parallel or g.max_parallel
    _check(state.running_count <= cap, lambda: f"{state.running_count} in flight over the cap {cap}")
    pools: Counter[str] = Counter()
    groups: Counter[Group] = Counter()
    for key, attempt in state.running.items():
        r = records.get(key)
        _check(r is not None and r.status == Status.RUNNING and r.attempts == attempt,
               f"{_name(g, key)}: in flight as attempt {attempt} but its record is {r}")
        _check(key in state.payloads, lambda: f"{_name(g, key)}: in flight without its inputs")
        pool, group = g.queue[key[0]] or g.queue_of(key)
        if pool is not None:
            pools[pool] += 1
        if group is not None:
            groups[group] += 1
    for name, count in pools.items():  # (the pools: a handful)
        _check(state.pool_running.get(name, 0) == count,
               f"pool {name!r}: counted {state.pool_running.get(name)}, {count} in flight")
        _check(count <= g.pools[name], f"pool {name!r}: {count} in flight over its size {g.pools[name]}")
    for name, count in state.pool_running.items():
        _check(count == pools.get(name, 0), f"pool {name!r}: counted {count}, {pools.get(name, 0)} in flight")
    for group, count in state.group_running.items():
        _check(count == groups.get(group, 0),
               lambda: f"group {group}: counted {count}, {groups.get(group, 0)} in flight")
        cap_of_group = g.group_cap[group[0]]
        _check(cap_of_group is not None and count <= cap_of_group,
               lambda: f"group {group}: {count} in flight over its cap")

    # ready: pending, holding inputs, in the queue it belongs to, counted once
    seen = 0
    for q, h in state.ready.items():
        _check(h is not None, lambda: f"queue {q}: an empty heap is kept")
        for n, path in map(entry_key, heap.entries(h)):
            key = (n, path)
            seen += 1
            r = records.get(key)
            _check(r is None or r.status == Status.PENDING,
                   lambda: f"{_name(g, key)}: ready but {r.status if r else None}")
            _check(key in state.payloads, lambda: f"{_name(g, key)}: ready without its inputs")
            _check(g.queue_of(key) == q, lambda: f"{_name(g, key)}: in queue {q}, belongs in {g.queue_of(key)}")
    _check(seen == state.ready_count, lambda: f"ready_count {state.ready_count} != {seen} queued")
    # every per-item queue whose group has room has its head among its pool's candidates
    for q, h in state.ready.items():
        group_cap = None if q[1] is None else g.group_cap[q[1][0]]
        if q[1] is None or group_cap is not None and state.group_running.get(q[1], 0) >= group_cap:
            continue
        head = heap.peek(h)
        _check(any(c == (head, q) for c in heap.entries(state.candidates.get(q[0]))),
               f"queue {q}: its head {head} may start but is no candidate")

    # parked: waiting for input or a timer
    for key in state.awaiting.keys():
        r = records.get(key)
        _check(r is not None and r.status == Status.WAITING, lambda: f"{_name(g, key)}: awaiting input but {r}")
        b = g.nodes[key[0]].behaviour
        _check(b is not None and b.kind is Kind.PARK_INPUT, lambda: f"{_name(g, key)}: awaiting input, cannot park")
    for key in state.children.keys():
        r = records.get(key)
        _check(r is not None and r.status == Status.WAITING, lambda: f"{_name(g, key)}: awaits a child run but {r}")
        b = g.nodes[key[0]].behaviour
        _check(b is not None and b.kind is Kind.PARK_CHILD, lambda: f"{_name(g, key)}: awaits a child run, has none")
        timer = state.timers.get(state.instance_timer.get(key, ""))
        _check(key in state.payloads and (timer is None or timer.kind == "child_timeout"),
               lambda: f"{_name(g, key)}: awaits a child run without its inputs, or with a timer other than its timeout")
    for tid, timer in state.timers.items():
        r = records.get(timer.key)
        want = Status.RUNNING if timer.kind == "timeout" else Status.WAITING
        _check(r is not None and r.status == want, lambda: f"timer {tid} of {_name(g, timer.key)}: record is {r}")
        _check(timer.kind != "child_timeout" or timer.key in state.children,
               lambda: f"timer {tid}: a child run's timeout for {_name(g, timer.key)}, which awaits no child run")
    for key, tid in state.instance_timer.items():
        _check(tid in state.timers and state.timers[tid].key == key,
               lambda: f"{_name(g, key)}: names a timer {tid} it lacks")
    for key in state.held.keys():
        _check(key in state.stopping, lambda: f"{_name(g, key)}: a retry is held but no attempt is stopping")
        r = records.get(key)
        _check(r is not None and r.status == Status.WAITING, lambda: f"{_name(g, key)}: held retry but {r}")
    for key in state.payloads.keys():
        r = records.get(key)
        _check(r is None or r.status in OPEN,
               lambda: f"{_name(g, key)}: holds inputs but ended {r.status if r else None}")
    for key, (remaining, _) in state.arrivals.items():
        _check(0 < remaining < len(g.in_edges[key[0]]) + 1, lambda: f"{_name(g, key)}: {remaining} edges unresolved")
        _check(key not in records, lambda: f"{_name(g, key)}: still gathering inputs but has a record")
    if g.loop_until:
        _check_loops(state)
    for key, left in state.joined.items():  # a quorum join that fired (or gave up) ignores its later inputs
        _check(key[0] in g.quorum and 0 < left < len(g.in_edges[key[0]]),
               lambda: f"{_name(g, key)}: ignores {left} more inputs, but it has {len(g.in_edges[key[0]])}")
        _check(key not in state.arrivals and (key in records or key in state.payloads),
               lambda: f"{_name(g, key)}: its join fired, but it is not reached or still gathers inputs")



# Where a record's history may already hold its current attempt: it failed, and the retry has not
# started (waiting for its delay, queued again, or cancelled before it started).
_BETWEEN_ATTEMPTS = frozenset({Status.WAITING, Status.PENDING, Status.CANCELLED})


def _check_history(g: Graph, key: Key, record: Record) -> None:
    """The earlier attempts are 1, 2, ... up to the current one (or to it, between attempts), each
    failed; a late result is one per attempt the record had, succeeded or failed."""
    ended = [a.attempt for a in record.history if not a.late]
    last = record.attempts if record.status in _BETWEEN_ATTEMPTS else record.attempts - 1
    _check(ended == list(range(1, len(ended) + 1)) and len(ended) <= last,
           lambda: f"{_name(g, key)}: attempt {record.attempts} ({record.status}) with earlier attempts {ended}")
    late = [a.attempt for a in record.history if a.late]
    _check(len(set(late)) == len(late) and all(1 <= a <= record.attempts for a in late),
           lambda: f"{_name(g, key)}: late results {late} of its {record.attempts} attempts")
    for a in record.history:
        ok = a.status == Status.SUCCEEDED and a.error is None or a.status == Status.FAILED and a.error is not None
        _check(ok and (a.late or a.status == Status.FAILED),
               lambda: f"{_name(g, key)}: attempt {a.attempt} in its history is {a.status} with error {a.error}")


def _check_loops(state: State) -> None:
    """A waiting loop holds its input and has started 1 to ``max_iterations`` iterations; a body
    instance belongs to an iteration that started, and only the current one has open instances."""
    g = state.graph
    for key, record in state.records.items():
        n, path = key
        if n in g.loop_until and record.status == Status.WAITING:
            b = g.nodes[n].behaviour
            started = state.scopes.get(key, 0)
            _check(b is not None and b.kind is Kind.LOOP and 1 <= started <= b.max_iterations,
                   lambda: f"{_name(g, key)}: a waiting loop with {started} iterations started")
            _check(key in state.payloads, lambda: f"{_name(g, key)}: a waiting loop without its input")
        o = g.origin[n]
        if o in g.loop_until and len(path) == g.depth[n]:
            started = state.scopes.get((o, path[:-1]), 0)
            _check(path[-1] < started, lambda: f"{_name(g, key)}: iteration {path[-1]} of {g.ids[o]} never started")
            _check(record.status not in OPEN or path[-1] == started - 1,
                   lambda: f"{_name(g, key)}: {record.status} in iteration {path[-1]}, not the current one")


def _check_cancel_requests(state: State) -> None:
    """A node cancel leaves nothing of what it names open: a request for one instance waits only
    while that instance is not reached (no record, no inputs); under a request for every instance
    of a node, none of the node's records is open and none of its instances is ready."""
    g = state.graph
    whole: set[int] = set()
    for (n, path), reason in state.cancel_requests.items():
        _check(0 <= n < len(g.ids) and isinstance(reason, str), lambda: f"a cancel request ({n}, {path}) is malformed")
        if path is None:
            whole.add(n)
        elif state.status not in RUN_ENDED:
            key = (n, path)
            _check(key not in state.records and key not in state.payloads,
                   lambda: f"{_name(g, key)}: a cancel request still waits for it, but it was reached")
    if not whole:
        return
    for key, record in state.records.items():
        _check(key[0] not in whole or record.status in TERMINAL,
               lambda: f"{_name(g, key)}: every instance of its node was cancelled, but it is {record.status}")
    for h in state.ready.values():
        for n, path in map(entry_key, heap.entries(h)):
            _check(n not in whole, lambda: f"{_name(g, (n, path))}: every instance of its node was cancelled, "
                                           f"but it is ready")


def _check_cancel_regions(state: State) -> None:
    """What a ``cancel_rest`` or a ``cancel`` list asked leaves none of its instances open: an
    instance under a region is either not reached yet or ended."""
    if not state.cancel_regions:
        return
    g = state.graph
    for key, record in state.records.items():
        if record.status in OPEN:
            n, path = key
            _check(all((n, path[:k]) not in state.cancel_regions for k in range(len(path) + 1)),
                   lambda: f"{_name(g, key)}: a cancel_rest or cancel list covers it, but it is {record.status}")
