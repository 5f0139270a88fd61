"""The dask runner: node instances run as futures on a ``distributed`` cluster.

By default it starts an in-process cluster (one worker, ``max_parallel`` threads); given
``address`` it uses an existing scheduler, so node code runs wherever the cluster's workers are
(they need the workflow's node modules importable). Cancellation cancels the future; code that is
already running on a worker is told to stop only if it runs in this process (``ctx.cancelled``).
"""
from __future__ import annotations

import queue
import threading
import time

from distributed import Client, LocalCluster

from scheduler_core import CancelConfirmed, NodeFailed

from .context import NodeContext
from .drive import attempt_event, drain


def _run_attempt(invoker, run_id, cmd):
    """Runs on a worker: one attempt, described as an event."""
    ctx = NodeContext(run_id, cmd)
    return attempt_event(cmd, ctx, lambda: invoker.call(cmd, ctx), time.time)


class DaskBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, *, address: str | None = None,
                 grace: float = 2.0, clock=time.time):
        self.invoker = invoker
        self.run_id = run_id
        self.clock = clock
        self.cluster = None
        if address is None:
            self.cluster = LocalCluster(n_workers=1, threads_per_worker=max_parallel, processes=False,
                                        dashboard_address=None)
            address = self.cluster
        self.client = Client(address, set_as_default=False)
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.futures: dict = {}
        self.lock = threading.Lock()

    def now(self) -> float:
        return self.clock()

    def start(self, cmd) -> None:
        key = (cmd.node, cmd.item, cmd.attempt)
        fut = self.client.submit(_run_attempt, self.invoker, self.run_id, cmd, pure=False,
                                 key=f"{self.run_id}/{cmd.node}{list(cmd.item)}#{cmd.attempt}")
        with self.lock:
            self.futures[key] = fut
        fut.add_done_callback(lambda f, key=key: self._done(key, f))

    def _done(self, key, fut) -> None:
        """Runs on the client's thread, where asking a future for its result can block: hand the
        future over, and read it in ``wait`` on the drive loop's thread."""
        with self.lock:
            if self.futures.pop(key, None) is None:
                return  # cancelled: already confirmed
        self.results.put((key, fut))

    def _event(self, key, fut):
        if fut.status == "finished":
            return fut.result()
        node, item, attempt = key
        exc = fut.exception() if fut.status == "error" else None
        return NodeFailed(node=node, item=item, attempt=attempt, at=self.clock(),
                          error_type=type(exc).__name__ if exc else "DaskError",
                          message=str(exc) if exc else f"future ended as {fut.status}")

    def cancel(self, cmd) -> None:
        key = (cmd.node, cmd.item, cmd.attempt)
        with self.lock:
            fut = self.futures.pop(key, None)
        if fut is not None:
            fut.cancel()
        self.results.put(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock()))

    def in_flight(self) -> int:
        with self.lock:
            return len(self.futures)

    def wait(self, timeout):
        return [self._event(*got) if isinstance(got, tuple) else got for got in drain(self.results, timeout)]

    def close(self, grace: float) -> int:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return 0
