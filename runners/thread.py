"""The thread runner: node instances run on a pool of worker threads.

Cancellation is cooperative (``ctx.cancelled``). Python cannot kill a thread: a worker whose
attempt was cancelled or timed out and keeps running is replaced at once, so the run keeps its
parallelism; its result, should it come within the grace period, is reported as a late one (the
core keeps it in the instance's history). Once it returns (or ``grace`` seconds have passed, and it
is *abandoned*), the core hears that the attempt stopped. Worker threads are daemons: an abandoned
one cannot keep the process alive.
"""
from __future__ import annotations

import queue
import threading
import time

from scheduler_core import CancelConfirmed

from .context import NodeContext
from .drive import DEFAULT_GRACE, attempt_event, drain

_STOP = object()


class _Job:
    __slots__ = ("cmd", "ctx", "cancelled_at", "worker", "confirmed")

    def __init__(self, cmd, ctx):
        self.cmd, self.ctx = cmd, ctx
        self.cancelled_at = None
        self.worker = None
        self.confirmed = False


class ThreadBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, clock=time.time, grace: float = DEFAULT_GRACE):
        self.invoker = invoker
        self.run_id = run_id
        self.size = max_parallel
        self.clock = clock
        self.grace = grace
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.active: dict = {}  # (node, item, attempt) -> job, until its result or confirmation is out
        self.workers = 0  # live workers not replaced (changed only by the driving thread)
        self.cancelling = 0  # cancelled attempts not yet confirmed stopped (changed under the lock)
        self.abandoned = 0

    def now(self) -> float:
        return self.clock()

    def start(self, cmd) -> None:
        # No lock: one dict store is atomic, a worker removes only the key of a job it took, and
        # only the driving thread (this one) counts workers.
        job = _Job(cmd, NodeContext(self.run_id, cmd))
        self.active[(cmd.node, cmd.item, cmd.attempt)] = job
        if self.workers < self.size:
            self._spawn()
        self.jobs.put(job)

    def _spawn(self) -> None:
        self.workers += 1
        threading.Thread(target=self._work, name="flowcore-worker", daemon=True).start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            with self.lock:
                if job.cancelled_at is not None:
                    self._confirm(job)
                    continue
                job.worker = me
            event = attempt_event(job.cmd, job.ctx, lambda: self.invoker.call(job.cmd, job.ctx), self.clock)
            with self.lock:
                replaced = job.cancelled_at is not None
                if replaced:
                    if not job.confirmed:  # a late result (not of an abandoned attempt): the core keeps it
                        self.results.put(event)
                    self._confirm(job)
                else:
                    self.active.pop((job.cmd.node, job.cmd.item, job.cmd.attempt), None)
                    self.results.put(event)
            if replaced:
                return  # a replacement took this worker's place when the attempt was cancelled

    def _confirm(self, job, abandoned: bool = False) -> None:
        """Tell the core a cancelled attempt stopped (called with the lock held)."""
        if job.confirmed:
            return
        job.confirmed = True
        self.cancelling -= 1
        cmd = job.cmd
        self.active.pop((cmd.node, cmd.item, cmd.attempt), None)
        self.results.put(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(),
                                         abandoned=abandoned))

    def cancel(self, cmd) -> None:
        with self.lock:
            job = self.active.get((cmd.node, cmd.item, cmd.attempt))
            if job is None:  # finished already: it has stopped
                self.results.put(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock()))
                return
            if job.cancelled_at is not None:
                return  # cancelled already
            job.cancelled_at = self.clock()
            self.cancelling += 1
            job.ctx.cancel()
            if job.worker is not None:
                self.workers -= 1  # its thread winds the attempt down, then ends
                if not self.jobs.empty():
                    self._spawn()  # keep the parallelism for what waits; else the next start spawns one
                    # (not one thread per cancel: a join's cancel_rest ends 99 attempts at once, and
                    # starting 99 threads made the last loser end 50 ms after the winner)

    def in_flight(self) -> int:
        """Attempts running or winding down after a cancel (the core may be waiting to retry them)."""
        return len(self.active)

    def wait(self, timeout):
        # cancelling only grows in this thread (cancel), so a stale read can only overstate it
        out = drain(self.results, timeout, winding_down=self.cancelling > 0)
        if out and self.active:
            # attempts still running get one turn of the interpreter before the step: those that end
            # with the first are stepped (and, on a store, committed) with it, not in a step of their
            # own. A 10,000-node no-op DAG on PostgreSQL: 1,768 steps -> 1,251 (one per 8 nodes)
            time.sleep(0)
            out += drain(self.results, 0)
        if self.cancelling:
            self._abandon_overdue()
        return out

    def _abandon_overdue(self) -> None:
        now = self.clock()
        with self.lock:
            for job in list(self.active.values()):
                if job.cancelled_at is not None and now - job.cancelled_at >= self.grace and not job.confirmed:
                    self.abandoned += 1
                    self._confirm(job, abandoned=True)

    def close(self, grace: float) -> int:
        """Give cancelled attempts ``grace`` seconds to stop; count those that did not."""
        end = self.clock() + grace
        while self.clock() < end:
            with self.lock:
                stopping = [j for j in self.active.values() if j.cancelled_at is not None and not j.confirmed]
            if not stopping:
                break
            time.sleep(0.01)
        with self.lock:
            for job in list(self.active.values()):
                if job.cancelled_at is not None and not job.confirmed:
                    self.abandoned += 1
                    job.confirmed = True
                    self.cancelling -= 1
            for _ in range(self.workers):
                self.jobs.put(_STOP)
            self.workers = 0
        return self.abandoned
