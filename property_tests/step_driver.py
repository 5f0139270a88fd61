"""A runner stand-in that feeds ``scheduler_core.step`` directly, with a schedule choosing what happens.

The driver keeps what a runner would: the attempts it was told to start (an attempt with a
deadline sometimes overruns it), the timers it was asked for, the cancelled attempts it still owes
a ``CancelConfirmed`` (a runner takes a while to stop one, so the retry may fall due first; the
late result may still come), the instances waiting for an answer. At each turn a ``Schedule``
picks the next thing to report: a completion or failure, a timer falling due (time jumps to it:
a timeout, a retry, a delay, a wait's timeout), a confirmation, a late result of a cancelled
attempt, an answer to a waiting ``wait`` or ``hil`` (in time, or after its timeout was due: an
answer that sat in the inbox while nobody drove the run), or a duplicate of something already
reported (an answer too, which the core refuses); sometimes several in one batch. A scenario may
also let the driving process crash at random steps: everything the process held is lost, a new
one rebuilds the state from the logged batches (``replay``) and resumes the run (``Resumed``). It
may let people cancel nodes or items (``NodeCancelRequested``, at random, also ones with nothing
left to cancel, before the run starts and after it ended), cancel the run while it is still queued,
or let the driver stop (``Draining``: it reports what it has, then another takes over as after a
crash). Time only moves forward, and every timer due by an event's time fires before that event,
as in the real drive loop (but for the one a late answer comes after). What instances do and what
people answer is a ``Behaviour``: a pure function of the instance, attempt and input.

The result is a ``Trace`` of every step (events, state before and after, commands) that the
invariants in ``invariants.py`` read, and that prints as a literal reproduction.
"""
from __future__ import annotations

import json
import math
import pickle
import random
from functools import partial

import attrs
from hypothesis import strategies as st

import scheduler_core
from adapters.store import encode_event
from scheduler_core import (AwaitInput, CancelChild, CancelConfirmed, CancelNode, CancelRequested, CancelTimer,
                            ChildEnded, Draining, StartChild,
                            InputProvided, NodeCancelRequested, NodeFailed, NodeSucceeded, Resumed, RunFinished,
                            RunStarted, StartNode, StartTimer, State, TimerFired, TimerKind, compile_workflow,
                            fingerprint, initial_state, input_problem, replay, step)

from scheduler_core.lifecycle import TERMINAL

from .pure_nodes import digest
from .workflows import PYTHON_PORTS

FAST, SLOW = (0, 0.5, 1), (2, 4, 8)  # how long an attempt takes, in seconds; slow ones are rarer
OVERRUNS = (0.5, 2)  # how far past its deadline an attempt that overruns it would finish
STOPPING = (0, 0.5, 3)  # how long a runner takes to stop a cancelled attempt
MAX_STEPS = 5000
MAX_CRASHES = 2  # per run: each crash replays the whole log so far
MAX_DRAINS = 2  # per run: each hand-over replays the whole log so far, as a crash does
MAX_NODE_CANCELS = 3  # per run: more would leave little of most runs to check
LATE = (0, 1, 30)  # how long after its wait's timeout was due a late answer comes


@attrs.frozen
class Behaviour:
    """What a started attempt reports: ports, or a failure. Pure, so any order gives the same answers."""

    seed: int = 0
    fail_percent: int = 0
    final_failures: bool = True  # False: only attempts that will be retried fail

    def outcome(self, graph, cmd: StartNode):
        """The attempt's ports (a dict), or ``(error_type, message)``."""
        rng = random.Random(digest(self.seed, cmd.node, cmd.item, cmd.attempt, cmd.input))
        node = graph.nodes[graph.index[cmd.node]]
        if cmd.attempt <= (node.config.get("params") or {}).get("flaky_attempts", 0):
            return ("ConnectionError", f"{cmd.node} attempt {cmd.attempt} is flaky")  # always retried
        may_fail = self.final_failures or cmd.attempt < node.retry.max_attempts
        if may_fail and rng.randrange(100) < self.fail_percent:
            return ("Boom", f"{cmd.node} attempt {cmd.attempt} failed")
        if cmd.type == "fail":
            return ("fail", node.config.get("message", "failed"))
        if cmd.type == "if":
            return {rng.choice(("true", "false")): cmd.input}
        if cmd.type == "foreach":
            items = [rng.randrange(100) for _ in range(rng.choice((0, 1, 2, 2, 3)))]
            return {"result": items, "iteration": items}
        if cmd.type == "merge":
            return {"result": list(cmd.values)}
        if cmd.type == "noop":
            return {"result": cmd.input}
        return {p: rng.randrange(1000) for p in PYTHON_PORTS if rng.randrange(4)}

    def child_end(self, ask: StartChild) -> dict:
        """How the child run of a subworkflow instance ends: what a ``ChildEnded`` says besides the
        instance (it fails, or is cancelled by someone, only where attempts may fail)."""
        rng = random.Random(digest(self.seed, "child", ask.node, ask.item))
        roll = rng.randrange(100)
        if self.final_failures and roll < self.fail_percent:
            return {"status": "failed", "error_type": "subworkflow", "message": f"child of {ask.node} failed"}
        if self.final_failures and roll < 2 * self.fail_percent:
            return {"status": "cancelled", "error_type": "cancelled", "message": "child run cancelled"}
        return {"status": "succeeded", "ports": {"result": rng.randrange(1000)}}

    def answer(self, ask: AwaitInput) -> tuple:
        """What a person answers a waiting instance: ``(port, value)``, a choice when it offers some."""
        rng = random.Random(digest(self.seed, "answer", ask.node, ask.item))
        return (rng.choice(ask.choices) if ask.choices else None), rng.randrange(1000)


class FirstSchedule:
    """Always the first choice: completions in start order, one event per batch, nothing odd."""

    def pick(self, n: int) -> int:
        return 0

    def chance(self, k: int) -> bool:
        return False


class DrawnSchedule:
    """Choices drawn by hypothesis (``st.data()`` or a composite's ``draw``), so a failing
    interleaving shrinks towards first choices."""

    def __init__(self, source):
        self.draw = getattr(source, "draw", source)

    def pick(self, n: int) -> int:
        return self.draw(st.integers(0, n - 1)) if n > 1 else 0

    def chance(self, k: int) -> bool:
        return self.draw(st.integers(0, k - 1)) == k - 1


@attrs.frozen
class Step:
    events: tuple
    before: State
    after: State
    commands: tuple


@attrs.frozen
class Trace:
    definition: dict
    graph: object
    steps: tuple
    stalled: bool  # the run neither finished nor had anything left to report
    snapshots: tuple | None = None  # frozen_bytes of each step's state before it, taken then

    @property
    def final(self) -> State:
        return self.steps[-1].after

    def reproduction(self) -> str:
        """The workflow and every batch of events, as literal JSON a unit test can paste."""
        batches = "\n".join(json.dumps([encode_event(e) for e in s.events], default=repr) for s in self.steps)
        return f"workflow = {json.dumps(self.definition)}\nbatches (one per line):\n{batches}"


def frozen_bytes(state: State) -> bytes:
    """A deep snapshot of everything a state holds (its graph aside)."""
    return pickle.dumps(tuple(getattr(state, f.name) for f in attrs.fields(State) if f.name != "graph"))


class Driver:
    def __init__(self, definition: dict, graph, behaviour: Behaviour, schedule, *, cancel_at=None,
                 crash_odds=None, snapshots=False, queued_cancel=False, node_cancel_odds=None, drain_odds=None):
        self.definition = definition
        self.graph = graph
        self.behaviour = behaviour
        self.schedule = schedule
        self.cancel_at = cancel_at
        self.crash_odds = crash_odds
        self.crashes_left = MAX_CRASHES
        self.queued_cancel = queued_cancel
        self.node_cancel_odds = node_cancel_odds
        self.drain_odds = drain_odds
        self.drains_left = MAX_DRAINS
        self.node_cancels_left = MAX_NODE_CANCELS
        self.snapshots = [] if snapshots else None
        self.state = initial_state(graph)
        self.now = 0.0
        self.finished = False
        self.running: dict = {}  # (node, item, attempt) -> (StartNode, started at, due to finish at)
        self.zombies: dict = {}  # cancelled attempts whose late result may still come
        self.to_confirm: dict = {}  # cancelled attempts owed a CancelConfirmed -> (CancelNode, stopped at)
        self.awaiting: dict = {}  # (node, item) -> AwaitInput, instances a person may answer
        self.children: dict = {}  # (node, item) -> StartChild, child runs going on
        self.timers: dict = {}  # timer id -> (due, order asked)
        self.timers_asked: list = []
        self.reported: list = []  # events already delivered, for duplicates
        self.steps: list = []

    def run(self, trigger=0) -> Trace:
        if self.node_cancel_odds and self.schedule.chance(self.node_cancel_odds):
            self.deliver([self.node_cancel()])  # asked while the run is still queued
        if self.queued_cancel:
            self.deliver([CancelRequested(at=0.0, reason="cancelled while queued by the property test")])
        else:
            self.deliver([RunStarted(at=0.0, trigger=trigger)])
        while not self.finished and len(self.steps) < MAX_STEPS:
            batch = self.next_batch()
            if not batch:
                break
            self.deliver(batch)
        for _ in range(self.schedule.pick(4) if self.finished else 0):
            batch = self.next_batch()  # late results, confirmations, duplicates and requests after the end
            if batch:
                self.deliver(batch)
        snapshots = tuple(self.snapshots) if self.snapshots is not None else None
        return Trace(self.definition, self.graph, tuple(self.steps), stalled=not self.finished, snapshots=snapshots)

    # -- choosing what happens ------------------------------------------------------------------

    def next_batch(self) -> list:
        if self.crash_odds and self.crashes_left and not self.finished and self.schedule.chance(self.crash_odds):
            self.crashes_left -= 1
            return self.crash_and_resume()
        draining = self.state.draining and not self.finished
        if draining and self.schedule.chance(3):
            return self.hand_over()  # the draining driver stopped; another takes over
        events = []
        if self.cancel_at is not None and len(self.steps) == self.cancel_at and not self.finished:
            events.append(CancelRequested(at=self.now, reason="cancelled by the property test"))
        if self.node_cancel_odds and self.node_cancels_left and self.schedule.chance(self.node_cancel_odds):
            events.append(self.node_cancel())
        if self.drain_odds and self.drains_left and not self.finished and self.schedule.chance(self.drain_odds):
            self.drains_left -= 1
            events.append(Draining(at=self.now))
        for _ in range(4):
            # Once a timer fired in this batch, it may have ended a wait the driver does not know of yet.
            actions = self.actions(answers=not any(type(e) is TimerFired for e in events))
            if not actions:
                break
            events.extend(actions[self.schedule.pick(len(actions))]())
            if not self.schedule.chance(3):
                break
        if draining and not events:
            return self.hand_over()  # it has nothing left to report: another driver takes over
        return events

    def node_cancel(self) -> NodeCancelRequested:
        """A person cancels a node: all of it, one of its instances (reached or not), or an item it
        never has."""
        self.node_cancels_left -= 1
        g, state = self.graph, self.state
        recorded = {m for m, _ in state.records.keys()}
        started = sorted({m for (m, _), r in state.records.items() if r.status not in TERMINAL})
        not_reached = [m for m in range(len(g.ids)) if m not in recorded]
        nodes = started + not_reached + list(range(len(g.ids)))  # mostly nodes with something left to cancel
        n = nodes[self.schedule.pick(len(nodes))]
        paths = {p for m, p in state.records.keys() if m == n}
        o = g.origin[n]
        paths.update(p + (i,) for (m, p), size in state.scopes.items() if m == o for i in range(size))
        choices = [None, *sorted(paths), (7,)]
        return NodeCancelRequested(node=g.ids[n], item=choices[self.schedule.pick(len(choices))], at=self.now,
                                   reason="node cancelled by the property test")

    def crash_and_resume(self) -> list:
        """The driving process dies: what it ran, owed, timed and asked is gone, and so is its
        state. A new one rebuilds the state from the logged batches (checking the core decides as
        it did) and resumes the run."""
        self.state = replay(self.graph, [s.events for s in self.steps], [fingerprint(s.commands) for s in self.steps])
        self.validate()
        return self.hand_over()

    def hand_over(self) -> list:
        """The driving process is gone (it drained and stopped, or died): what it ran, owed, timed
        and asked is gone with it. Another takes the run over (with the same state: a crash above
        checks that replaying the log rebuilds it) and resumes it."""
        for pending in (self.running, self.zombies, self.to_confirm, self.timers, self.awaiting, self.children):
            pending.clear()
        self.reported.clear()
        self.now += FAST[self.schedule.pick(len(FAST))]
        return [Resumed(at=self.now)]

    def actions(self, answers: bool = True) -> list:
        acts = [partial(self.complete, key) for key in self.running]
        if self.timers and self.next_timer_due() <= min((r[2] for r in self.running.values()), default=math.inf):
            acts.append(self.fire_next_timer)
        acts += [partial(self.confirm, key) for key in self.to_confirm]
        acts += [partial(self.late_result, key) for key in self.zombies]
        if answers:
            acts += [partial(self.answer, key) for key in self.awaiting]
        acts += [partial(self.end_child, key) for key in self.children]
        if self.reported and self.schedule.chance(6):
            acts.append(self.duplicate)
        return acts

    def complete(self, key) -> list:
        return self.report(*self.running.pop(key))

    def late_result(self, key) -> list:
        return self.report(*self.zombies.pop(key))

    def report(self, cmd: StartNode, started_at: float, finish: float) -> list:
        at = max(self.now, finish)
        events = self.timers_due(at)
        self.now = at
        common = dict(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=at, started_at=started_at)
        outcome = self.behaviour.outcome(self.graph, cmd)
        if isinstance(outcome, tuple):
            events.append(NodeFailed(**common, error_type=outcome[0], message=outcome[1]))
        else:
            events.append(NodeSucceeded(**common, ports=outcome))
        return events

    def next_timer_due(self) -> float:
        return min(self.timers.values())[0]

    def fire_next_timer(self) -> list:
        return self.timers_due(max(self.now, self.next_timer_due()))

    def timers_due(self, until: float) -> list:
        due = sorted((t for t, (when, _) in self.timers.items() if when <= until), key=self.timers.get)
        events = []
        for tid in due:
            self.now = max(self.now, self.timers.pop(tid)[0])
            events.append(TimerFired(timer=tid, at=self.now))
        return events

    def confirm(self, key) -> list:
        """The runner reports the attempt stopped, no earlier than it took to stop it."""
        cmd, stopped = self.to_confirm.pop(key)
        at = max(self.now, stopped)
        events = self.timers_due(at)
        self.now = at
        events.append(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=at,
                                      abandoned=self.schedule.chance(4)))
        return events

    def answer(self, key) -> list:
        tid = self.wait_timeout(key)
        if tid is not None and not self.schedule.chance(3):  # mostly late: an answer in time is the usual case elsewhere
            return self.late_answer(key, tid)
        ask = self.awaiting.pop(key)
        port, value = self.behaviour.answer(ask)
        return [InputProvided(node=ask.node, item=ask.item, at=self.now, value=value, port=port)]

    def wait_timeout(self, key):
        """The timer that would end the wait of an instance that waits for an answer, if it has one."""
        ask = self.awaiting[key]
        tid = self.state.instance_timer.get((self.graph.index[ask.node], ask.item))
        if tid is not None and tid in self.timers and self.state.timers[tid].kind == TimerKind.WAIT_TIMEOUT:
            return tid
        return None

    def late_answer(self, key, tid) -> list:
        """An answer given after the wait's timeout was due (it sat in the inbox while nobody drove
        the run): every other timer due by then fires first, not that one."""
        ask = self.awaiting.pop(key)
        at = max(self.now, self.timers[tid][0] + LATE[self.schedule.pick(len(LATE))])
        due = self.timers.pop(tid)
        events = self.timers_due(at)
        self.timers[tid] = due  # the runner still holds it: the core drops it (CancelTimer) or ignores it
        self.now = at
        port, value = self.behaviour.answer(ask)
        return events + [InputProvided(node=ask.node, item=ask.item, at=at, value=value, port=port)]

    def end_child(self, key) -> list:
        """A child run ends, some time after the last event (its own timers do not concern its parent)."""
        ask = self.children.pop(key)
        at = self.now + FAST[self.schedule.pick(len(FAST))]
        events = self.timers_due(at)
        self.now = at
        return events + [ChildEnded(node=ask.node, item=ask.item, at=at, **self.behaviour.child_end(ask))]

    def duplicate(self) -> list:
        return [attrs.evolve(self.reported[self.schedule.pick(len(self.reported))], at=self.now)]

    # -- stepping ---------------------------------------------------------------------------------

    def deliver(self, events: list) -> None:
        before = self.state
        if self.snapshots is not None:
            self.snapshots.append(frozen_bytes(before))
        self.state, commands = step(before, events)
        self.validate()
        self.steps.append(Step(tuple(events), before, self.state, commands))
        # Requests from people are not repeated, but for answers, which the core refuses once the
        # instance no longer waits.
        self.reported.extend(e for e in events if not isinstance(e, (RunStarted, CancelRequested, Resumed,
                                                                     NodeCancelRequested, Draining)))
        for command in commands:
            self.carry_out(command)
        self.awaiting = {k: ask for k, ask in self.awaiting.items() if self.answerable(ask)}

    def answerable(self, ask: AwaitInput) -> bool:
        """Whether the instance still waits (a timeout or the run's end may have closed it): the
        engine's own check, which refuses an answer to anything else."""
        return input_problem(self.state, ask.node, ask.item, ask.choices[0] if ask.choices else None) is None

    def validate(self) -> None:
        """The core's own invariant checker, if it ships one (``scheduler_core.validate_state``)."""
        validate_state = getattr(scheduler_core, "validate_state", None)
        if validate_state is not None:
            validate_state(self.state)

    def carry_out(self, c) -> None:
        kind = type(c)
        if kind is StartNode:
            if c.deadline is not None and self.schedule.chance(2):  # overruns its deadline: it times out
                finish = c.deadline + OVERRUNS[self.schedule.pick(len(OVERRUNS))]
            else:
                durations = SLOW if self.schedule.chance(5) else FAST
                finish = self.now + durations[self.schedule.pick(len(durations))]
            self.running[(c.node, c.item, c.attempt)] = (c, self.now, finish)
        elif kind is CancelNode:
            key = (c.node, c.item, c.attempt)
            if key in self.running:
                self.zombies[key] = self.running.pop(key)
            self.to_confirm[key] = (c, self.now + STOPPING[self.schedule.pick(len(STOPPING))])
        elif kind is StartTimer:
            self.timers[c.timer] = (c.due, len(self.timers_asked))
            self.timers_asked.append(c.timer)
        elif kind is CancelTimer:
            self.timers.pop(c.timer, None)
        elif kind is RunFinished:
            self.finished = True
        elif kind is AwaitInput:
            self.awaiting[(c.node, c.item)] = c
        elif kind is StartChild:
            self.children[(c.node, c.item)] = c
        elif kind is CancelChild:
            self.children.pop((c.node, c.item), None)  # (a real child would end cancelled: the core ignores that)


def drive(definition, workflow, behaviour, schedule, **options) -> Trace:
    return Driver(definition, compile_workflow(workflow), behaviour, schedule, **options).run()
