"""flowcore's core as a contender: ``step`` driven by hand, with no runner, no threads and no clock.

``drive_step`` feeds a compiled graph ``RunStarted``, then completes the instances the core
started, one ``NodeSucceeded`` per step, first started first completed, at once: what a step
costs is then all the time there is. Only node types whose result needs no user code are
completed (a ``foreach`` puts its input list on ``result`` and ``iteration``, a ``noop`` passes its
input on); anything else is refused rather than faked.
"""
from __future__ import annotations

from collections import deque

from scheduler_core import NodeSucceeded, RunStarted, StartNode, initial_state, step

from .engine_runs import RunDidNotSucceed


def ports_of(cmd: StartNode) -> dict:
    """The ports the node type would report for ``cmd``."""
    if cmd.type == "foreach":
        return {"result": cmd.input, "iteration": cmd.input}
    if cmd.type == "noop":
        return {"result": cmd.input}
    raise ValueError(f"drive_step completes foreach and noop nodes only, not {cmd.type!r} ({cmd.node})")


def drive_step(graph, trigger=None, trace: list | None = None) -> int:
    """Run ``graph`` to its end through ``step``; return the number of steps taken.

    ``trace``, if given, gets ``("start", node, item)`` and ``("done", node, item)`` in the order
    they happen (for the tests: what ran, and what was in flight at once)."""
    state, commands = step(initial_state(graph), [RunStarted(at=0.0, trigger=trigger)])
    started: deque = deque()
    steps = 1
    while True:
        for c in commands:
            if type(c) is StartNode:
                started.append(c)
                if trace is not None:
                    trace.append(("start", c.node, c.item))
        if not started:
            break
        c = started.popleft()
        if trace is not None:
            trace.append(("done", c.node, c.item))
        done = NodeSucceeded(node=c.node, item=c.item, attempt=c.attempt, at=float(steps), ports=ports_of(c))
        state, commands = step(state, [done])
        steps += 1
    if state.status != "succeeded":
        raise RunDidNotSucceed(f"{graph.name} driven through step ended {state.status}")
    return steps
