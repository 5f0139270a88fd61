"""The dask runner: node instances run as futures on a ``distributed`` cluster.

By default it starts an in-process cluster (one worker, ``max_parallel`` threads); given
``address`` it uses an existing scheduler, so node code runs wherever the cluster's workers are
(they need the workflow's node modules importable).

A cancel is confirmed to the core only once the attempt has stopped, so two attempts of one
instance are never in flight (a retry after a timeout waits for it). Cancelling a future does not
stop code already running on a worker (Python cannot interrupt a thread), so:
- on the in-process cluster, the attempt's ``ctx.cancelled`` turns true, and the cancel is
  confirmed when the attempt returns, or at once if it had not started yet (it then never does);
- on a remote cluster, this process cannot see the worker's thread: the cancel is confirmed after
  ``grace`` seconds, as an abandoned attempt.
An attempt still running ``grace`` seconds after its cancel is abandoned (as on the thread runner):
its result is ignored, and the run summary counts it.
"""
from __future__ import annotations

import queue
import threading
import time

from distributed import Client, LocalCluster

from scheduler_core import CancelConfirmed, NodeFailed

from .context import NodeContext
from .drive import DEFAULT_GRACE, attempt_event, describe, drain


class _InProcessAttempt:
    """One attempt submitted to the in-process cluster, shared by the backend and the worker thread
    (they share this module): whether it started, whether it was cancelled, who to tell it ended."""

    def __init__(self, ctx: NodeContext, on_end):
        self.ctx = ctx
        self.on_end = on_end
        self.lock = threading.Lock()
        self.running = False
        self.ended = False
        self.cancelled = False

    def begin(self) -> bool:
        """On the worker: may the attempt run? Not once it was cancelled."""
        with self.lock:
            self.running = not self.cancelled
            return self.running

    def end(self) -> None:
        with self.lock:
            self.running, self.ended = False, True
        self.on_end()

    def cancel(self) -> bool:
        """Stop the attempt; True if it is not running (never started, or ended already)."""
        with self.lock:
            self.cancelled = True
            self.ctx.cancel()
            return not self.running


# dask key -> its attempt, for the attempts on in-process clusters (whose workers run in this process)
_IN_PROCESS: dict[str, _InProcessAttempt] = {}


def _run_attempt(invoker, run_id, cmd, key):
    """Runs on a worker: one attempt, described as an event (None: cancelled before it started)."""
    attempt = _IN_PROCESS.get(key)
    if attempt is None:  # a remote worker
        ctx = NodeContext(run_id, cmd)
        return attempt_event(cmd, ctx, lambda: invoker.call(cmd, ctx), time.time)
    if not attempt.begin():
        return None
    try:
        return attempt_event(cmd, attempt.ctx, lambda: invoker.call(cmd, attempt.ctx), time.time)
    finally:
        attempt.end()


class DaskBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, *, address: str | None = None,
                 grace: float = DEFAULT_GRACE, clock=time.time):
        self.invoker = invoker
        self.run_id = run_id
        self.clock = clock
        self.grace = grace
        self.cluster = None
        if address is None:
            self.cluster = LocalCluster(n_workers=1, threads_per_worker=max_parallel, processes=False,
                                        dashboard_address=None)
            address = self.cluster
        self.client = Client(address, set_as_default=False)
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.futures: dict = {}  # (node, item, attempt) -> future, until its result or confirmation is out
        self.cancelled_at: dict = {}  # (node, item, attempt) -> when cancelled, until confirmed stopped
        self.abandoned = 0
        self.lock = threading.Lock()

    def now(self) -> float:
        return self.clock()

    def _dask_key(self, key) -> str:
        node, item, attempt = key
        return f"{self.run_id}/{node}{list(item)}#{attempt}"

    def start(self, cmd) -> None:
        key = (cmd.node, cmd.item, cmd.attempt)
        dask_key = self._dask_key(key)
        if self.cluster is not None:
            _IN_PROCESS[dask_key] = _InProcessAttempt(NodeContext(self.run_id, cmd),
                                                      on_end=lambda: self._ended(key))
        fut = self.client.submit(_run_attempt, self.invoker, self.run_id, cmd, dask_key, pure=False, key=dask_key)
        with self.lock:
            self.futures[key] = fut
        fut.add_done_callback(lambda f, key=key: self._done(key, f))

    def _done(self, key, fut) -> None:
        """Runs on the client's thread, where asking a future for its result can block: hand the
        future over, and read it in ``wait`` on the drive loop's thread."""
        with self.lock:
            if key in self.cancelled_at or self.futures.pop(key, None) is None:
                return  # cancelled: confirmed once the attempt stopped, its result ignored
        _IN_PROCESS.pop(self._dask_key(key), None)
        self.results.put((key, fut))

    def _ended(self, key) -> None:
        """An in-process attempt returned (on its worker thread): confirm it if it was cancelled."""
        with self.lock:
            if key in self.cancelled_at:
                self._confirm(key)

    def _event(self, key, fut):
        if fut.status == "finished":
            return fut.result()
        node, item, attempt = key
        exc = fut.exception() if fut.status == "error" else None
        return NodeFailed(node=node, item=item, attempt=attempt, at=self.clock(),
                          error_type=type(exc).__name__ if exc else "DaskError",
                          message=describe(exc) if exc else f"future ended as {fut.status}")

    def _confirm(self, key, abandoned: bool = False) -> None:
        """Tell the core a cancelled attempt stopped, or was abandoned (called with the lock held)."""
        del self.cancelled_at[key]
        self.futures.pop(key, None)
        _IN_PROCESS.pop(self._dask_key(key), None)
        self.abandoned += abandoned
        node, item, attempt = key
        self.results.put(CancelConfirmed(node=node, item=item, attempt=attempt, at=self.clock(), abandoned=abandoned))

    def cancel(self, cmd) -> None:
        key = (cmd.node, cmd.item, cmd.attempt)
        with self.lock:
            fut = self.futures.get(key)
            if fut is None:  # finished already: it has stopped
                self.results.put(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock()))
                return
            if key in self.cancelled_at:
                return  # cancelled already
            self.cancelled_at[key] = self.clock()
            attempt = _IN_PROCESS.get(self._dask_key(key))
            if attempt is not None and attempt.cancel():
                self._confirm(key)  # never started (and now never will), or returned already
        fut.cancel()

    def in_flight(self) -> int:
        """Attempts running or winding down after a cancel (the core may be waiting to retry them)."""
        with self.lock:
            return len(self.futures)

    def wait(self, timeout):
        out = drain(self.results, timeout, winding_down=bool(self.cancelled_at))
        if self.cancelled_at:
            self._abandon_overdue()
        return [self._event(*got) if isinstance(got, tuple) else got for got in out]

    def _abandon_overdue(self) -> None:
        now = self.clock()
        with self.lock:
            for key, at in list(self.cancelled_at.items()):
                if now - at >= self.grace:
                    self._confirm(key, abandoned=True)

    def close(self, grace: float) -> int:
        """Give cancelled attempts ``grace`` seconds to stop; count those that did not."""
        end = self.clock() + grace
        while self.cancelled_at and self.clock() < end:
            time.sleep(0.01)
        with self.lock:
            for key in list(self.cancelled_at):
                self._confirm(key, abandoned=True)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return self.abandoned
