"""The invariants a trace of ``step`` must keep, each a function that raises ``AssertionError``.

They read only the trace (events, states, commands) and the graph, and rebuild what they need
from the semantics in DESIGN.md, independently of how ``step`` computes it: which value each edge
delivers, which instances a run must have, which attempts are in flight.
"""
from __future__ import annotations

import functools

import jmespath
from jmespath.exceptions import JMESPathError

from scheduler_core import (AwaitInput, CancelChild, CancelConfirmed, CancelNode, CancelRequested, CancelTimer,
                            ChildEnded, InputProvided, StartChild,
                            NodeCancelRequested, NodeFailed, NodeSucceeded, Refused, RunFinished, Resumed, StartNode,
                            StartTimer, TimerFired, fingerprint, heap, replay, sequence_keys)
from scheduler_core.graph import FAN_OUT, GATHER, LOOP_ENTRY, LOOP_EXIT, MAP
from scheduler_core.state import CANCELLED, FAILED, PENDING, SKIPPED, SUCCEEDED, TERMINAL, WAITING, entry_key

from .step_driver import Trace, frozen_bytes
from .workflows import PARKING_TYPES, WAITING_TYPES

NEVER_STARTED = PARKING_TYPES + ("end",)  # types whose instances count one attempt but never start on a runner


@functools.lru_cache(maxsize=None)
def _expression(text: str):
    return jmespath.compile(text)


def selected(e, value):
    """The value an edge delivers after its ``select``, or ``SELECT_FAILED``."""
    if e.select_text is None:
        return value
    try:
        return _expression(e.select_text).search(value)
    except JMESPathError:
        return SELECT_FAILED

UNRESOLVED = object()  # the edge's source has not ended yet
DEAD = object()  # the edge resolved without a value
SELECT_FAILED = object()  # the edge's select raised on what it delivered: its target fails


def holds(trace: Trace, *invariants) -> None:
    """Check ``invariants``; a failure message ends with a literal reproduction of the run."""
    for invariant in invariants:
        try:
            invariant(trace)
        except AssertionError as exc:
            raise AssertionError(f"{invariant.__name__}: {exc}\n{trace.reproduction()}") from None


def name(g, key) -> str:
    n, path = key
    return g.ids[n] + "".join(f"[{i}]" for i in path)


def _terminal(record) -> bool:
    return record is not None and record.status in TERMINAL


def key_of(g, c) -> tuple:
    return (g.index[c.node], tuple(c.item))


# -- what each edge delivers ----------------------------------------------------------------------

def edge_sources(g, records, e, path) -> list:
    """The source instances edge ``e`` waits for when it feeds the instance at ``path``."""
    expanded = len(path) == g.depth[e.target]
    if e.kind == LOOP_ENTRY and expanded:  # iteration i: the previous iteration's sink (none for the first)
        return [(body_sink(g, e.source), path[:-1] + (path[-1] - 1,))] if path[-1] else []
    if e.kind == FAN_OUT and expanded:
        return [(e.source, path[:-1])]
    if e.kind == GATHER and expanded:
        origin = records.get((g.origin[e.source], path))
        items = _items(origin)
        return [(e.source, path + (i,)) for i in range(len(items))] if items else [(e.source, path)]
    return [(e.source, path)]


def _items(foreach_record) -> list:
    if foreach_record is None or foreach_record.status != SUCCEEDED:
        return []
    return foreach_record.ports.get("iteration") or []


def _expanded_to_nothing(foreach_record) -> bool:
    return foreach_record is not None and foreach_record.status == SUCCEEDED \
        and foreach_record.ports.get("iteration") == []


def body_sink(g, loop: int) -> int:
    return next(e.source for e in g.edges if e.kind == LOOP_EXIT and e.target == loop)


def loop_input(g, records, loop_key, trigger):
    """What a started loop got: the value its edges delivered (a list where several did), or the
    trigger for a root."""
    if not g.in_edges[loop_key[0]]:
        return trigger
    values = [v for _, v in delivered(g, records, loop_key, trigger) if v is not DEAD]
    return values[0] if len(values) == 1 else values


def iterations(g, records, loop_key) -> int:
    """How many iterations a loop instance ran, from DESIGN.md's rule: another one starts while the
    last one's sink succeeded, ``until`` was false of its output, and ``max_iterations`` allows."""
    record = records.get(loop_key)
    if record is None or record.started_seq is None:
        return 0  # never started: skipped or cancelled before it ran
    b = g.nodes[loop_key[0]].behaviour
    sink, count = body_sink(g, loop_key[0]), 1
    while count < b.max_iterations:
        end = records.get((sink, loop_key[1] + (count - 1,)))
        if end is None or end.status != SUCCEEDED or _truthy(_expression(b.until).search(end.ports.get("result"))):
            break
        count += 1
    return count


def _truthy(value) -> bool:
    return not (value is None or value is False or (isinstance(value, (str, list, dict)) and not value))


def edge_value(g, records, e, path, trigger=None):
    """What edge ``e`` delivered to the instance at ``path``: a value, ``DEAD`` or ``UNRESOLVED``."""
    expanded = len(path) == g.depth[e.target]
    if e.kind == LOOP_ENTRY and expanded:
        if path[-1] == 0:
            return loop_input(g, records, (e.source, path[:-1]), trigger)
        end = records.get((body_sink(g, e.source), path[:-1] + (path[-1] - 1,)))
        assert end is not None and end.status == SUCCEEDED, f"{name(g, (e.target, path))} exists, but the iteration " \
                                                            f"before it did not succeed"
        return end.ports.get("result")
    if e.kind == GATHER and expanded and not _terminal(records.get((g.origin[e.source], path))):
        return UNRESOLVED  # until the foreach ends, nobody knows how many items there are
    keys = edge_sources(g, records, e, path)
    if e.kind == GATHER and expanded and e.index in g.gather_quorum and len(keys[0][1]) > len(path):
        return _quorum_gather_value(g, records, e, keys)
    sources = [records.get(k) for k in keys]
    if not all(_terminal(r) for r in sources):
        return UNRESOLVED
    if e.kind == FAN_OUT and not expanded:
        return DEAD  # the foreach never expanded: no items, so nothing on its iteration port
    if e.kind == GATHER and expanded and len(sources[0].item) == len(path) and _expanded_to_nothing(
            records.get((g.origin[e.source], path))):
        # a gather out of a fan-out that expanded to no items delivers an empty list; one with
        # at_least K is dead (fewer than K can deliver)
        return DEAD if e.index in g.gather_quorum else []
    if e.kind == FAN_OUT:
        items = _items(sources[0])
        assert path[-1] < len(items), f"{name(g, (e.target, path))} exists, but its foreach has {len(items)} items"
        return selected(e, items[path[-1]])
    values = [selected(e, r.ports[e.port]) for r in sources if r.status == SUCCEEDED and e.port in r.ports]
    if SELECT_FAILED in values:
        return SELECT_FAILED
    if e.kind == GATHER and expanded and len(sources[0].item) > len(path):
        return values or DEAD  # the items' results, in item order, each through the select
    return values[0] if values else DEAD


def _quorum_gather_value(g, records, e, keys):
    """A gather edge with ``at_least: K``: the results of the first K items that delivered (in the
    order their successes were processed), in item order; DEAD once fewer than K still can."""
    need = g.gather_quorum[e.index]
    sources = [records.get(k) for k in keys]
    done = sorted((r.finished_seq, r.item, selected(e, r.ports[e.port])) for r in sources
                  if r is not None and r.status == SUCCEEDED and e.port in r.ports)
    if len(done) >= need:
        taken = sorted(done[:need], key=lambda d: d[1])
        values = [value for _, _, value in taken]
        return SELECT_FAILED if SELECT_FAILED in values else values
    still = sum(not _terminal(r) for r in sources)
    return DEAD if len(done) + still < need else UNRESOLVED


def delivered(g, records, key, trigger=None) -> list:
    """Per incoming edge (declaration order): the edge and what it delivered to instance ``key``."""
    n, path = key
    return [(g.edges[ei], edge_value(g, records, g.edges[ei], path, trigger)) for ei in g.in_edges[n]]


def expected_instances(g, records) -> set:
    """Every instance the run must have a record of: per item of each foreach, else unexpanded."""
    paths: dict = {}
    for n in g.topo:
        if g.depth[n] == 0:
            paths[n] = [()]
            continue
        o = g.origin[n]
        paths[n] = []
        for p in paths[o]:
            if o in g.loop_until:
                count = iterations(g, records, (o, p)) if len(p) == g.depth[o] else 0
                paths[n].extend([p + (i,) for i in range(count)] if count else [p])
                continue
            items = _items(records.get((o, p))) if len(p) == g.depth[o] else []
            paths[n].extend([p + (i,) for i in range(len(items))] if items else [p])
    return {(n, p) for n, ps in paths.items() for p in ps}


def accepted(step) -> list:
    """The step's events that were applied: all but those a ``Refused`` names."""
    refused = {c.stimulus for c in step.commands if type(c) is Refused}
    return [e for i, e in enumerate(step.events) if f"{step.before.steps}.{i}" not in refused]


def changed_records(step) -> list:
    """``(key, record before or None, record after)`` for every record the step changed."""
    before = step.before.records
    return [(k, before.get(k), r) for k, r in step.after.records.items() if before.get(k) is not r]


# -- attempts in flight, rebuilt from events and commands ------------------------------------------

class Ledger:
    """The attempts in flight as the core must see them: started, and not yet ended or cancelled."""

    def __init__(self, g):
        self.g = g
        self.inflight: dict = {}  # key -> attempt
        self.started: dict = {}  # key -> last attempt started
        self.stopping: set = set()  # (key, attempt) timed out, not yet confirmed stopped
        self.timers: set = set()  # timers asked for, not yet fired or cancelled
        self.orphans: dict = {}  # key -> attempt in flight when the driving process died, until re-dispatched

    def events(self, events) -> None:
        for ev in events:
            if type(ev) in (NodeSucceeded, NodeFailed):
                key = key_of(self.g, ev)
                if self.inflight.get(key) == ev.attempt:
                    del self.inflight[key]
            elif type(ev) is CancelConfirmed:
                self.stopping.discard((key_of(self.g, ev), ev.attempt))
            elif type(ev) is TimerFired:
                self.timers.discard(ev.timer)
            elif type(ev) is Resumed:  # what the dead process ran, stopped or timed is gone
                self.orphans, self.inflight = self.inflight, {}
                self.stopping.clear()
                self.timers.clear()

    def command(self, c) -> None:
        kind = type(c)
        if kind is StartNode:
            key = key_of(self.g, c)
            self.inflight[key] = self.started[key] = c.attempt
        elif kind is CancelNode:
            key = key_of(self.g, c)
            if self.inflight.get(key) == c.attempt:
                del self.inflight[key]
            if c.reason == "timeout":
                self.stopping.add((key, c.attempt))
        elif kind is StartTimer:
            self.timers.add(c.timer)
        elif kind is CancelTimer:
            self.timers.discard(c.timer)

    def counts(self) -> dict:
        """In-flight attempts per cap: ``"run"``, ``("pool", name)``, ``("foreach", foreach, path)``."""
        out: dict = {"run": len(self.inflight)}
        for n, path in self.inflight:
            for cap in caps_of(self.g, (n, path)):
                out[cap] = out.get(cap, 0) + 1
        return out


def caps_of(g, key) -> list:
    n, path = key
    caps = []
    if g.nodes[n].pool is not None:
        caps.append(("pool", g.nodes[n].pool))
    o = g.origin[n]
    while o >= 0 and g.nodes[o].type == "loop":  # a loop's body counts against the cap its loop is under
        o = g.origin[o]
    if o >= 0 and g.nodes[o].config.get("max_parallel"):
        caps.append(("foreach", o, path[: g.depth[o]]))
    return caps


def cap_size(g, cap) -> int:
    if cap == "run":
        return g.max_parallel
    if cap[0] == "pool":
        return g.pools[cap[1]]
    return g.nodes[cap[1]].config["max_parallel"]


def walk(trace: Trace, on_start=None, after_step=None) -> Ledger:
    """Replay the ledger through the trace, calling ``on_start(step, cmd, ledger)`` before each
    start is counted and ``after_step(step, ledger)`` once each step's commands are."""
    ledger = Ledger(trace.graph)
    for s in trace.steps:
        ledger.events(s.events)
        for c in s.commands:
            if on_start is not None and type(c) is StartNode:
                on_start(s, c, ledger)
            ledger.command(c)
        if after_step is not None:
            after_step(s, ledger)
    return ledger


# -- the invariants ---------------------------------------------------------------------------------

def no_instance_starts_before_its_inputs_resolve(trace: Trace) -> None:
    g = trace.graph
    for s in trace.steps:
        for c in s.commands:
            if type(c) is StartNode:
                _check_start_inputs(g, s.after, c)
        for key, old, new in changed_records(s):
            if new.status == SKIPPED or (new.status == WAITING and new.attempts == 1 and old is None):
                _check_resolution(g, s.after.records, key, new.status, s.after.trigger)
            elif new.status == FAILED and new.error.type == "select":
                _check_resolution(g, s.after.records, key, "failed its select")


def _check_start_inputs(g, state, c) -> None:
    key = key_of(g, c)
    if key[0] in g.quorum:
        values = _check_quorum(g, state.records, key, "started")
        need = g.quorum[key[0]]
        assert len(c.values) == need, f"{name(g, key)} (a join of {need}) started with {len(c.values)} values"
        for value in c.values:
            assert value in values, f"{name(g, key)} started with {value!r}, which none of its edges delivered"
        return
    if not g.in_edges[key[0]]:
        assert c.values == (state.trigger,), f"root {name(g, key)} started with {c.values!r}, not the trigger"
        return
    if _enters_a_quorum_loop(g, key):  # its input is what the loop's join took: K of what its edges delivered
        loop_key = (next(e.source for e in _in(g, key) if e.kind == LOOP_ENTRY), key[1][:-1])
        need = g.quorum[loop_key[0]]
        values = [v for _, v in delivered(g, state.records, loop_key, state.trigger) if v not in (DEAD, UNRESOLVED)]
        took = [c.input] if need == 1 else c.input
        assert len(took) == need and all(v in values for v in took), \
            f"{name(g, key)} started with {c.input!r}; its loop (a join of {need}) got {values!r}"
        return
    values = _check_resolution(g, state.records, key, "started", state.trigger)
    assert c.values == tuple(values), f"{name(g, key)} started with {c.values!r}; its edges delivered {values!r}"
    assert c.input == (values[0] if len(values) == 1 else values), f"{name(g, key)} got input {c.input!r}"
    by_source: dict = {}
    for e, value in delivered(g, state.records, key, state.trigger):
        if value is not DEAD:
            by_source.setdefault(g.ids[e.source], []).append(value)
    expected = {src: vs[0] if len(vs) == 1 else vs for src, vs in by_source.items()}
    assert c.inputs == expected, f"{name(g, key)} got inputs by source {c.inputs!r}, not {expected!r}"


def _in(g, key) -> list:
    return [g.edges[ei] for ei in g.in_edges[key[0]]]


def _enters_a_quorum_loop(g, key) -> bool:
    """``key`` is a body root's first iteration of a loop with ``join: any`` or ``{at_least: K}``."""
    return bool(key[1]) and key[1][-1] == 0 and any(e.kind == LOOP_ENTRY and e.source in g.quorum for e in _in(g, key))


def _check_quorum(g, records, key, what: str, trigger=None) -> list:
    """A ``join: any`` or ``{at_least: K}`` node: ready once K edges delivered (the others may still
    be unresolved), skipped once fewer than K can still deliver."""
    need = g.quorum[key[0]]
    edges = delivered(g, records, key, trigger)
    values = [v for _, v in edges if v is not DEAD and v is not UNRESOLVED]
    still = sum(v is UNRESOLVED for _, v in edges)
    if what == SKIPPED:
        assert len(values) + still < need, f"{name(g, key)} was skipped though {len(values)} of its edges " \
                                           f"delivered and {still} may still (it needs {need})"
    elif what == "failed its select":
        assert SELECT_FAILED in values, f"{name(g, key)} failed a select, yet every select on its edges works"
    else:
        assert len(values) >= need, f"{name(g, key)} {what} with {len(values)} edges delivered; it needs {need}"
    return values


def _check_resolution(g, records, key, what: str, trigger=None) -> list:
    if key[0] in g.quorum:
        return _check_quorum(g, records, key, what, trigger)
    if not g.in_edges[key[0]]:
        return ["the trigger"]
    edges = delivered(g, records, key, trigger)
    waiting = [g.edge_label(e) for e, v in edges if v is UNRESOLVED]
    assert not waiting, f"{name(g, key)} {what} while its edges {waiting} had not resolved"
    values = [v for _, v in edges if v is not DEAD]
    if what == SKIPPED:
        assert not values, f"{name(g, key)} was skipped though its edges delivered {values!r}"
    elif what == "failed its select":
        assert SELECT_FAILED in values, f"{name(g, key)} failed a select, yet every select on its edges works"
    else:
        assert values, f"{name(g, key)} {what} though every incoming edge is dead"
        assert SELECT_FAILED not in values, f"{name(g, key)} {what} though a select on its edges failed"
    return values


def attempts_never_overlap(trace: Trace) -> None:
    """Attempts of an instance are numbered 1, 2, ...; one starts only when the last has ended and,
    if it timed out, once the runner confirmed it stopped. A succeeded instance never starts again.
    The one exception: after a crash, the resume re-dispatches exactly the attempts that were in flight."""
    g = trace.graph

    def on_start(step, c, ledger):
        key = key_of(g, c)
        if c.redispatch:
            assert ledger.orphans.pop(key, None) == c.attempt, \
                f"{name(g, key)} attempt {c.attempt} was re-dispatched, but it was not in flight when a process died"
            return
        assert c.attempt == ledger.started.get(key, 0) + 1, \
            f"{name(g, key)} started attempt {c.attempt} after attempt {ledger.started.get(key, 0)}"
        assert key not in ledger.inflight, f"{name(g, key)} started attempt {c.attempt} while attempt " \
                                           f"{ledger.inflight.get(key)} was in flight"
        stopping = [a for k, a in ledger.stopping if k == key]
        assert not stopping, f"{name(g, key)} started attempt {c.attempt} before timed-out attempt " \
                             f"{stopping} was confirmed stopped"
        before = step.before.records.get(key)
        assert before is None or before.status in (PENDING, WAITING), \
            f"{name(g, key)} started attempt {c.attempt} though it was {before.status}"

    def after_step(step, ledger):
        lost = [name(g, k) for k in ledger.orphans]
        assert not lost, f"{lost} were in flight when the process died and were not re-dispatched on resume"

    ledger = walk(trace, on_start=on_start, after_step=after_step)
    for key, record in trace.final.records.items():
        if g.nodes[key[0]].type not in NEVER_STARTED:  # a parked instance counts one attempt, never started
            assert record.attempts == ledger.started.get(key, 0), \
                f"{name(g, key)} records {record.attempts} attempts but started {ledger.started.get(key, 0)}"


def in_flight_never_exceeds_a_cap(trace: Trace) -> None:
    g = trace.graph

    def after_step(step, ledger):
        for cap, count in ledger.counts().items():
            assert count <= cap_size(g, cap), f"{count} attempts in flight under {cap} (size {cap_size(g, cap)}) " \
                                              f"after the step on {step.events}"

    walk(trace, after_step=after_step)


def no_ready_instance_waits_while_its_caps_have_room(trace: Trace) -> None:
    """Eagerness: what is ready starts at once unless a cap it is under is full (never a "level")."""
    g = trace.graph

    def after_step(step, ledger):
        if step.after.finished or step.after.draining:
            return
        counts = ledger.counts()
        for h in step.after.ready.values():
            for n, path in map(entry_key, heap.entries(h)):
                full = [cap for cap in ["run", *caps_of(g, (n, path))] if counts.get(cap, 0) >= cap_size(g, cap)]
                assert full, f"{name(g, (n, path))} waits in the ready queue though every cap it is under has room"

    walk(trace, after_step=after_step)


def priorities(g) -> dict:
    """Each node's priority key parts: its scope (the outermost foreach it runs per item of, or
    itself) by longest remaining path to a sink (cost estimates) and declaration order, then its
    own. Computed here from the definition, not taken from the graph."""
    remaining = [0.0] * len(g.nodes)
    for n in reversed(g.topo):
        remaining[n] = g.nodes[n].estimate + max((remaining[g.edges[e].target] for e in g.out_edges[n]), default=0.0)
    out = {}
    for n in range(len(g.nodes)):
        top = n
        while g.depth[top]:
            top = g.origin[top]
        out[n] = ((-remaining[top], top), (-remaining[n], n))
    return out


def ready_instances_start_in_priority_order(trace: Trace) -> None:
    """Critical path first, then declaration order, then item index, where an instance inside a
    fan-out ranks as its outermost foreach and, within it, by item before stage: a step's starts
    come in that order, and nothing it leaves ready outranks a start unless a cap of its own is full."""
    g = trace.graph
    rank = priorities(g)

    def prio(key):
        scope, own = rank[key[0]]
        return (*scope, key[1], *own)

    def after_step(step, ledger):
        starts = [key_of(g, c) for c in step.commands if type(c) is StartNode and not c.redispatch]
        order = [prio(k) for k in starts]
        assert order == sorted(order), f"starts out of priority order: {[name(g, k) for k in starts]}"
        if not starts or step.after.finished:
            return
        counts = ledger.counts()
        for h in step.after.ready.values():
            for n, path in map(entry_key, heap.entries(h)):
                left = (n, path)
                own_full = [c for c in caps_of(g, left) if counts.get(c, 0) >= cap_size(g, c)]
                for s in starts:
                    if prio(s) > prio(left):
                        same_queue = caps_of(g, s) == caps_of(g, left)
                        assert own_full and not same_queue, \
                            f"{name(g, s)} started while {name(g, left)}, which outranks it, stayed ready"

    walk(trace, after_step=after_step)


def nothing_happens_after_the_run_finished(trace: Trace) -> None:
    """The finishing step starts nothing and leaves nothing in flight or timed; later steps emit nothing."""
    g = trace.graph
    finished = []

    def after_step(step, ledger):
        if finished:
            late = [c for c in step.commands if type(c) is not Refused or c.reason != "the run has already finished"]
            assert not late, f"after the run finished, the core still emitted {late}"
            return
        if not any(type(c) is RunFinished for c in step.commands):
            return
        finished.append(step)
        starts = [c for c in step.commands if type(c) is StartNode]
        assert not starts, f"the step that finished the run also started {starts}"
        assert not ledger.inflight, f"the run finished with {[name(g, k) for k in ledger.inflight]} " \
                                    f"still in flight and never cancelled"
        assert not ledger.timers, f"the run finished with timers {sorted(ledger.timers)} never cancelled"
        assert step.commands[-1] == RunFinished(status=step.after.status, error=step.after.error), \
            "RunFinished is not the last command of its step, or disagrees with the state"

    walk(trace, after_step=after_step)
    assert finished or trace.stalled, "the trace ended while the run was still going"


def every_instance_ends_in_exactly_one_terminal_status(trace: Trace) -> None:
    g = trace.graph
    assert not trace.stalled, "the run stalled: nothing was left to report, yet it never finished"
    for s in trace.steps:
        for key, old, new in changed_records(s):
            assert not _terminal(old) or _a_late_result(old, new), \
                f"{name(g, key)} was {old.status}, then became {new.status}"
    final = trace.final
    records = final.records
    open_ = [f"{name(g, k)}: {r.status}" for k, r in records.items() if not _terminal(r)]
    assert not open_, f"the run ended {final.status} with instances not ended: {open_}"
    expected, actual = expected_instances(g, records), set(records.keys())
    assert actual == expected, f"missing records {sorted(name(g, k) for k in expected - actual)}, " \
                               f"unexpected records {sorted(name(g, k) for k in actual - expected)}"
    asked = {e.node for s in trace.steps for e in accepted(s) if type(e) is NodeCancelRequested
             or type(e) is ChildEnded and e.status == "cancelled"}  # (a child run cancelled by someone)
    _check_run_status(g, final, asked)


def _a_late_result(old, new) -> bool:
    """An ended record changes only by a late result: one more attempt in its history, marked late
    (and the lines it logged), nothing else."""
    return (len(new.history) == len(old.history) + 1 and new.history[-1].late
            and new._replace(history=old.history, logs=old.logs) == old)


def _check_run_status(g, final, asked: set) -> None:
    """``asked``: the nodes a node cancel was accepted for (their cancelled instances are no failure)."""
    statuses = [r.status for r in final.records.values()]
    failed = statuses.count(FAILED)
    # an instance a node cancel ended has the error ("cancelled", reason); one the run's end closed
    # has none, or the error of the attempt it was to retry
    by_request = [r for r in final.records.values() if r.status == CANCELLED and r.error and r.error.type == "cancelled"]
    for r in by_request:
        assert r.node in asked or _loop_ended_under(g, final.records, r) or _by_control_flow(r), \
            f"{r.node}{list(r.item)} was cancelled by request, yet nobody asked to cancel it"
    ended_by = [r for r in final.records.values() if r.status == SUCCEEDED and g.nodes[g.index[r.node]].type == "end"]
    if ended_by:  # an end node ended the run: what had not ended was cancelled, a failure under continue stays
        assert final.status == "succeeded" and final.error is None, f"an end ran, yet the run is {final.status}"
        assert len(ended_by) == 1, f"{len(ended_by)} end nodes succeeded; the first ends the run"
        assert final.finished_at == ended_by[0].finished_at, "the run did not end when its end node ran"
    if final.status == "succeeded":
        allowed = {SUCCEEDED, SKIPPED} | ({CANCELLED} if by_request or ended_by else set()) \
            | ({FAILED} if ended_by and not g.fail_fast else set())
        assert set(statuses) <= allowed, f"a succeeded run has records {sorted(set(statuses))}"
        assert ended_by or statuses.count(CANCELLED) == len(by_request), \
            "a succeeded run has instances cancelled by no request"
    elif final.status == "failed":
        assert failed >= 1, "the run failed though no instance failed"
        failures = [r for r in final.records.values() if r.status == FAILED]
        assert final.error.node in {r.node for r in failures}, f"the run's error {final.error} names no failure"
        if g.fail_fast:
            failed -= len([r for r in failures if _failed_its_loop(g, final.records, r)])
            assert failed == 1, f"fail-fast ended the run with {failed} failed instances, not one"
            assert final.finished_at == failures[0].finished_at, "fail-fast: the run did not end with its failure"
    elif final.status == "cancelled":
        assert CANCELLED in statuses or not statuses, "a cancelled run with no cancelled instance"
    ended = [r.finished_at for r in final.records.values() if r.finished_at is not None]
    assert final.finished_at >= max(ended, default=final.started_at), "the run ended before one of its instances"
    for r in final.records.values():
        if r.started_at is not None and r.finished_at is not None:
            assert r.started_at <= r.finished_at, f"{r.node}{list(r.item)} finished before it started"
        if r.started_seq is not None and r.finished_seq is not None:
            assert r.started_seq < r.finished_seq, f"{r.node}{list(r.item)}: finished_seq before started_seq"


def _loop_key_of(g, record):
    """The key of the loop instance a body instance's record is part of, or None outside a body."""
    n = g.index[record.node]
    loop = g.loop_of[n] if g.loop_of else -1
    return None if loop < 0 else (loop, tuple(record.item)[:g.depth[loop]])


def _failed_its_loop(g, records, record) -> bool:
    """A failed body instance whose failure failed its loop (passed up: one failure, not two)."""
    key = _loop_key_of(g, record)
    return key is not None and records[key].status == FAILED and record.node in records[key].error.message


def _loop_ended_under(g, records, record) -> bool:
    """A body instance cancelled because its loop ended (failed or cancelled) while it was open."""
    key = _loop_key_of(g, record)
    return key is not None and records[key].status in (FAILED, CANCELLED) and "its loop" in record.error.message


def _by_control_flow(record) -> bool:
    """Cancelled by a ``cancel_rest`` or a ``cancel`` list (whose reasons say so), not by a person."""
    return "(cancel_rest)" in record.error.message or "(its cancel list)" in record.error.message


def _delivered_before(g, records, position, k) -> list:
    """The input edges of ``k`` that delivered before it ran: a source of theirs comes before it in
    the sequence, or none succeeded at all (a gather of a fan-out that expanded to no items)."""
    out = []
    for ei in g.in_edges[k[0]]:
        e = g.edges[ei]
        value = edge_value(g, records, e, k[1])
        if value is DEAD or value is UNRESOLVED:
            continue
        sources = [position[src] for src in edge_sources(g, records, e, k[1]) if src in position]
        if not sources or min(sources) < position[k]:
            out.append(e)
    return out


def sequence_is_a_linear_extension_of_the_graph(trace: Trace) -> None:
    g = trace.graph
    records = trace.final.records
    seq = sequence_keys(trace.final)
    succeeded = {k for k, r in records.items() if r.status == SUCCEEDED}
    assert len(seq) == len(set(seq)), "an instance appears twice in the sequence"
    assert set(seq) == succeeded, f"the sequence is not the succeeded instances: " \
                                  f"{sorted(name(g, k) for k in set(seq) ^ succeeded)}"
    position = {k: i for i, k in enumerate(seq)}
    for k in seq:
        if k[0] in g.quorum:  # a join of K: the K inputs it took come before it; the others may come after
            assert len(_delivered_before(g, records, position, k)) >= g.quorum[k[0]], \
                f"{name(g, k)} comes before the inputs it joined"
            continue
        for ei in g.in_edges[k[0]]:
            if g.edges[ei].index in g.gather_quorum:
                continue  # an at_least gather ignores the items that end after it delivered
            for src in edge_sources(g, records, g.edges[ei], k[1]):
                if src in position:
                    assert position[src] < position[k], f"{name(g, src)} comes after {name(g, k)}, which it feeds"
    finished = [records[k].finished_seq for k in seq]
    assert finished == sorted(finished), "the sequence is not the order in which completions were processed"


def step_never_mutates_the_state_it_is_given(trace: Trace) -> None:
    assert trace.snapshots is not None, "drive with snapshots=True"
    for i, (s, taken) in enumerate(zip(trace.steps, trace.snapshots)):
        assert frozen_bytes(s.before) == taken, f"the state given to step {i} changed afterwards"


def replaying_the_batches_rebuilds_the_state(trace: Trace) -> None:
    """Of the whole log, and of the log so far at each crash (the driver resumed from that replay)."""
    batches = [s.events for s in trace.steps]
    prints = [fingerprint(s.commands) for s in trace.steps]
    rebuilt = replay(trace.graph, batches, prints)
    _same_state(trace.graph, rebuilt, trace.final, "replaying the logged batches")
    for i, s in enumerate(trace.steps[1:], 1):
        if any(type(e) is Resumed for e in s.events):
            _same_state(trace.graph, s.before, trace.steps[i - 1].after, f"replaying the {i} batches before a crash")


def _same_state(g, rebuilt, live, what: str) -> None:
    differ = sorted(name(g, k) for k in set(rebuilt.records.keys()) | set(live.records.keys())
                    if rebuilt.records.get(k) != live.records.get(k))
    assert not differ, f"{what} gives other records for {differ}"
    assert rebuilt == live, f"{what} gives the same records but another state"


def children_end_their_subworkflow_instances(trace: Trace) -> None:
    """A ``subworkflow`` instance asks for its child run when it parks and again at each resume
    while it waits; the child's end ends it (succeeded with the child's ports, failed with the
    child's error, or cancelled), and it ends no other way without asking for the child's cancel:
    then it is cancelled, or failed with ``timeout`` once the node's timeout passed since it parked."""
    g = trace.graph
    for s in trace.steps:
        asked = {key_of(g, c) for c in s.commands if type(c) is StartChild}
        cancelled = {key_of(g, c) for c in s.commands if type(c) is CancelChild}
        resumed = any(type(e) is Resumed for e in s.events)
        for key in s.after.children.keys():
            if resumed or key not in s.before.children:
                assert key in asked, f"{name(g, key)} waits for its child run but did not ask for it"
        ended = {}
        refused = {c.stimulus for c in s.commands if type(c) is Refused}
        for i, e in enumerate(s.events):
            stimulus = f"{s.before.steps}.{i}"
            key = key_of(g, e) if type(e) is ChildEnded and stimulus not in refused else None
            if key is not None and key in s.before.children and key not in ended:
                ended[key] = (e, stimulus)
        for key, (e, stimulus) in list(ended.items()):
            r = s.after.records[key]
            if r.stimulus != stimulus:  # an earlier event of the batch ended it (a cancel, its timeout): the child's end came late
                assert key in cancelled and _stopped_waiting(g, key, r), f"{name(g, key)}: child ended late, yet {r}"
                continue
            if e.status == "succeeded":
                assert r.status == SUCCEEDED and r.ports == e.ports, f"{name(g, key)}: child succeeded, yet {r}"
            elif e.status == "failed":
                assert r.status == FAILED and tuple(r.error[:2]) == (e.error_type, e.message), \
                    f"{name(g, key)}: child failed with {e.message!r}, yet {r}"
            else:
                assert r.status == CANCELLED and r.error.type == "cancelled", f"{name(g, key)}: child cancelled, yet {r}"
        for key in s.before.children.keys():
            if key not in s.after.children and key not in ended:
                assert key in cancelled, f"{name(g, key)} stopped waiting for its child run without cancelling it"
                r = s.after.records[key]
                assert _stopped_waiting(g, key, r), f"{name(g, key)} stopped waiting for its child run: {r}"


def _stopped_waiting(g, key, r) -> bool:
    """How a subworkflow instance may end other than by its child's end: cancelled, or failed with
    ``timeout`` once the node's timeout passed since it parked (its child_timeout timer fired)."""
    timeout = g.nodes[key[0]].timeout
    return r.status == CANCELLED or (r.status == FAILED and r.error.type == "timeout" and timeout is not None
                                     and r.finished_at >= r.started_at + timeout - 1e-9)


def waits_end_answered_or_timed_out(trace: Trace) -> None:
    """A ``wait`` or ``hil`` instance is announced when it parks and again at each resume while it
    waits; it ends with the answer it was given (on its chosen port and ``result``; a ``wait``'s on
    ``completed``), or once its timeout has passed with its input on ``timeout``; never otherwise."""
    g = trace.graph
    answers: dict = {}
    for s in trace.steps:
        asked = {key_of(g, c) for c in s.commands if type(c) is AwaitInput}
        resumed = any(type(e) is Resumed for e in s.events)
        for key, r in s.after.records.items():
            parked = r.status == WAITING and g.nodes[key[0]].type in WAITING_TYPES
            if parked and (resumed or s.before.records.get(key) is None):
                assert key in asked, f"{name(g, key)} waits for an answer but was not announced"
        for e in accepted(s):
            if type(e) is InputProvided:
                answers.setdefault(key_of(g, e), e)
    for key, r in trace.final.records.items():
        node = g.nodes[key[0]]
        if node.type not in WAITING_TYPES or r.status != SUCCEEDED:
            continue
        answer = answers.get(key)
        timeout = node.config.get("timeout")
        if answer is not None:
            assert timeout is None or answer.at < r.started_at + float(timeout), \
                f"{name(g, key)} was answered at {answer.at}, after its timeout was due at {r.started_at + timeout}"
            port = "completed" if node.type == "wait" else answer.port
            expected = {"result": answer.value, **({port: answer.value} if port else {})}
            assert r.ports == expected, f"{name(g, key)} was answered {answer}, yet ended with {r.ports}"
        else:
            assert timeout is not None, f"{name(g, key)} has no timeout and no answer, yet ended with {r.ports}"
            assert set(r.ports) == {"timeout"}, f"{name(g, key)} timed out, yet ended with ports {r.ports}"
            assert r.finished_at - r.started_at >= float(timeout) - 1e-9, \
                f"{name(g, key)} timed out after {r.finished_at - r.started_at} s, before its {timeout} s"


def every_item_instance_runs_exactly_once(trace: Trace) -> None:
    """Without failures (other than flaky attempts, which are retried) or timeouts: each instance a
    fan-out expands to starts each of its attempts once, and succeeds."""
    g = trace.graph
    starts: dict = {}
    for s in trace.steps:
        for c in s.commands:
            if type(c) is StartNode and not c.redispatch:  # a re-dispatch after a crash is the documented exception
                starts.setdefault(key_of(g, c), []).append(c.attempt)
    if any(r.error and r.error.type in ("loop_limit", "loop_body") for r in trace.final.records.values()):
        return  # a loop that ran out of iterations, or whose body routed around its sink, fails the run
    for key in expected_instances(g, trace.final.records):
        record = trace.final.records[key]
        runs = starts.get(key, [])
        assert record.status in (SUCCEEDED, SKIPPED), f"{name(g, key)} ended {record.status} in a run without failures"
        is_task = g.nodes[key[0]].type not in NEVER_STARTED
        want = list(range(1, record.attempts + 1)) if record.status == SUCCEEDED and is_task else []
        assert runs == want, f"{name(g, key)} ({record.status}) started attempts {runs}, not {want}"


def gathers_receive_item_results_in_item_order(trace: Trace) -> None:
    g = trace.graph
    for s in trace.steps:
        for c in s.commands:
            if type(c) is not StartNode:
                continue
            key = key_of(g, c)
            if key[0] in g.quorum:
                continue  # its values come in the order they arrived (_check_start_inputs checks them)
            got = iter(c.values)
            for e, value in delivered(g, s.after.records, key):
                if value is DEAD or value is UNRESOLVED or value is SELECT_FAILED:
                    continue
                arrived = next(got, None)
                if e.kind == GATHER:
                    assert arrived == value, f"{name(g, key)} gathered {arrived!r} over {g.edge_label(e)}; " \
                                             f"its items' results in item order are {value!r}"


def mapped_instances_start_after_their_own_source_item(trace: Trace) -> None:
    g = trace.graph
    for s in trace.steps:
        for key, old, new in changed_records(s):
            if new.started_seq is None or (old is not None and old.started_seq is not None):
                continue  # only an instance's first start or park
            if key[0] in g.quorum:
                continue  # a join of K starts once K inputs delivered: a map edge among the others may be open
            for ei in g.in_edges[key[0]]:
                e = g.edges[ei]
                if e.kind != MAP:
                    continue
                src = s.after.records.get((e.source, key[1]))
                assert _terminal(src), f"{name(g, key)} started before {name(g, (e.source, key[1]))} ended"
                if src.finished_seq is not None:
                    assert src.finished_seq < new.started_seq, \
                        f"{name(g, key)} started before {name(g, (e.source, key[1]))} finished"


def nothing_completes_before_its_delay(trace: Trace) -> None:
    g = trace.graph
    for key, record in trace.final.records.items():
        node = g.nodes[key[0]]
        if node.type == "delay" and record.status == SUCCEEDED:
            took = record.finished_at - record.started_at
            assert took >= float(node.config["seconds"]) - 1e-9, \
                f"delay {name(g, key)} of {node.config['seconds']} s completed after {took} s"


def a_timed_out_attempt_never_succeeds(trace: Trace) -> None:
    g = trace.graph
    timed_out = {}
    for s in trace.steps:
        for c in s.commands:
            if type(c) is CancelNode and c.reason == "timeout":
                timed_out[(key_of(g, c), c.attempt)] = s
                _check_timeout_recorded(g, s.after.records.get(key_of(g, c)), c)
    for key, record in trace.final.records.items():
        assert record.status != SUCCEEDED or (key, record.attempts) not in timed_out, \
            f"{name(g, key)} succeeded with attempt {record.attempts}, which had timed out"


def _check_timeout_recorded(g, record, c) -> None:
    node = g.nodes[g.index[c.node]]
    assert record is not None, f"{c.node} timed out but has no record"
    assert record.status in (WAITING, FAILED, CANCELLED), f"{c.node} timed out but is {record.status}"
    if record.status == FAILED:
        error_type, message = record.error.type, record.error.message
        assert error_type == "timeout", f"{c.node} timed out but failed with {record.error}"
        assert f"{node.timeout:g} s" in message, f"the timeout message {message!r} does not name the limit"


def late_results_are_kept_and_nothing_is_invented(trace: Trace) -> None:
    """A result that comes after its attempt was told to stop (a cancel, a timeout, the run's end)
    is kept in the record's history, marked late, once; a late entry is always such a result.
    (Checked on runs without a resume: a re-dispatched attempt keeps its number.)"""
    g = trace.graph
    if any(type(e) is Resumed for s in trace.steps for e in s.events):
        return
    stopped: dict = {}  # (key, attempt) -> the step that told it to stop
    results: dict = {}  # (key, attempt) -> [(step index, event)] in log order
    for i, s in enumerate(trace.steps):
        for e in s.events:
            if type(e) in (NodeSucceeded, NodeFailed):
                results.setdefault(((g.index[e.node], tuple(e.item)), e.attempt), []).append((i, e))
        for c in s.commands:
            if type(c) is CancelNode:
                stopped.setdefault((key_of(g, c), c.attempt), i)
    late = {}
    for key, record in trace.final.records.items():
        for a in record.history:
            if a.late:
                assert (key, a.attempt) not in late, f"{name(g, key)}: two late results of attempt {a.attempt}"
                late[(key, a.attempt)] = a
    for (key, attempt), a in late.items():
        assert (key, attempt) in stopped, f"{name(g, key)}: attempt {attempt} has a late result but was never stopped"
        came = [e for _, e in results.get((key, attempt), ())]
        assert any(e.at == a.finished_at and (type(e) is NodeSucceeded) == (a.status == SUCCEEDED) for e in came), \
            f"{name(g, key)}: the late result {a} of attempt {attempt} matches no result in the log"
    for (key, attempt), told in stopped.items():
        after = [e for i, e in results.get((key, attempt), ()) if i >= told]  # (a result in the step that
        # told it to stop came after what caused the stop: one before would have ended the attempt)
        if after:
            kept = late.get((key, attempt))
            assert kept is not None and kept.finished_at == after[0].at, \
                f"{name(g, key)}: attempt {attempt} was stopped, then its result came, and it is not kept as late"


def records_summary(state) -> dict:
    """What must not depend on completion order: each instance's status, ports, attempts, error."""
    return {k: (r.status, r.ports, r.attempts, r.error) for k, r in state.records.items()}



def nothing_starts_while_the_driver_drains(trace: Trace) -> None:
    """From a ``Draining`` until a ``Resumed``, no attempt starts (what becomes ready waits)."""
    g = trace.graph
    for s in trace.steps:
        if s.after.draining:
            started = [name(g, key_of(g, c)) for c in s.commands if type(c) is StartNode]
            assert not started, f"{started} started while the driver was draining"


def node_cancels_end_what_had_not_ended(trace: Trace) -> None:
    """An accepted node cancel ends every instance it names that had not ended (reached or not)
    ``cancelled`` and none of them starts from then on; what had ended stays as it was."""
    g = trace.graph
    final = trace.final.records
    for i, s in enumerate(trace.steps):
        for e in accepted(s):
            if type(e) is not NodeCancelRequested:
                continue
            n = g.index[e.node]
            named = {k for k in final.keys() if k[0] == n and (e.item is None or k[1] == tuple(e.item))}
            assert e.item is None or named, f"a cancel of {e.node}{list(e.item)} was accepted, but it never existed"
            for key in named:
                before = s.before.records.get(key)
                if _terminal(before):
                    assert final[key] == before, f"{name(g, key)} had ended {before.status}, yet a cancel changed it"
                    continue
                assert final[key].status == CANCELLED, f"{name(g, key)} was cancelled, yet ended {final[key].status}"
                late = [t for t in trace.steps[i:] for c in t.commands if type(c) is StartNode and not c.redispatch
                        and key_of(g, c) == key]
                assert not late, f"{name(g, key)} started after it was cancelled"


def requests_from_people_are_refused_with_a_reason_never_raised(trace: Trace) -> None:
    """Every ``Refused`` names a request from a person in its own step (an answer or a cancel), once;
    after the run ended every such request is refused."""
    g = trace.graph
    people = (InputProvided, CancelRequested, NodeCancelRequested)
    for s in trace.steps:
        ids = {f"{s.before.steps}.{i}": e for i, e in enumerate(s.events)}
        refused = [c.stimulus for c in s.commands if type(c) is Refused]
        assert len(refused) == len(set(refused)), f"an event was refused twice: {refused}"
        for stimulus in refused:
            assert type(ids.get(stimulus)) in people, f"{stimulus} was refused, but it is {ids.get(stimulus)}"
        if s.before.finished:
            asked = [i for i, e in ids.items() if type(e) in people]
            assert sorted(refused) == sorted(asked), f"requests {asked} to a finished run, refused {refused}"
        for c in s.commands:
            if type(c) is Refused and "timed out at" in c.reason:
                e = ids[c.stimulus]
                assert type(e) is InputProvided and s.after.records[key_of(g, e)].ports.keys() == {"timeout"}, \
                    f"{c.reason}, yet {e.node} did not take its timeout port"
