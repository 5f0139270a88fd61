"""step(state, events) -> (state, commands): every scheduling decision flowcore makes.

Theory of operation
-------------------
A run is a set of node *instances*, keyed by ``(node index, item path)``. The item path is ``()``
outside any fan-out and grows by one index per ``foreach`` an instance runs inside of.

Edges *resolve*: when an instance ends, each of its outgoing edges either delivers a value (its
port is in the result) or is *dead* (the port is absent, or the instance failed or was skipped).
An instance becomes ready when every incoming edge has resolved; it runs if at least one
delivered and is skipped otherwise, and a skip resolves its own edges as dead, so skips spread
until they reach a join that something else feeds. Edges come in four kinds, fixed at compile
time: *plain* (same path), *iteration* (a foreach's items: one resolution per item, path + (i,)),
*map* (per item, path unchanged) and *gather* (out of a per-item node: collected per fan-out and
delivered once, as a list in item order, when every item has resolved). A fan-out that never
expands (an empty list, a skipped or failed foreach) resolves its per-item nodes at the
foreach's own path, which is the one "unexpanded" record those nodes keep.

Ready task instances wait in persistent heaps, one per (pool, fan-out group), ordered by
priority: longest remaining path to a sink first, then declaration order, then item path. After
all events of a step are applied, free slots are filled from the best heap whose caps have room,
so ``max_parallel``, pools and a foreach's ``max_parallel`` hold by construction. ``delay``,
``wait`` and ``hil`` instances never take a slot: they park, asking for a timer or for input.

Time arrives in events. Timeouts, retry backoff, delays and wait timeouts are timers the core
asks for with ``StartTimer`` and hears back about as ``TimerFired``. A timed-out attempt is told
to stop, and its retry waits until the runner confirms it stopped: two attempts of one instance
are never in flight. Results of attempts that are no longer current are ignored.

Under fail-fast the first final failure ends the run: every in-flight instance is cancelled and
every instance that had not ended is recorded ``cancelled``. Under ``continue`` a failure
resolves the instance's edges as dead and the run fails once nothing is left to do.

Every handler touches only the instances the event concerns and their neighbours: a step costs
O(what changed). The given state is never modified; the new one shares all untouched structure.
"""
from __future__ import annotations

import attrs
from immutables import Map
from jmespath.exceptions import JMESPathError

from . import heap
from .commands import AwaitInput, CancelNode, CancelTimer, RunFinished, StartNode, StartTimer
from .events import (CancelConfirmed, CancelRequested, CapChanged, InputProvided, NodeFailed, NodeStarted,
                     NodeSucceeded, Resumed, RunStarted, TimerFired)
from .graph import FAN_OUT, GATHER
from .model import FOREACH, ITERATION
from .state import (CANCELLED, FAILED, PENDING, RUNNING, SKIPPED, SUCCEEDED, WAITING, Payload, Record, State,
                    Timer)

DEAD = object()  # an edge that resolved without a value


class InvalidEvent(ValueError):
    """An event that does not fit the run (a node that is not waiting, an unknown node...)."""


@attrs.frozen
class SelectFailed:
    """An edge's ``select`` expression raised; the instance it feeds fails instead of starting."""
    message: str


def step(state: State, events) -> tuple[State, tuple]:
    """Apply ``events`` in order, then start what the caps allow. Pure: ``state`` is not changed."""
    tx = _Transition(state)
    for event in events:
        tx.apply(event)
    tx.fill_slots()
    tx.finish_if_done()
    return tx.result()


def input_problem(state: State, node: str, item=(), port=None) -> str | None:
    """Why ``InputProvided(node, item, port)`` would be refused, or None if it would be accepted."""
    problem = _input_problem(state.graph, state.awaiting, state.finished, node, tuple(item or ()), port)
    n = state.graph.index.get(node)
    if problem and n is not None and problem.endswith("is not waiting for input"):
        waiting = sorted(path for m, path in state.awaiting.keys() if m == n)
        if waiting:  # the node waits, per item: say which items do
            names = ", ".join(",".join(map(str, path)) or "(none)" for path in waiting[:10])
            problem += f"; its waiting items are {names}{' ...' if len(waiting) > 10 else ''} (use --item)"
    return problem


def _input_problem(g, awaiting, finished, node, item, port):
    if finished:
        return "the run has already finished"
    n = g.index.get(node)
    if n is None:
        return f"there is no node {node!r} in this workflow"
    if awaiting.get((n, item)) is None:
        where = f"{node}{''.join(f'[{i}]' for i in item)}"
        return f"node {where} is not waiting for input"
    spec = g.nodes[n]
    choices = tuple(spec.config.get("choices") or ()) if spec.type == "hil" else ()
    if choices and port not in choices:
        return f"node {node!r} needs one of the choices {', '.join(choices)} (got {port!r})"
    if not choices and port is not None:
        return f"node {node!r} offers no choices; answer it without a port"
    return None


class _Transition:
    """One step in the making: mutable views of the state's maps, and the commands so far."""

    def __init__(self, state: State):
        self.state = state
        self.g = state.graph
        for name in _MAPS:  # a mutation of a persistent map costs O(1) to open and to finish
            setattr(self, name, getattr(state, name).mutate())
        for name in _SCALARS:
            setattr(self, name, getattr(state, name))
        self.ready = dict(state.ready.items())
        self.commands = []
        self.ended = False

    def result(self) -> tuple[State, tuple]:
        changes = {name: getattr(self, name).finish() for name in _MAPS}
        changes.update({name: getattr(self, name) for name in _SCALARS})
        changes["ready"] = Map(self.ready)
        if self.ended:
            self.commands.append(RunFinished(status=self.status, error=self.error))
        return _rebuild(self.state, changes), tuple(self.commands)

    def snapshot(self, name: str) -> Map:
        """Freeze one map to iterate it (rare: ends of runs and resumes), then keep mutating."""
        frozen = getattr(self, name).finish()
        setattr(self, name, frozen.mutate())
        return frozen

    # -- events -----------------------------------------------------------------------------

    def apply(self, event) -> None:
        self.now = event.at
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise InvalidEvent(f"unknown event {event!r}")
        if self.status in (SUCCEEDED, FAILED, CANCELLED) and type(event) is not RunStarted:
            return  # late results, timers and confirmations after the end change nothing
        handler(self, event)

    def key_of(self, event) -> tuple:
        n = self.g.index.get(event.node)
        if n is None:
            raise InvalidEvent(f"event for unknown node {event.node!r}")
        return (n, tuple(event.item))

    def on_run_started(self, ev: RunStarted) -> None:
        if self.status != PENDING:
            raise InvalidEvent("the run has already started")
        self.status, self.started_at, self.trigger = RUNNING, ev.at, ev.trigger
        for root in self.g.roots:
            self.make_ready((root, ()), Payload(input=ev.trigger, values=(ev.trigger,), inputs={}))

    def on_node_started(self, ev: NodeStarted) -> None:
        key = self.key_of(ev)
        if self.is_current(key, ev.attempt):
            self.records[key] = self.records[key]._replace(started_at=ev.at)

    def on_node_succeeded(self, ev: NodeSucceeded) -> None:
        key = self.key_of(ev)
        if not self.is_current(key, ev.attempt):
            return
        self.release(key)
        self.clear_timer(key)
        self.succeed(key, ev.ports, ev)

    def on_node_failed(self, ev: NodeFailed) -> None:
        key = self.key_of(ev)
        if not self.is_current(key, ev.attempt):
            return
        self.release(key)
        self.clear_timer(key)
        self.note_attempt(key, ev)
        self.attempt_failed(key, (ev.error_type, ev.message))

    def note_attempt(self, key, ev) -> None:
        """Keep what the runner observed of an ended attempt: its real start and its log lines."""
        if ev.started_at is not None or ev.logs:
            self.records[key] = _noted(self.records[key], ev)

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
        self.commands.append(CancelNode(node=node.id, item=key[1], attempt=timer.attempt, reason="timeout"))
        self.attempt_failed(key, ("timeout", f"node {node.id!r} did not finish within its timeout of "
                                             f"{node.timeout:g} s (attempt {timer.attempt})"))

    def on_retry_due(self, timer: Timer) -> None:
        if self.stopping.get(timer.key) is not None:
            self.held[timer.key] = timer.attempt  # starts once the timed-out attempt has stopped
        else:
            self.requeue(timer.key)

    def on_delay_over(self, timer: Timer) -> None:
        self.succeed(timer.key, {"result": self.payloads[timer.key].input})

    def on_wait_timeout(self, timer: Timer) -> None:
        self.awaiting.pop(timer.key)
        self.succeed(timer.key, {"timeout": self.payloads[timer.key].input})

    def on_input_provided(self, ev: InputProvided) -> None:
        problem = _input_problem(self.g, self.awaiting, False, ev.node, tuple(ev.item), ev.port)
        if problem:
            raise InvalidEvent(problem)
        key = self.key_of(ev)
        self.awaiting.pop(key)
        self.clear_timer(key)
        node = self.g.nodes[key[0]]
        extra = "completed" if node.type == "wait" else ev.port
        ports = {"result": ev.value} if extra is None else {extra: ev.value, "result": ev.value}
        self.succeed(key, ports)

    def on_cancel_requested(self, ev: CancelRequested) -> None:
        self.end_run(CANCELLED, {"node": None, "type": "cancelled", "message": ev.reason})

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
        for key in self.snapshot("stopping"):
            self.stopping.pop(key)
            if self.held.get(key) is not None:
                self.held.pop(key)
                self.requeue(key)
        for tid, timer in _by_due(self.snapshot("timers")):
            if timer.kind != "timeout":  # timeouts belong to running attempts, which get fresh ones
                self.commands.append(StartTimer(timer=tid, due=timer.due))
        for key, attempt in sorted(self.snapshot("running").items()):
            self.clear_timer(key, announce=False)
            self.dispatch(key, attempt, redispatch=True)
        for key in sorted(self.snapshot("awaiting")):
            self.announce_wait(key, self.g.nodes[key[0]])

    # -- readiness ----------------------------------------------------------------------------

    def resolve(self, work: list) -> None:
        """Resolve edges ``(edge, path, value or DEAD)``; what becomes ready is queued or skipped.

        Stops as soon as the run ends (a failed ``select`` under fail-fast): what was not reached
        yet has already been recorded ``cancelled``.
        """
        g = self.g
        while work and not self.ended:
            e, path, value = work.pop()
            if e.kind == GATHER and len(path) == g.depth[e.source]:
                gathered = self.collect(e, path, value)
                if gathered is None:
                    continue
                path, value = gathered
            elif value is not DEAD and e.select is not None:
                value = _select(e, value)
            key = (e.target, path)
            remaining, got = self.arrivals.get(key) or (len(g.in_edges[e.target]), None)
            if value is not DEAD:
                got = ((e.pos, e.source, value), got)
            if remaining > 1:
                self.arrivals[key] = (remaining - 1, got)
                continue
            self.arrivals.pop(key, None)
            if got is None:
                work.extend(self.skip(key))
            else:
                self.make_ready(key, self.payload_from(got))

    def collect(self, e, path, value):
        """One item of a gather edge resolved; return ``(prefix, list or DEAD)`` once all have.

        An item whose ``select`` failed makes the whole gathered value that failure, so the target
        fails instead of starting with a ``SelectFailed`` among its inputs.
        """
        prefix = path[:-1]
        gkey = (e.index, prefix)
        remaining, got = self.gathers.get(gkey) or (self.scopes[(self.g.origin[e.source], prefix)], Map())
        if value is not DEAD:
            got = got.set(path[-1], _select(e, value) if e.select is not None else value)
        if remaining > 1:
            self.gathers[gkey] = (remaining - 1, got)
            return None
        self.gathers.pop(gkey, None)
        if not got:
            return prefix, DEAD
        gathered = [got[i] for i in sorted(got.keys())]
        if e.select is not None:
            return prefix, next((v for v in gathered if isinstance(v, SelectFailed)), gathered)
        return prefix, gathered

    def payload_from(self, got) -> Payload:
        if got[1] is None:  # one edge delivered: the common case, without the sorting
            _, src, value = got[0]
            return _new(Payload, (value, (value,), {self.g.ids[src]: value}))
        arrived = []
        while got is not None:
            arrived.append(got[0])
            got = got[1]
        arrived.sort(key=lambda a: a[0])
        values = tuple(a[2] for a in arrived)
        by_source: dict = {}
        for _, src, value in arrived:
            by_source.setdefault(self.g.ids[src], []).append(value)
        inputs = {name: vs[0] if len(vs) == 1 else vs for name, vs in by_source.items()}
        return Payload(input=values[0] if len(values) == 1 else list(values), values=values, inputs=inputs)

    def make_ready(self, key, payload: Payload) -> None:
        node = self.g.nodes[key[0]]
        self.payloads[key] = payload
        failed_select = None
        if self.g.has_select:
            failed_select = next((v for v in payload.values if isinstance(v, SelectFailed)), None)
        if failed_select is not None:
            self.records[key] = Record(node=node.id, item=key[1])
            self.fail_final(key, ("select", failed_select.message))
        elif node.type in _PARKING:
            self.park(key, node)
        else:  # its record is made when it starts: a ready instance is pending wherever it is read
            self.enqueue(key)

    def skip(self, key) -> list:
        n, path = key
        self.records[key] = Record(node=self.g.ids[n], item=path, status=SKIPPED, finished_at=self.now)
        return [(self.g.edges[ei], path, DEAD) for ei in self.g.out_edges[n]]

    # -- parking --------------------------------------------------------------------------------

    def park(self, key, node) -> None:
        self.seq += 1
        self.records[key] = Record(node=node.id, item=key[1], status=WAITING, attempts=1,
                                   started_at=self.now, started_seq=self.seq)
        if node.type == "delay":
            self.set_timer("delay", key, 1, self.now + float(node.config.get("seconds", 0)))
            return
        self.awaiting[key] = node.type
        self.announce_wait(key, node)
        if node.config.get("timeout") is not None:
            self.set_timer("wait_timeout", key, 1, self.now + float(node.config["timeout"]))

    def announce_wait(self, key, node) -> None:
        choices = node.config.get("choices")
        self.commands.append(AwaitInput(node=node.id, item=key[1], type=node.type, prompt=node.config.get("prompt"),
                                        choices=tuple(choices) if choices else None))

    # -- slots --------------------------------------------------------------------------------

    def queue_of(self, key) -> tuple:
        """``(pool, group)``: the ready queue an instance waits in, and the caps it counts against."""
        n, path = key
        q = self.g.queue[n]
        if q is not None:  # most nodes: one queue per pool, computed once per graph
            return q
        o = self.g.origin[n]
        return (self.g.nodes[n].pool, (o, path[: self.g.depth[o]]))

    def enqueue(self, key) -> None:
        n, path = key
        q = self.queue_of(key)
        self.ready[q] = heap.push(self.ready.get(q), (-self.g.rank[n], n, path))
        self.ready_count += 1

    def requeue(self, key) -> None:
        self.records[key] = self.records[key]._replace(status=PENDING)
        self.enqueue(key)

    def has_room(self, queue) -> bool:
        pool, group = queue
        if pool is not None and self.pool_running.get(pool, 0) >= self.g.pools[pool]:
            return False
        if group is not None and self.group_running.get(group, 0) >= self.g.nodes[group[0]].config["max_parallel"]:
            return False
        return True

    def best_queue(self):
        if len(self.ready) == 1:  # the common case: no pools or groups in play
            for q in self.ready:
                return q if self.has_room(q) else None
        best, best_head = None, None
        for q, h in self.ready.items():
            if (best is None or heap.peek(h) < best_head) and self.has_room(q):
                best, best_head = q, heap.peek(h)
        return best

    def fill_slots(self) -> None:
        cap = self.max_parallel or self.g.max_parallel
        while self.ready_count and self.running_count < cap and not self.ended:
            q = self.best_queue()
            if q is None:
                return
            (_, n, path), rest = heap.pop(self.ready[q])
            if rest is None:
                del self.ready[q]
            else:
                self.ready[q] = rest
            self.ready_count -= 1
            key = (n, path)
            record = self.records.get(key)
            self.dispatch(key, 1 if record is None else record.attempts + 1)

    def count(self, key, delta: int) -> None:
        self.running_count += delta
        pool, group = self.g.queue[key[0]] or self.queue_of(key)
        if pool is None and group is None:
            return
        if pool is not None:
            self.pool_running[pool] = self.pool_running.get(pool, 0) + delta
        if group is not None:
            self.group_running[group] = self.group_running.get(group, 0) + delta

    def dispatch(self, key, attempt: int, redispatch: bool = False) -> None:
        n, path = key
        node = self.g.nodes[n]
        if not redispatch:
            self.running[key] = attempt
            self.count(key, +1)
        self.seq += 1
        r = self.records.get(key)
        if r is None:  # its first start: the record is made here
            self.records[key] = _new(Record, (node.id, path, RUNNING, attempt, self.now, None, None, None, self.seq,
                                              None, ()))
        else:
            self.records[key] = _new(Record, (r[0], r[1], RUNNING, attempt, self.now, r[5], r[6], r[7], self.seq,
                                              r[9], r[10]))
        deadline = None
        if node.timeout is not None:
            deadline = self.now + node.timeout
            self.set_timer("timeout", key, attempt, deadline)
        p = self.payloads[key]
        self.commands.append(StartNode(node=node.id, item=path, attempt=attempt, type=node.type, input=p.input,
                                       values=p.values, inputs=p.inputs, deadline=deadline, redispatch=redispatch))

    def release(self, key) -> None:
        self.running.pop(key)
        self.count(key, -1)

    def is_current(self, key, attempt) -> bool:
        return self.running.get(key) == attempt

    # -- timers -------------------------------------------------------------------------------

    def set_timer(self, kind: str, key, attempt: int, due: float) -> None:
        self.timer_seq += 1
        tid = f"{kind}:{self.timer_seq}"
        self.timers[tid] = Timer(kind=kind, key=key, attempt=attempt, due=due)
        self.instance_timer[key] = tid
        self.commands.append(StartTimer(timer=tid, due=due))

    def clear_timer(self, key, announce: bool = True) -> None:
        tid = self.instance_timer.get(key)
        if tid is None:
            return
        self.instance_timer.pop(key)
        self.timers.pop(tid)
        if announce:
            self.commands.append(CancelTimer(timer=tid))

    # -- endings ------------------------------------------------------------------------------

    def succeed(self, key, ports: dict, ended: NodeSucceeded | None = None) -> None:
        """The instance succeeded with ``ports`` (its attempt ``ended`` so, if it ran): record it and
        resolve its outgoing edges."""
        n, path = key
        node = self.g.nodes[n]
        r = self.records[key]
        if node.type == FOREACH and ITERATION in ports and not isinstance(ports[ITERATION], list):
            self.records[key] = r if ended is None else _noted(r, ended)
            got = type(ports[ITERATION]).__name__
            self.fail_final(key, ("foreach", f"foreach {node.id!r} needs a list of items, got {got}"))
            return
        self.payloads.pop(key, None)
        self.seq += 1
        started_at, logs = r[4], r[10]
        if ended is not None:  # what the runner observed: the real start, the lines it logged
            if ended.started_at is not None:
                started_at = ended.started_at
            if ended.logs:
                logs += ended.logs
        self.records[key] = _new(Record, (r[0], r[1], SUCCEEDED, r[3], started_at, self.now, ports, None, r[8],
                                          self.seq, logs))
        work = []
        for ei in self.g.out_edges[n]:
            e = self.g.edges[ei]
            value = ports.get(e.port, DEAD)
            if e.kind == FAN_OUT and value is not DEAD and value:
                self.scopes[key] = len(value)
                work.extend((e, path + (i,), item) for i, item in enumerate(value))
            else:
                work.append((e, path, DEAD if e.kind == FAN_OUT else value))
        self.resolve(work)

    def attempt_failed(self, key, error: tuple) -> None:
        record = self.records[key]
        retry = self.g.nodes[key[0]].retry
        if record.attempts < retry.max_attempts:
            self.records[key] = record._replace(status=WAITING, error=error)
            self.set_timer("retry", key, record.attempts, self.now + retry.wait_after(record.attempts))
        else:
            self.fail_final(key, error)

    def fail_final(self, key, error: tuple) -> None:
        n, path = key
        self.payloads.pop(key, None)
        self.seq += 1
        self.records[key] = self.records[key]._replace(status=FAILED, finished_at=self.now, error=error,
                                         finished_seq=self.seq)
        failure = {"node": self.g.ids[n], "type": error[0], "message": error[1]}
        if self.g.fail_fast:
            self.end_run(FAILED, failure)
            return
        self.first_failure = self.first_failure or failure
        self.resolve([(self.g.edges[ei], path, DEAD) for ei in self.g.out_edges[n]])

    def finish_if_done(self) -> None:
        if self.status != RUNNING or self.ready_count or self.running_count:
            return
        if len(self.timers) or len(self.awaiting) or len(self.held):
            return
        self.status = FAILED if self.first_failure else SUCCEEDED
        self.error = self.first_failure
        self.finished_at = self.now
        self.ended = True

    def end_run(self, status: str, error: dict) -> None:
        """Fail fast or cancel: stop everything in flight and close every open instance."""
        self.status, self.error, self.finished_at, self.ended = status, error, self.now, True
        reason = "run failed" if status == FAILED else "run cancelled"
        for key, attempt in sorted(self.snapshot("running").items()):
            node = self.g.ids[key[0]]
            self.commands.append(CancelNode(node=node, item=key[1], attempt=attempt, reason=reason))
            self.cancel_record(key)
        for tid, timer in _by_due(self.snapshot("timers")):
            self.commands.append(CancelTimer(timer=tid))
            self.cancel_record(timer.key)
        for key in self.snapshot("awaiting"):
            self.cancel_record(key)
        for h in self.ready.values():
            for _, n, path in heap.entries(h):
                self.cancel_record((n, path))
        for key in self.snapshot("arrivals"):
            self.cancel_record(key)
        for key in self.snapshot("held"):
            self.cancel_record(key)
        self.cancel_unreached()
        for name in ("running", "timers", "awaiting", "arrivals", "held", "payloads", "gathers",
                     "instance_timer", "pool_running", "group_running"):
            setattr(self, name, Map().mutate())
        self.ready, self.ready_count, self.running_count = {}, 0, 0

    def cancel_record(self, key) -> None:
        record = self.records.get(key)
        if record is None:
            record = Record(node=self.g.ids[key[0]], item=key[1])
        elif record.status not in (PENDING, RUNNING, WAITING):
            return
        self.records[key] = record._replace(status=CANCELLED, finished_at=self.now)

    def cancel_unreached(self) -> None:
        """Record ``cancelled`` every instance the run would have had but never reached (once per run)."""
        g = self.g
        by_node: dict = {}  # node -> every path it has in this run, whether reached or not
        scopes = self.snapshot("scopes")
        for n in g.topo:
            if g.depth[n] == 0:
                expected = [()]
            else:
                o = g.origin[n]
                expected = []
                for path in by_node.get(o, ()):
                    size = scopes.get((o, path))
                    expected.extend([path + (i,) for i in range(size)] if size else [path])
            for path in expected:
                self.cancel_record((n, path))
            by_node[n] = expected


def _rebuild(state: State, changes: dict) -> State:
    """``attrs.evolve`` without re-running ``__init__``: the step's hot path builds one State per step."""
    new = object.__new__(State)
    for name in _STATE_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(state, name))
    return new


# Record is a named tuple; the hot paths build the updated one positionally (``_replace`` costs 4x more).
# Fields: node, item, status, attempts, started_at, finished_at, ports, error, started_seq, finished_seq, logs.
_new = tuple.__new__


def _noted(r: Record, ended) -> Record:
    """``r`` with what the runner observed of its ended attempt: the real start, the lines it logged."""
    started_at = r[4] if ended.started_at is None else ended.started_at
    return _new(Record, (r[0], r[1], r[2], r[3], started_at, r[5], r[6], r[7], r[8], r[9], r[10] + ended.logs))


def _by_due(timers: Map) -> list:
    """Timers in a stable order (due time, then id), whatever the process's string hash seed."""
    return sorted(timers.items(), key=lambda item: (item[1].due, item[0]))


def _select(e, value):
    if isinstance(value, SelectFailed):
        return value
    try:
        return e.select.search(value)
    except JMESPathError as exc:
        return SelectFailed(f"select {e.select_text!r} on the edge into this node failed: {exc}")


_PARKING = frozenset({"delay", "wait", "hil"})
_STATE_FIELDS = tuple(f.name for f in attrs.fields(State))
_MAPS = ("records", "arrivals", "gathers", "scopes", "payloads", "running", "pool_running", "group_running",
         "timers", "instance_timer", "awaiting", "stopping", "held")
_SCALARS = ("status", "trigger", "started_at", "finished_at", "error", "first_failure", "now", "seq", "timer_seq",
            "ready_count", "running_count", "max_parallel")

# The transition table: one handler per event type, one per timer kind.
_HANDLERS = {
    RunStarted: _Transition.on_run_started,
    NodeStarted: _Transition.on_node_started,
    NodeSucceeded: _Transition.on_node_succeeded,
    NodeFailed: _Transition.on_node_failed,
    TimerFired: _Transition.on_timer_fired,
    InputProvided: _Transition.on_input_provided,
    CancelRequested: _Transition.on_cancel_requested,
    CancelConfirmed: _Transition.on_cancel_confirmed,
    Resumed: _Transition.on_resumed,
    CapChanged: _Transition.on_cap_changed,
}
_TIMER_HANDLERS = {
    "timeout": _Transition.on_timeout,
    "retry": _Transition.on_retry_due,
    "delay": _Transition.on_delay_over,
    "wait_timeout": _Transition.on_wait_timeout,
}
