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

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from runners import DEFAULT_GRACE, ClusterUnreachable

from .engine import Engine, RunResult
from .recovery import RunBusy, RunRefused
from .store import Lease, StoreError
from .terminal import visible

POLL_SECONDS = 0.1  # how often an idle worker looks for runs that need it (one query)
LISTEN_SECONDS = 1.0  # how long one wait for word from a store that announces work lasts (then it looks at _stop)
LINGER_SECONDS = 1.0  # a run whose next timer is due sooner than this stays driven
MAX_RUNS = 8
RETRY_BROKEN_SECONDS = 60.0  # a run that cannot be driven here (its workflow no longer loads) is retried this late


class Worker:
    def __init__(self, engine: Engine | None = None, *, db: str | None = None, runner: str | None = None,
                 max_parallel: int | None = None, max_runs: int = MAX_RUNS, grace: float = DEFAULT_GRACE,
                 linger: float = LINGER_SECONDS, poll: float = POLL_SECONDS,
                 log: Callable[[str], None] | None = None, dask_address: str | None = None):
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.engine = engine or Engine(db=db)
        self.runner = runner
        self.dask_address = dask_address  # for the runs it drives on the dask runner
        self.max_parallel = max_parallel
        self.max_runs = max_runs
        self.grace = grace
        self.linger = linger
        self.poll = poll
        self.log = log or (lambda line: None)  # a line may hold several (a problem list); run ids are escaped
        self.me = Lease.mine()  # what the lease rules compare a held lease with (never held itself)
        self.results: list[RunResult] = []  # the drives that ended, in the order they ended
        # the drives' threads, kept: each keeps its store connection from one drive to the next
        self._pool = ThreadPoolExecutor(max_workers=max_runs, thread_name_prefix="flowcore-drive")
        self._stop_asked = False  # set by ``request_stop`` (a signal handler): no lock, no event
        self._stop = threading.Event()
        self._changed = threading.Event()  # a drive ended: there is room again
        self._lock = threading.Lock()
        self._driving: dict[str, Lease] = {}  # run id -> the lease claimed for it, while it is driven
        self._drives: dict = {}
        self._broken: dict[str, float] = {}  # run id -> when it failed to be driven here

    # -- the public face ------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Drive runs as they need it until ``stop()``; then wind down and return."""
        self._listen()
        while not self._stopping():
            self._launch()
            self._changed.wait(self._sleep())
            self._changed.clear()
        self._join()

    def run_once(self) -> int:
        """Drive what needs it now until each run has ended or is parked; the number of drives."""
        drives = 0
        while not self._stopping():
            launched = self._launch()
            drives += launched
            with self._lock:
                busy = bool(self._driving)
            if not launched and not busy:
                break
            self._changed.wait(self.poll)
            self._changed.clear()
        self._join()
        return drives

    def request_stop(self) -> None:
        """Ask the worker to stop, from a signal handler: sets a flag and nothing else (a handler runs
        on the main thread, which may be holding the worker's locks). The worker's loop notices it
        within a poll and calls ``stop()``."""
        self._stop_asked = True

    def _stopping(self) -> bool:
        if self._stop_asked and not self._stop.is_set():
            self.stop()
        return self._stop.is_set()

    def _sleep(self) -> float:
        """Until the next poll, or sooner when a run's timer falls due before it."""
        next_wake = getattr(self.engine.store, "next_wake", None)
        if next_wake is None:
            return self.poll
        try:
            wake = next_wake()
        except StoreError:
            return self.poll
        return self.poll if wake is None else max(0.0, min(self.poll, wake - time.time()))

    def stop(self) -> None:
        """Start nothing new; runs being driven drain (thread-safe; from a signal handler, use
        ``request_stop``)."""
        if not self._stop.is_set():
            self.log(f"stopping: starting nothing new, letting attempts in flight finish (up to {self.grace:g} s)")
        self._stop.set()
        self._changed.set()
        with self._lock:
            drives = list(self._drives.values())
        for drive in drives:
            drive.drain()

    @property
    def driving(self) -> list[str]:
        with self._lock:
            return sorted(self._driving)

    # -- inside -------------------------------------------------------------------------------

    def _launch(self) -> int:
        """Claim runs that need a driver (their leases, taken here) and drive them in the pool."""
        now = time.time()
        with self._lock:
            free = self.max_runs - len(self._driving)
            skip = set(self._driving) | {r for r, t in self._broken.items() if now - t < RETRY_BROKEN_SECONDS}
        if free <= 0:
            return 0
        try:
            # a few more candidates than room, started at a random one: workers sharing a store then
            # seldom reach for the same runs, and the oldest runs still come first
            due = self.engine.store.due_runs(now, self.me, 4 * free, skip=skip)
        except StoreError as exc:
            self.log(f"the store failed: {exc}")
            return 0
        if len(due) > free:
            start = random.randrange(len(due))
            due = (due[start:] + due[:start])[:free]
        launched = 0
        for run_id in due:
            try:
                lease = self.engine.claim(run_id)
            except RunBusy:
                continue  # another process took it first
            except (RunRefused, StoreError) as exc:
                self._set_aside(run_id, f"cannot be driven here: {exc}")
                continue
            with self._lock:
                self._driving[run_id] = lease
            self._pool.submit(self._drive, run_id, lease)
            launched += 1
        return launched

    def _drive(self, run_id: str, lease) -> None:
        try:
            result = self.engine.drive(run_id, runner=self.runner, max_parallel=self.max_parallel, linger=self.linger,
                                       grace=self.grace, on_drive=lambda drive: self._register(run_id, drive),
                                       lease=lease, dask_address=self.dask_address)
        except (RunRefused, ClusterUnreachable) as exc:
            self._set_aside(run_id, f"cannot be driven here: {exc}")
        except StoreError as exc:
            self._set_aside(run_id, f"the store failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a worker keeps serving its other runs
            self._set_aside(run_id, f"{type(exc).__name__}: {exc}")
        else:
            if result is not None:
                with self._lock:
                    self.results.append(result)
                self.log(f"run {visible(run_id)}: {result.status}")
        finally:
            with self._lock:
                self._driving.pop(run_id, None)
                self._drives.pop(run_id, None)
            self._changed.set()

    def _set_aside(self, run_id: str, why: str) -> None:
        """A run this worker failed to drive: say why, and leave it alone for RETRY_BROKEN_SECONDS."""
        self.log(f"run {visible(run_id)}: {why}")
        with self._lock:
            self._broken[run_id] = time.time()

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
        self._pool.shutdown(wait=True)
        self._pool = ThreadPoolExecutor(max_workers=self.max_runs, thread_name_prefix="flowcore-drive")
