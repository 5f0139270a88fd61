"""Replay: a run's state is what ``step`` makes of its logged event batches.

``replay`` folds the batches through ``step`` from the initial state. When the commands each batch
produced were logged too, it checks that the core decides the same now as it did then; where it
does not (the core or the workflow changed), it raises ``ReplayDiverged`` naming the batch.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .commands import Command
from .events import Event
from .graph import Graph
from .state import State, initial_state
from .step import step


class ReplayDiverged(RuntimeError):
    def __init__(self, batch: int, expected: str, got: str) -> None:
        self.batch = batch
        super().__init__(f"replay diverged at step {batch}: the log says the core decided {expected!r}, "
                         f"it now decides {got!r}")


def replay(graph: Graph, batches: Iterable[Sequence[Event]], recorded_commands: Sequence[str | None] | None = None,
           *, start: State | None = None, first: int = 0) -> State:
    """Fold ``batches`` (a sequence of event sequences) through ``step``: from the initial state, or
    from ``start``, a state after the first ``first`` batches of the run (a snapshot of it), in
    which case ``batches`` are the ones after it and a divergence names the run's batch number."""
    state = initial_state(graph) if start is None else start
    for i, events in enumerate(batches):
        state, commands = step(state, events)
        if recorded_commands is not None:
            expected = recorded_commands[i]
            if expected is not None and expected != fingerprint(commands):
                raise ReplayDiverged(first + i, expected, fingerprint(commands))
    return state


def fingerprint(commands: Iterable[Command]) -> str:
    """A short, stable summary of a step's decisions, stored beside its events."""
    parts: list[str] = []
    for c in commands:
        name = type(c).__name__
        ident = getattr(c, "node", None) or getattr(c, "timer", None) or getattr(c, "status", "")
        item = getattr(c, "item", ())
        parts.append(f"{name}:{ident}{list(item) if item else ''}")
    return "|".join(parts)
