"""A runner stand-in that feeds ``scheduler_core.step`` directly, with a schedule choosing what happens.

The driver keeps what a runner would: the attempts it was told to start (an attempt with a
deadline sometimes overruns it), the timers it was asked for, the cancelled attempts it still owes
a ``CancelConfirmed`` (a runner takes a while to stop one, so the retry may fall due first; the
late result may still come), the instances waiting for an answer. At each turn a ``Schedule``
picks the next thing to report: a completion or failure, a timer falling due (time jumps to it:
a timeout, a retry, a delay, a wait's timeout), a confirmation, a late result of a cancelled
attempt, an answer to a waiting ``wait`` or ``hil``, or a duplicate of something already
reported; sometimes several in one batch. A scenario may also let the driving process crash at
random steps: everything the process held is lost, a new one rebuilds the state from the logged
batches (``replay``) and resumes the run (``Resumed``). Time only moves forward, and every timer
due by an event's time fires before that event, as in the real drive loop. What instances do and
what people answer is a ``Behaviour``: a pure function of the instance, attempt and input.

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
from scheduler_core import (AwaitInput, CancelConfirmed, CancelNode, CancelRequested, CancelTimer, InputProvided,
                            NodeFailed, NodeSucceeded, Resumed, RunFinished, RunStarted, StartNode, StartTimer, State,
                            TimerFired, compile_workflow, fingerprint, initial_state, input_problem, replay, step)

from .pure_nodes import digest
from .workflows import PYTHON_PORTS

FAST, SLOW = (0, 0.5, 1), (2, 4, 8)  # how long an attempt takes, in seconds; slow ones are rarer
OVERRUNS = (0.5, 2)  # how far past its deadline an attempt that overruns it would finish
STOPPING = (0, 0.5, 3)  # how long a runner takes to stop a cancelled attempt
MAX_STEPS = 5000
MAX_CRASHES = 2  # per run: each crash replays the whole log so far


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
                 crash_odds=None, snapshots=False):
        self.definition = definition
        self.graph = graph
        self.behaviour = behaviour
        self.schedule = schedule
        self.cancel_at = cancel_at
        self.crash_odds = crash_odds
        self.crashes_left = MAX_CRASHES
        self.snapshots = [] if snapshots else None
        self.state = initial_state(graph)
        self.now = 0.0
        self.finished = False
        self.running: dict = {}  # (node, item, attempt) -> (StartNode, started at, due to finish at)
        self.zombies: dict = {}  # cancelled attempts whose late result may still come
        self.to_confirm: dict = {}  # cancelled attempts owed a CancelConfirmed -> (CancelNode, stopped at)
        self.awaiting: dict = {}  # (node, item) -> AwaitInput, instances a person may answer
        self.timers: dict = {}  # timer id -> (due, order asked)
        self.timers_asked: list = []
        self.reported: list = []  # events already delivered, for duplicates
        self.steps: list = []

    def run(self, trigger=0) -> Trace:
        self.deliver([RunStarted(at=0.0, trigger=trigger)])
        while not self.finished and len(self.steps) < MAX_STEPS:
            batch = self.next_batch()
            if not batch:
                break
            self.deliver(batch)
        for _ in range(self.schedule.pick(4) if self.finished else 0):
            batch = self.next_batch()  # late results, confirmations and duplicates after the end
            if batch:
                self.deliver(batch)
        snapshots = tuple(self.snapshots) if self.snapshots is not None else None
        return Trace(self.definition, self.graph, tuple(self.steps), stalled=not self.finished, snapshots=snapshots)

    # -- choosing what happens ------------------------------------------------------------------

    def next_batch(self) -> list:
        if self.crash_odds and self.crashes_left and not self.finished and self.schedule.chance(self.crash_odds):
            return self.crash_and_resume()
        events = []
        if self.cancel_at is not None and len(self.steps) == self.cancel_at and not self.finished:
            events.append(CancelRequested(at=self.now, reason="cancelled by the property test"))
        for _ in range(4):
            # Once a timer fired in this batch, it may have ended a wait the driver does not know of yet.
            actions = self.actions(answers=not any(type(e) is TimerFired for e in events))
            if not actions:
                break
            events.extend(actions[self.schedule.pick(len(actions))]())
            if not self.schedule.chance(3):
                break
        return events

    def crash_and_resume(self) -> list:
        """The driving process dies: what it ran, owed, timed and asked is gone, and so is its state. A
        new one rebuilds the state from the logged batches (checking the core decides as it did) and
        resumes the run."""
        self.crashes_left -= 1
        for pending in (self.running, self.zombies, self.to_confirm, self.timers, self.awaiting):
            pending.clear()
        self.reported.clear()
        self.state = replay(self.graph, [s.events for s in self.steps], [fingerprint(s.commands) for s in self.steps])
        self.validate()
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
        ask = self.awaiting.pop(key)
        port, value = self.behaviour.answer(ask)
        return [InputProvided(node=ask.node, item=ask.item, at=self.now, value=value, port=port)]

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
        # An answer is not repeated: the engine refuses one to an instance that no longer waits.
        self.reported.extend(e for e in events if not isinstance(e, (RunStarted, CancelRequested, Resumed,
                                                                     InputProvided)))
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


def drive(definition, workflow, behaviour, schedule, **options) -> Trace:
    return Driver(definition, compile_workflow(workflow), behaviour, schedule, **options).run()
