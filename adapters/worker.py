"""The worker: a long-running process that drives every run of a store that needs it.

A run needs a driver when it is queued, when something is in its inbox, when a timer of it fell
due, and when the process that drove it is gone (the lease rules, ``adapters.leases``). The store
is the meeting point: several workers may share one, each run is driven by one process at a time
(its lease), and a worker holds no run it is not driving. A run is driven until it ends or only
parked work is left (a timer due within ``linger`` seconds keeps it); then the worker lets it go
and picks it up again when its next timer falls due or an answer comes.

``stop()`` (SIGTERM, SIGINT) starts nothing new: each run's drive tells the core it is draining,
attempts in flight get up to the grace period to finish (their results are recorded), leases are
released, and another worker takes the runs over at once.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from runners import DEFAULT_GRACE

from .engine import Engine, RunResult
from .recovery import RunBusy, RunRefused
from .store import Lease, StoreError

POLL_SECONDS = 0.1  # how often an idle worker looks for runs that need it (one query)
LISTEN_SECONDS = 1.0  # how long one wait for word from a store that announces work lasts (then it looks at _stop)
LINGER_SECONDS = 1.0  # a run whose next timer is due sooner than this stays driven
MAX_RUNS = 8
RETRY_BROKEN_SECONDS = 60.0  # a run that cannot be driven here (its workflow no longer loads) is retried this late


class Worker:
    def __init__(self, engine: Engine | None = None, *, db: str | None = None, runner: str | None = None,
                 max_parallel: int | None = None, max_runs: int = MAX_RUNS, grace: float = DEFAULT_GRACE,
                 linger: float = LINGER_SECONDS, poll: float = POLL_SECONDS,
                 log: Callable[[str], None] | None = None):
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.engine = engine or Engine(db=db)
        self.runner = runner
        self.max_parallel = max_parallel
        self.max_runs = max_runs
        self.grace = grace
        self.linger = linger
        self.poll = poll
        self.log = log or (lambda line: None)
        self.me = Lease.mine()  # what the lease rules compare a held lease with (never held itself)
        self.results: list[RunResult] = []  # the drives that ended, in the order they ended
        self._stop = threading.Event()
        self._changed = threading.Event()  # a drive ended: there is room again
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._drives: dict = {}
        self._broken: dict[str, float] = {}  # run id -> when it failed to be driven here

    # -- the public face ------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Drive runs as they need it until ``stop()``; then wind down and return."""
        self._listen()
        while not self._stop.is_set():
            self._launch()
            self._changed.wait(self.poll)
            self._changed.clear()
        self._join()

    def run_once(self) -> int:
        """Drive what needs it now until each run has ended or is parked; the number of drives."""
        drives = 0
        while not self._stop.is_set():
            launched = self._launch()
            drives += launched
            with self._lock:
                busy = bool(self._threads)
            if not launched and not busy:
                break
            self._changed.wait(self.poll)
            self._changed.clear()
        self._join()
        return drives

    def stop(self) -> None:
        """Start nothing new; runs being driven drain (thread-safe, and safe from a signal handler)."""
        self._stop.set()
        self._changed.set()
        with self._lock:
            drives = list(self._drives.values())
        for drive in drives:
            drive.drain()

    @property
    def driving(self) -> list[str]:
        with self._lock:
            return sorted(self._threads)

    # -- inside -------------------------------------------------------------------------------

    def _launch(self) -> int:
        now = time.time()
        with self._lock:
            free = self.max_runs - len(self._threads)
            skip = set(self._threads) | {r for r, t in self._broken.items() if now - t < RETRY_BROKEN_SECONDS}
        if free <= 0:
            return 0
        try:
            due = self.engine.store.due_runs(now, self.me, free, skip=skip)
        except StoreError as exc:
            self.log(f"the store failed: {exc}")
            return 0
        for run_id in due:
            thread = threading.Thread(target=self._drive, args=(run_id,), name=f"flowcore-run-{run_id}", daemon=True)
            with self._lock:
                self._threads[run_id] = thread
            thread.start()
        return len(due)

    def _drive(self, run_id: str) -> None:
        try:
            result = self.engine.drive(run_id, runner=self.runner, max_parallel=self.max_parallel, linger=self.linger,
                                       grace=self.grace, on_drive=lambda drive: self._register(run_id, drive))
        except RunBusy:
            pass  # another process took it first
        except RunRefused as exc:
            self.log(f"run {run_id}: cannot be driven here: {exc}")
            with self._lock:
                self._broken[run_id] = time.time()
        except StoreError as exc:
            self.log(f"run {run_id}: the store failed: {exc}")
            with self._lock:
                self._broken[run_id] = time.time()
        except Exception as exc:  # noqa: BLE001 - a worker keeps serving its other runs
            self.log(f"run {run_id}: {type(exc).__name__}: {exc}")
            with self._lock:
                self._broken[run_id] = time.time()
        else:
            if result is not None:
                with self._lock:
                    self.results.append(result)
                self.log(f"run {run_id}: {result.status}")
        finally:
            with self._lock:
                self._threads.pop(run_id, None)
                self._drives.pop(run_id, None)
            self._changed.set()

    def _register(self, run_id: str, drive) -> None:
        with self._lock:
            self._drives[run_id] = drive
        if self._stop.is_set():
            drive.drain()

    # -- wakeups from a store that announces work ----------------------------------------------

    def _listen(self) -> None:
        """With a store that announces work (``wait_for_work``: PostgreSQL's LISTEN/NOTIFY), a thread
        that wakes the worker as soon as a run is submitted, asked something, or let go unfinished.
        The poll stays, for what nothing announces: timers falling due, leases running out."""
        wait_for_work = getattr(self.engine.store, "wait_for_work", None)
        if wait_for_work is None:
            return

        def listen():
            while not self._stop.is_set():
                try:
                    if wait_for_work(LISTEN_SECONDS):
                        self._changed.set()
                except StoreError as exc:
                    self.log(f"waiting for word of new work failed (polling goes on): {exc}")
                    self._stop.wait(LISTEN_SECONDS)
        threading.Thread(target=listen, name="flowcore-listen", daemon=True).start()

    def _join(self) -> None:
        """Wait for the drives to end (they drain within their grace period, then release their runs)."""
        while True:
            with self._lock:
                threads = list(self._threads.values())
            if not threads:
                return
            for t in threads:
                t.join(timeout=self.grace + 5.0)
