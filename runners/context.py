"""What a running node instance sees (``NodeContext``) and how runners call node code (``Invoker``).

Runners never know node types: the engine hands them an ``Invoker`` that turns a ``StartNode``
command into a call. This module holds no scheduling logic.
"""
from __future__ import annotations

import logging
import threading
from typing import Protocol

from scheduler_core import StartNode, instance_name  # noqa: F401 (instance_name: re-exported for runners' users)

from .private_values import private_copy


class NodeContext:
    """Passed to node functions that declare a ``ctx`` parameter.

    Made for every start, so it is cheap to make: the stop event, the logger and the idempotency
    key are built on first use (most nodes never wait on a cancellation, log or need the key)."""

    __slots__ = ("run_id", "node", "_item", "attempt", "_cmd", "_inputs", "deadline", "lines", "_cancelled",
                 "_stop", "_logger")

    def __init__(self, run_id: str, cmd: StartNode):
        self.run_id = run_id
        self.node = cmd.node
        self._item = cmd.item
        self.attempt = cmd.attempt
        self._cmd = cmd
        self._inputs = None  # built (and copied) on first use
        self.deadline = cmd.deadline
        self.lines: list[str] = []
        self._cancelled = False
        self._stop = None  # a threading.Event, once someone waits for the cancellation
        self._logger = None

    @property
    def item(self) -> list | None:
        """The item path inside fan-outs (``[2]``, ``[2, 0]``), or None outside any."""
        return list(self._item) if self._item else None

    @property
    def inputs(self) -> dict:
        """The delivered values keyed by source node: this instance's own copies (made on first use, as
        most nodes never read them), so changing them changes no record and no other node's input."""
        if self._inputs is None:
            self._inputs = private_copy(self._cmd.inputs)
        return self._inputs

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and re-dispatches: a node can use it to avoid repeating a side effect."""
        return f"{self.run_id}/{instance_name(self.node, self._item)}"

    @property
    def logger(self) -> logging.Logger:
        """A logger of this instance alone (not registered globally); its lines are kept with the
        record. Made on first use: most nodes never log, and a logger per start is not free."""
        if self._logger is None:
            self._logger = logging.Logger(f"flowcore.node.{instance_name(self.node, self._item)}", logging.DEBUG)
            self._logger.addHandler(_KeepLines(self.lines))
        return self._logger

    @property
    def cancelled(self) -> bool:
        """True once this attempt is cancelled or timed out: a cooperative node stops when it sees it."""
        return self._cancelled

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancellation; returns ``cancelled``."""
        with _STOP_LOCK:
            if self._stop is None:
                self._stop = threading.Event()
                if self._cancelled:
                    self._stop.set()
        return self._stop.wait(timeout)

    def cancel(self) -> None:
        with _STOP_LOCK:
            self._cancelled = True
            if self._stop is not None:
                self._stop.set()

    def cancel_in_signal_handler(self) -> None:
        """``cancelled`` turns true, waking no one: for a signal handler, which may have interrupted
        this very thread inside ``wait_cancelled``'s lock (and raises next, so no one waits on)."""
        self._cancelled = True


_STOP_LOCK = threading.Lock()  # orders a cancel against a first wait_cancelled (rare, so one lock for all)


class _KeepLines(logging.Handler):
    def __init__(self, lines: list):
        super().__init__()
        self.lines = lines

    def emit(self, record):
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")


class Invoker(Protocol):
    def is_async(self, cmd: StartNode) -> bool: ...
    def call(self, cmd: StartNode, ctx: NodeContext) -> dict: ...
    async def call_async(self, cmd: StartNode, ctx: NodeContext) -> dict: ...
    def for_node(self, node: str) -> "Invoker": ...  # one node's part alone: what a runner sends to another process

