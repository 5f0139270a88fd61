"""The simulated runner: a virtual clock, seeded durations and completion order, injected faults.

Node code still runs (inline, like the serial runner) unless ``execute=False``, in which case a
task passes its input through; but time is virtual: an instance takes ``estimate × a random
factor`` seconds of virtual time, timers fire instantly in virtual order, and a graph with hours of
sleeps runs in milliseconds. The clock starts at ``start_time`` (the engine gives a run in a
stored database the time it starts at, and a resumed run its own latest time, so that the times
other processes read are Unix seconds; a run in memory starts at 0). Everything random comes from
one ``random.Random(seed)``, so the same seed gives the same event log, byte for byte. Faults:
``fail_rate`` (injected failures), ``duplicate_rate`` (a completion reported twice) and
``late_rate`` (a completion ten times slower, which trips node timeouts).
"""
from __future__ import annotations

import heapq
import random

from scheduler_core import CancelConfirmed, NodeFailed, NodeSucceeded

from .context import NodeContext
from .drive import ended_event


class SimulatedBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, *, seed: int = 0, start_time: float = 0.0,
                 estimates: dict | None = None, execute: bool = True, fail_rate: float = 0.0,
                 duplicate_rate: float = 0.0, late_rate: float = 0.0, spread: float = 1.0, validate: bool = True):
        self.invoker = invoker
        # check every state the core returns (scheduler_core.validate_state, O(state) a step): a dry run
        # is where a broken invariant should show; a benchmark of the runner itself turns it off
        self.validate = validate
        self.run_id = run_id
        self.rng = random.Random(seed)
        self.clock = start_time
        self.estimates = estimates or {}
        self.execute = execute
        self.fail_rate, self.duplicate_rate, self.late_rate, self.spread = fail_rate, duplicate_rate, late_rate, spread
        self.pending: list = []  # heap of (virtual time, order, event)
        self.order = 0
        self.running: set = set()

    def now(self) -> float:
        return self.clock

    def _at(self, at: float, event) -> None:
        self.order += 1
        heapq.heappush(self.pending, (at, self.order, event))

    def start(self, cmd) -> None:
        key = (cmd.node, cmd.item, cmd.attempt)
        self.running.add(key)
        base = float(self.estimates.get(cmd.node, 1.0))
        duration = base * (1.0 + self.spread * self.rng.random())
        if self.rng.random() < self.late_rate:
            duration *= 10
        finish = self.clock + duration
        common = dict(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=finish, started_at=self.clock)
        if self.rng.random() < self.fail_rate:
            event = NodeFailed(**common, error_type="InjectedFault", message="failure injected by the simulation")
        else:
            event = self._outcome(cmd, common)
        self._at(finish, event)
        if self.rng.random() < self.duplicate_rate:
            self._at(finish + duration * self.rng.random(), event)

    def _outcome(self, cmd, common):
        if not self.execute and cmd.type == "python":
            return NodeSucceeded(**common, ports={"result": cmd.input})
        ctx = NodeContext(self.run_id, cmd)
        try:
            ports = self.invoker.call(cmd, ctx)
        except BaseException as exc:  # noqa: B036 - a node's failure is data, whatever it raised (sys.exit too)
            return ended_event(cmd, ctx, common["started_at"], common["at"], error=exc)
        return ended_event(cmd, ctx, common["started_at"], common["at"], ports=ports)

    def cancel(self, cmd) -> None:
        key = (cmd.node, cmd.item, cmd.attempt)
        self.running.discard(key)
        self._at(self.clock, CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock))

    def in_flight(self) -> int:
        return len(self.running)

    def wait(self, timeout):
        """Advance virtual time to the next completion, or by ``timeout``, whichever is first."""
        if not self.pending or (timeout is not None and self.pending[0][0] > self.clock + timeout):
            if timeout:
                self.clock += timeout
            return []
        at, _, event = heapq.heappop(self.pending)
        self.clock = max(self.clock, at)
        out = [event]
        while self.pending and self.pending[0][0] <= self.clock:
            out.append(heapq.heappop(self.pending)[2])
        for e in out:
            self.running.discard((e.node, e.item, e.attempt))
        return out

    def close(self, grace: float) -> int:
        return 0
