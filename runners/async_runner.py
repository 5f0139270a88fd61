"""The asyncio runner: coroutine nodes run as tasks on an event loop, with real cancellation.

Synchronous nodes run in a thread executor sized to ``max_parallel`` (their cancellation is
cooperative, through ``ctx.cancelled``). The loop lives in a thread of its own; completions come
back to the drive loop through a queue.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from scheduler_core import CancelConfirmed, NodeFailed, NodeSucceeded

from .context import NodeContext
from .drive import DEFAULT_GRACE


class AsyncioBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, clock=time.time, grace: float = DEFAULT_GRACE):
        self.invoker = invoker
        self.run_id = run_id
        self.clock = clock
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.executor = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="flowcore-sync")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="flowcore-asyncio", daemon=True)
        self.thread.start()
        self.tasks: dict = {}  # (node, item, attempt) -> (task future, ctx)
        self.lock = threading.Lock()
        self.abandoned = 0

    def now(self) -> float:
        return self.clock()

    def start(self, cmd) -> None:
        ctx = NodeContext(self.run_id, cmd)
        with self.lock:  # registered before the attempt can end and unregister itself
            fut = asyncio.run_coroutine_threadsafe(self._attempt(cmd, ctx), self.loop)
            self.tasks[(cmd.node, cmd.item, cmd.attempt)] = (fut, ctx)

    async def _attempt(self, cmd, ctx):
        key = (cmd.node, cmd.item, cmd.attempt)
        started = self.clock()
        try:
            if self.invoker.is_async(cmd):
                ports = await self.invoker.call_async(cmd, ctx)
            else:
                ports = await self.loop.run_in_executor(self.executor, self.invoker.call, cmd, ctx)
            event = NodeSucceeded(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(), ports=ports,
                                  started_at=started)
        except asyncio.CancelledError:
            event = None
        except Exception as exc:
            event = NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(),
                               error_type=type(exc).__name__, message=str(exc) or repr(exc), started_at=started)
        with self.lock:
            self.tasks.pop(key, None)
            if event is None or ctx.cancelled:
                event = CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock())
        self.results.put(event)

    def cancel(self, cmd) -> None:
        with self.lock:
            entry = self.tasks.get((cmd.node, cmd.item, cmd.attempt))
            if entry is None:
                self.results.put(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock()))
                return
            fut, ctx = entry
            ctx.cancel()
        if self.invoker.is_async(cmd):
            fut.cancel()  # raises CancelledError inside the coroutine: a real cancellation

    def in_flight(self) -> int:
        with self.lock:
            return len(self.tasks)

    def wait(self, timeout):
        out = []
        try:
            out.append(self.results.get(timeout=timeout) if timeout != 0 else self.results.get_nowait())
        except queue.Empty:
            pass
        while True:
            try:
                out.append(self.results.get_nowait())
            except queue.Empty:
                return out

    def close(self, grace: float) -> int:
        end = self.clock() + grace
        while self.in_flight() and self.clock() < end:
            time.sleep(0.01)
        self.abandoned = self.in_flight()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.executor.shutdown(wait=False, cancel_futures=True)
        return self.abandoned
