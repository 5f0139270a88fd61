"""The asyncio runner: coroutine nodes run as tasks on an event loop, with real cancellation.

Synchronous nodes run on daemon threads (the core never starts more than ``max_parallel`` at
once). Their cancellation is cooperative, through ``ctx.cancelled``: like the thread runner's, an
attempt that ignores it for ``grace`` seconds is *abandoned* (the core hears that it stopped, its
result is ignored), so it can keep neither the run, a retry nor the process waiting. The loop
lives in a thread of its own; completions come back to the drive loop through a queue.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time

from scheduler_core import CancelConfirmed

from .context import NodeContext
from .drive import DEFAULT_GRACE, drain, ended_event

# how long closing waits for the loop to cancel what is left and stop: a coroutine that blocks the
# loop (sync code in an async def) never lets it, and must not hold the run past its grace period
LOOP_STOP_SECONDS = 1.0  # (leftovers get 0.5 s of it)


class _Attempt:
    __slots__ = ("cmd", "ctx", "future", "task", "cancelled_at")

    def __init__(self, cmd, ctx):
        self.cmd, self.ctx = cmd, ctx
        self.future = None
        self.task = None  # the attempt's asyncio task, once it runs on the loop
        self.cancelled_at = None

    def stopped(self, clock, abandoned: bool = False) -> CancelConfirmed:
        cmd = self.cmd
        return CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=clock(), abandoned=abandoned)


class _DaemonThreads:
    """Runs calls on daemon threads, reusing idle ones; a call that never returns holds only its own."""

    def __init__(self, name: str):
        self.name = name
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0
        self.count = 0

    def submit(self, fn) -> None:
        with self.lock:
            if self.idle:
                self.idle -= 1
            else:
                self.count += 1
                threading.Thread(target=self._work, name=self.name, daemon=True).start()
        self.jobs.put(fn)

    def _work(self) -> None:
        while (fn := self.jobs.get()) is not None:
            fn()
            with self.lock:
                self.idle += 1

    def shutdown(self) -> None:
        with self.lock:
            for _ in range(self.count):  # idle threads end now, busy ones when their call returns
                self.jobs.put(None)
            self.count = self.idle = 0


def _cancel_all(tasks) -> None:
    for task in tasks:
        task.cancel()


class AsyncioBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, clock=time.time, grace: float = DEFAULT_GRACE):
        self.invoker = invoker
        self.run_id = run_id
        self.clock = clock
        self.grace = grace
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = _DaemonThreads("flowcore-sync")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="flowcore-asyncio", daemon=True)
        self.thread.start()
        self.attempts: dict = {}  # (node, item, attempt) -> _Attempt, until its outcome is reported
        self.lock = threading.Lock()
        self.abandoned = 0

    def now(self) -> float:
        return self.clock()

    def start(self, cmd) -> None:
        attempt = _Attempt(cmd, NodeContext(self.run_id, cmd))
        with self.lock:  # registered before the attempt can end and unregister itself
            attempt.future = asyncio.run_coroutine_threadsafe(self._attempt(attempt), self.loop)
            self.attempts[(cmd.node, cmd.item, cmd.attempt)] = attempt

    async def _attempt(self, attempt):
        cmd, ctx = attempt.cmd, attempt.ctx
        attempt.task = asyncio.current_task()
        started = self.clock()
        try:
            if self.invoker.is_async(cmd):
                ports = await self.invoker.call_async(cmd, ctx)
            else:
                ports = await self._in_thread(cmd, ctx)
            event = ended_event(cmd, ctx, started, self.clock(), ports=ports)
        except asyncio.CancelledError:
            event = None
        except BaseException as exc:  # noqa: B036 - whatever a node raises (sys.exit too), its attempt failed
            event = ended_event(cmd, ctx, started, self.clock(), error=exc)
        with self.lock:
            key = (cmd.node, cmd.item, cmd.attempt)
            if self.attempts.get(key) is not attempt:
                return  # abandoned: its stop was reported already
            del self.attempts[key]
            if event is not None and ctx.cancelled:  # it ended after its cancel: a late result, kept
                self.results.put(event)
            if event is None or ctx.cancelled:
                event = attempt.stopped(self.clock)
        self.results.put(event)

    async def _in_thread(self, cmd, ctx):
        """Run a synchronous attempt on a daemon thread; awaiting it can be cancelled at once."""
        done = self.loop.create_future()

        def settle(ports, exc):
            if done.done():  # cancelled meanwhile: the late outcome is dropped
                return
            if exc is None:
                done.set_result(ports)
            else:
                done.set_exception(exc)

        def work():
            try:
                outcome = (self.invoker.call(cmd, ctx), None)
            except BaseException as exc:  # noqa: B036 - a node's failure is data, whatever it raised
                outcome = (None, exc)
            try:
                self.loop.call_soon_threadsafe(settle, *outcome)
            except RuntimeError:  # the run closed its loop: the attempt was abandoned, its outcome dropped
                pass

        self.threads.submit(work)
        return await done

    def cancel(self, cmd) -> None:
        self.cancel_many([cmd])

    def cancel_many(self, cmds) -> None:
        """Cancel attempts: each told through ``ctx.cancelled``; coroutine attempts also cancelled as
        tasks, all in one call onto the event loop (a call per attempt costs a wake-up of the loop each:
        a join's ``cancel_rest`` over 99 branches took 2-3 ms more)."""
        tasks, futures = [], []
        with self.lock:
            for cmd in cmds:
                attempt = self.attempts.get((cmd.node, cmd.item, cmd.attempt))
                if attempt is None:  # finished already: it has stopped
                    self.results.put(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt,
                                                     at=self.clock()))
                    continue
                attempt.cancelled_at = self.clock()
                attempt.ctx.cancel()
                if self.invoker.is_async(cmd):  # raises CancelledError inside the coroutine: a real cancellation
                    (futures if attempt.task is None else tasks).append(attempt.task or attempt.future)
        if tasks:
            self.loop.call_soon_threadsafe(_cancel_all, tasks)
        for future in futures:  # not running on the loop yet
            future.cancel()

    def in_flight(self) -> int:
        with self.lock:
            return len(self.attempts)

    def wait(self, timeout):
        with self.lock:
            winding_down = any(a.cancelled_at is not None for a in self.attempts.values())
        out = drain(self.results, timeout, winding_down)
        self._abandon(lambda a: a.cancelled_at is not None and self.clock() - a.cancelled_at >= self.grace)
        return out

    def _abandon(self, overdue) -> None:
        """Report the ``overdue`` attempts as stopped and stop awaiting them; their threads run on, ignored."""
        with self.lock:
            for key, attempt in list(self.attempts.items()):
                if overdue(attempt):
                    del self.attempts[key]
                    self.abandoned += 1
                    attempt.future.cancel()
                    self.results.put(attempt.stopped(self.clock, abandoned=True))

    def close(self, grace: float) -> int:
        """Give attempts still going ``grace`` seconds to stop; count those that did not."""
        end = self.clock() + grace
        while self.in_flight() and self.clock() < end:
            time.sleep(0.01)
        self._abandon(lambda a: True)
        self.threads.shutdown()
        leftovers = asyncio.run_coroutine_threadsafe(self._cancel_leftovers(), self.loop)
        try:
            pending = leftovers.result(timeout=LOOP_STOP_SECONDS)
        except TimeoutError:  # a coroutine blocks the loop (sync code in an async def)
            pending = True
        if pending:  # the loop runs on in its daemon thread, with what did not stop (stopped, the tasks
            return self.abandoned  # would be collected pending: "Task was destroyed but it is pending!")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=LOOP_STOP_SECONDS)
        if not self.thread.is_alive():
            self.loop.close()
        return self.abandoned

    async def _cancel_leftovers(self) -> bool:
        """Cancel the tasks of abandoned attempts, so the loop stops with none pending; whether some
        are still pending (a coroutine that swallows its cancellation)."""
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if not tasks:
            return False
        _, pending = await asyncio.wait(tasks, timeout=0.5)
        return bool(pending)
