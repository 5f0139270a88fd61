"""The serial runner: each start runs inline, one at a time, in the order the core chose.

Deterministic given the node code; the reference the other runners are compared against. It
cannot interrupt a call: a timeout is noticed when the call returns (its timer is due earlier, so
the drive loop delivers it first and the late result is ignored).
"""
from __future__ import annotations

import time
from collections import deque

from scheduler_core import CancelConfirmed, NodeSucceeded

from .context import NodeContext
from .drive import attempt_event


class SerialBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 1, clock=time.time):
        self.invoker = invoker
        self.run_id = run_id
        self.clock = clock
        self.queue: deque = deque()
        self.done: list = []

    def now(self) -> float:
        return self.clock()

    def start(self, cmd) -> None:
        self.queue.append(cmd)

    def cancel(self, cmd) -> None:
        for queued in self.queue:
            if (queued.node, queued.item, queued.attempt) == (cmd.node, cmd.item, cmd.attempt):
                self.queue.remove(queued)
                break
        self.done.append(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock()))

    def in_flight(self) -> int:
        return len(self.queue)

    def wait(self, timeout):
        """Run the queued starts, in order, until one fails, a timer falls due or the queue is empty.

        Several completions in one step mean one logged batch (one commit) for several nodes; a
        failure or a due timer ends the batch so the core decides at once what happens next."""
        if not self.done and self.queue and timeout != 0:
            until = None if timeout is None else self.clock() + timeout
            while self.queue:
                cmd = self.queue.popleft()
                ctx = NodeContext(self.run_id, cmd)
                event = attempt_event(cmd, ctx, lambda: self.invoker.call(cmd, ctx), self.clock)
                self.done.append(event)
                if type(event) is not NodeSucceeded or (until is not None and self.clock() >= until):
                    break
        elif not self.done and not self.queue and timeout:
            time.sleep(timeout)
        done, self.done = self.done, []
        return done

    def close(self, grace: float) -> int:
        return 0
