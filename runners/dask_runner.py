"""The dask runner: node attempts run as tasks on a ``distributed`` cluster.

Given ``address`` it connects to an existing scheduler (within ``connect_timeout`` seconds, else
``ClusterUnreachable``), so node code runs wherever the cluster's workers are; without one it starts
an in-process cluster (one worker, ``max_parallel`` threads). Both take the same path below.

**What the cluster is sent.** One task per attempt: ``run_on_worker`` of the command and the
node's invoker (``Invoker.for_node``), both pickled here, whose result is the attempt's event,
pickled on the worker. The scheduler unpickles every task it is sent, but to it the attempt is
bytes: it needs flowcore installed (for ``run_on_worker``), never the workflow's node modules;
the workers need both (see the README). A worker that cannot load the node's code fails the
attempt and says so.

**Where an attempt runs: pinned, so that a worker's death is an attempt failure.** distributed
reschedules a task whose worker died on another worker (up to ``allowed-failures``, default 3,
then ``KilledWorker``). For flowcore that would be a silent second run of an attempt beside the
core's own retry: two attempts of one instance in flight and side effects done twice. Setting
``allowed-failures: 0`` is the scheduler's configuration, which users' clusters do not have and
a client must not change for everyone. Watching the scheduler from here and cancelling the task
when its worker dies would lose the race: the scheduler hands the task to another worker in the
same moment it tells its clients (a test saw it happen). So this runner picks the worker for each
attempt itself (``_Placement``: the one with the fewest of this process's attempts per thread) and
submits with ``workers=[it], allow_other_workers=False``: a task whose worker left has nowhere
else to go (the scheduler parks it, "no-worker"). This process hears the worker leave (the scheduler's ``remove-worker`` event on
its "all" topic, and a look at the cluster's workers every ``CHECK_SECONDS`` as a safety net),
fails each attempt that ran there (error type ``WorkerLost``) and releases its task. The core
retries it as the node's retry policy says. The cost: no work stealing between workers (the
attempts carry their inputs, so there is no data locality to lose), and a worker restarted at the
same address (a nanny with a fixed ``--worker-port``) could take a parked task up in the moment
before it is released.

**Cancellation, confirmed truthfully.** Python cannot interrupt a thread, and cancelling a dask
future does not stop a task that runs (its future just says "cancelled" at once). So a cancel
marks the attempt on its worker instead (``client.run`` there, the cancels of one step in one
message): ``ctx.cancelled`` turns true, and an attempt that had not started yet never does. The
future is left alone, so its end is seen: the cancel is confirmed when the task ended (its result
is ignored), or ``grace`` seconds after the cancel as *abandoned* (the worker's thread may run on;
its task still counts in the worker's load until it ends) and the run summary counts it. A
cancelled attempt whose worker left is confirmed abandoned too: a worker is also removed when it
stops answering, so this process cannot tell that its code stopped.

Only the drive loop's thread changes the backend's state. The client's event loop reports what
it learns (a task ended, a worker left or joined) through ``notices``, which ``wait`` reads.
"""
from __future__ import annotations

import asyncio
import logging
import pickle
import queue
import random
import threading
import time
import uuid
from collections import Counter, OrderedDict, defaultdict

import attrs
import cloudpickle
from distributed import CancelledError, Client, LocalCluster
from distributed.comm.addressing import get_address_host_port

from scheduler_core import CancelConfirmed, NodeFailed, NodeSucceeded

from .context import NodeContext
from .drive import DEFAULT_GRACE, ClusterUnreachable, attempt_event, describe, drain

CONNECT_SECONDS = 5.0  # how long reaching the scheduler may take before the run is refused
CHECK_SECONDS = 2.0  # how often, while attempts are out, the cluster's workers are looked at (a safety net)
STOPPED_KEPT = 10_000  # cancel marks a worker keeps for attempts that have not reached it (the newest)


# -- on the workers ------------------------------------------------------------------------------

_LOCK = threading.Lock()
_RUNNING: dict[str, NodeContext] = {}  # dask key -> the context of an attempt running in this process
_STOPPED: OrderedDict[str, None] = OrderedDict()  # dask keys cancelled before they started here


def _dumps(value) -> bytes:
    """Pickled as distributed would: by reference where plain pickle can, else by cloudpickle."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a lambda, a local function, an object of __main__: cloudpickle copes
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def run_on_worker(cmd_bytes: bytes, invoker_bytes: bytes, run_id: str, dask_key: str) -> bytes:
    """One attempt, on a worker: its event, pickled (None: cancelled before it started)."""
    cmd = pickle.loads(cmd_bytes)
    with _LOCK:
        if dask_key in _STOPPED:
            del _STOPPED[dask_key]
            return _dumps(None)
        ctx = _RUNNING[dask_key] = NodeContext(run_id, cmd)
    try:
        try:
            invoker = pickle.loads(invoker_bytes)
        except Exception as exc:  # noqa: BLE001 - the node's module is missing here, or fails to import
            event = NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=time.time(),
                               error_type="NodeCodeUnavailable",
                               message=f"the dask worker {_worker_address()} cannot load this node's code "
                                       f"({type(exc).__name__}: {describe(exc)}); make the workflow's node "
                                       f"modules importable on every worker (PYTHONPATH, or install them)")
        else:
            event = attempt_event(cmd, ctx, lambda: invoker.call(cmd, ctx), time.time)
    finally:
        with _LOCK:
            del _RUNNING[dask_key]
    try:
        return _dumps(event)
    except Exception as exc:  # noqa: BLE001 - what the node returned cannot travel back
        return _dumps(NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=time.time(),
                                 started_at=getattr(event, "started_at", None), error_type=type(exc).__name__,
                                 message=f"the node's output cannot be sent back from the dask worker: "
                                         f"{describe(exc)}"))


def stop_on_worker(dask_keys: list[str]) -> None:
    """Run on the attempts' worker (``client.run``): each attempt sees ``ctx.cancelled``; one that
    has not started yet never does. The cancels of one step come together, so an attempt queued
    behind cancelled ones cannot start in a thread they free before its own cancel arrives."""
    with _LOCK:
        for dask_key in dask_keys:
            ctx = _RUNNING.get(dask_key)
            if ctx is not None:
                ctx.cancel()
            else:
                _STOPPED[dask_key] = None
        while len(_STOPPED) > STOPPED_KEPT:
            _STOPPED.popitem(last=False)


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "(unknown)"


# -- in this process -----------------------------------------------------------------------------

class _GivenUpTaskNotice(logging.Filter):
    """Drops the WARNING an in-process worker logs as it closes over an attempt of ours still running
    ("Async instruction for <Task ... execute('flowcore-...')> ended with CancelledError"): the
    attempt was abandoned after its grace period, which the run summary already says."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("execute('flowcore-" in message and message.endswith("ended with CancelledError"))


_GIVEN_UP_TASK_NOTICE = _GivenUpTaskNotice()


class _QuietWhileClustersOpen:
    """distributed's stream handlers show warnings and worse only, while any in-process cluster of
    this process is open. (LocalCluster's own ``silence_logs`` does it per cluster, and only the
    cluster that found the handlers loud restores them as it closes: with several open at once, a
    worker driving runs side by side, the first one to close turned INFO back on for the others,
    which logged their whole shutdown on stderr.)"""

    ROOTS = ("distributed", "bokeh")

    def __init__(self):
        self.lock = threading.Lock()
        self.open = 0
        self.saved: list[tuple[logging.Handler, int]] = []

    def cluster_opens(self) -> None:
        with self.lock:
            if self.open == 0:
                self.saved = [(h, h.level) for root in self.ROOTS for h in logging.getLogger(root).handlers
                              if isinstance(h, logging.StreamHandler)]
                for handler, level in self.saved:
                    handler.setLevel(max(level, logging.WARNING))
            self.open += 1

    def cluster_closed(self) -> None:
        with self.lock:
            self.open -= 1
            if self.open == 0:
                for handler, level in self.saved:
                    handler.setLevel(level)
                self.saved = []


_QUIET = _QuietWhileClustersOpen()


def connect(address, timeout: float = CONNECT_SECONDS) -> Client:
    """A client of the scheduler at ``address`` (or of a cluster object); ``ClusterUnreachable`` if
    it is not an address or nothing answers there within ``timeout`` seconds."""
    if isinstance(address, str):
        try:
            get_address_host_port(address)
        except ValueError as exc:  # checked first: a Client given a bad address hangs on exit
            raise ClusterUnreachable(f"{address!r} is not a dask scheduler address ({exc}); give one like "
                                     f"tcp://HOST:PORT") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachable(f"cannot reach the dask scheduler at {address}: {describe(exc)}") from None


class _Placement:
    """How many of this process's attempts each worker of one cluster holds, shared by every run this
    process drives there (a ``flowcore worker`` drives several at once): the next attempt goes to the
    worker with the fewest per thread (ties broken at random, so that processes sharing a cluster do
    not all start on the same worker). Attempts given up on count until they end (or their run's
    drive does): their threads are busy. Other clients' work on the cluster is not seen."""

    def __init__(self):
        self.lock = threading.Lock()
        self.load: Counter = Counter()

    def take(self, nthreads: dict[str, int]) -> str | None:
        """The worker for the next attempt, counted as holding it (None: there are no workers)."""
        with self.lock:
            if not nthreads:
                return None
            worker = min(nthreads, key=lambda w: (self.load[w] / nthreads[w], random.random()))
            self.load[worker] += 1
            return worker

    def give_back(self, worker: str) -> None:
        with self.lock:
            if self.load[worker] > 1:
                self.load[worker] -= 1
            else:
                del self.load[worker]


_PLACEMENTS: dict[str, _Placement] = {}  # scheduler address -> its placement


@attrs.define(eq=False)
class _Attempt:
    cmd: object
    dask_key: str
    worker: str | None = None  # the worker it is pinned to, once submitted
    future: object = None
    cancelled_at: float | None = None

    @property
    def key(self) -> tuple:
        return self.cmd.node, self.cmd.item, self.cmd.attempt


class DaskBackend:
    def __init__(self, invoker, run_id: str, max_parallel: int = 8, *, address: str | None = None,
                 grace: float = DEFAULT_GRACE, clock=time.time, connect_timeout: float = CONNECT_SECONDS):
        self.invoker = invoker
        self.run_id = run_id
        self.clock = clock
        self.grace = grace
        self.cluster = None
        if address is None:
            # its scheduler serves HTTP whatever the dashboard setting: on a free port, not dask's 8787
            # (which a user's own cluster, or a child run's cluster beside its parent's, may hold)
            _QUIET.cluster_opens()
            try:
                self.cluster = LocalCluster(n_workers=1, threads_per_worker=max_parallel, processes=False,
                                            silence_logs=False, dashboard_address=None,
                                            scheduler_kwargs={"dashboard_address": ":0"})
            except BaseException:
                _QUIET.cluster_closed()
                raise
            logging.getLogger("distributed.worker.state_machine").addFilter(_GIVEN_UP_TASK_NOTICE)  # once
        try:
            self.client = connect(address or self.cluster, connect_timeout)
        except BaseException:
            if self.cluster is not None:
                self._close_own_cluster()
            raise
        self.where = address or "the in-process cluster"
        self.scheduler_address = self.client.scheduler.address
        self.placement = _PLACEMENTS.setdefault(self.scheduler_address, _Placement())  # (setdefault: atomic)
        self.token = uuid.uuid4().hex[:8]  # keys of this drive only: another process may drive the run later
        self.notices: queue.SimpleQueue = queue.SimpleQueue()  # from the client's event loop
        self.attempts: dict[tuple, _Attempt] = {}  # (node, item, attempt) -> its attempt, until reported
        self.given_up: dict[tuple, _Attempt] = {}  # attempts abandoned (reported) whose tasks still run
        self.unsent: list[_Attempt] = []  # started since the last wait: sent together
        self.unstopped: dict[str, list[str]] = defaultdict(list)  # worker -> keys cancelled since the last wait
        self.ready: list = []  # events known before any notice (cancels of attempts not sent, failed sends)
        self.invokers: dict[str, bytes] = {}  # node -> its pickled invoker (a fan-out sends one node often)
        self.nthreads: dict[str, int] = {}  # worker address -> its threads
        self.cancelling = 0
        self.abandoned = 0
        self.client.subscribe_topic("all", self._on_cluster_event)
        self._look_at_workers()

    def now(self) -> float:
        return self.clock()

    # -- the drive loop's side ---------------------------------------------------------------------

    def start(self, cmd) -> None:
        attempt = _Attempt(cmd, f"flowcore-{self.run_id}/{cmd.node}{list(cmd.item)}#{cmd.attempt}-{self.token}")
        self.attempts[attempt.key] = attempt
        self.unsent.append(attempt)

    def cancel(self, cmd) -> None:
        attempt = self.attempts.get((cmd.node, cmd.item, cmd.attempt))
        if attempt is None:  # reported already: it has stopped
            self.ready.append(self._confirmed(cmd))
        elif attempt.future is None:  # not sent yet: it never starts
            self.unsent.remove(attempt)
            del self.attempts[attempt.key]
            self.ready.append(self._confirmed(cmd))
        elif attempt.cancelled_at is None:
            attempt.cancelled_at = self.clock()
            self.cancelling += 1
            self.unstopped[attempt.worker].append(attempt.dask_key)

    def in_flight(self) -> int:
        """Attempts out or winding down after a cancel (the core may be waiting to retry them)."""
        return len(self.attempts)

    def wait(self, timeout):
        self._send_stops()
        events = self._send() + self.ready
        self.ready = []
        if events:
            timeout = 0
        elif self.attempts:
            timeout = CHECK_SECONDS if timeout is None else min(timeout, CHECK_SECONDS)
        for notice in drain(self.notices, timeout, winding_down=self.cancelling > 0):
            events += self._take(notice)
        if self.cancelling:
            events += self._abandon_overdue()
        if self.attempts and self.clock() >= self.next_look:
            events += self._look_at_workers()
        return events

    def close(self, grace: float) -> int:
        """Give cancelled attempts ``grace`` seconds to end; count those that did not."""
        self._send_stops()
        end = self.clock() + grace
        while self.cancelling and (left := end - self.clock()) > 0:
            for notice in drain(self.notices, min(left, 0.05)):
                self._take(notice)
        self.abandoned += self.cancelling
        for attempt in [*self.attempts.values(), *self.given_up.values()]:
            if attempt.worker is not None:
                self.placement.give_back(attempt.worker)
        # not subscribed while it leaves: the scheduler would tell this very client that it left,
        # over the connection it is closing, and log that as CRITICAL with a traceback
        self.client.unsubscribe_topic("all")
        self.client.close()
        if self.cluster is not None:  # its own cluster: no other run will use its placement
            _PLACEMENTS.pop(self.scheduler_address, None)
            self._close_own_cluster()
        return self.abandoned

    def _close_own_cluster(self) -> None:
        """Close the in-process cluster, its workers first without waiting for their threads: one that
        runs an abandoned attempt may run on for as long as its code does (the cluster's own close
        waited for it, up to 30 s, past the grace period the run had given it). The thread is a
        daemon's: it does not keep the process alive."""
        try:
            for worker in list(self.cluster.workers.values()):
                try:
                    self.cluster.sync(worker.close, executor_wait=False, reason="flowcore run ended")
                except Exception:  # noqa: BLE001 - a worker that failed to close: the cluster's close tries again
                    pass
            self.cluster.close()
        finally:
            _QUIET.cluster_closed()

    # -- sending -----------------------------------------------------------------------------------

    def _send(self) -> list:
        """Submit the attempts started since the last wait, one batch per worker; the events of
        those that could not be sent."""
        failed, batches = [], defaultdict(list)
        if self.unsent and not self.nthreads:
            self._look_at_workers()
        for attempt in self.unsent:
            try:
                args = (_dumps(attempt.cmd), self._invoker_bytes(attempt.cmd.node), self.run_id, attempt.dask_key)
            except Exception as exc:  # noqa: BLE001 - its input cannot be pickled
                del self.attempts[attempt.key]
                failed.append(self._failed(attempt, type(exc).__name__, f"its input cannot be sent to a dask "
                                                                        f"worker: {describe(exc)}"))
                continue
            attempt.worker = self.placement.take(self.nthreads)
            if attempt.worker is None:
                del self.attempts[attempt.key]
                failed.append(self._failed(attempt, "DaskClusterEmpty", f"the dask cluster at {self.where} has no "
                                                                        f"workers to run it"))
                continue
            batches[attempt.worker].append((attempt, args))
        self.unsent = []
        for worker, batch in batches.items():
            futures = self.client.map(run_on_worker, *zip(*(args for _, args in batch)),
                                      key=[a.dask_key for a, _ in batch], workers=[worker],
                                      allow_other_workers=False, pure=False, retries=0)
            for (attempt, _), future in zip(batch, futures):
                attempt.future = future
            self.client.loop.add_callback(self._follow, [(a.key, a.future) for a, _ in batch])
        return failed

    def _send_stops(self) -> None:
        """Tell the workers of the attempts cancelled since the last wait, one message per worker."""
        for worker, keys in self.unstopped.items():
            self.client.loop.add_callback(self._stop, worker, keys)
        self.unstopped = defaultdict(list)

    def _invoker_bytes(self, node: str) -> bytes:
        found = self.invokers.get(node)
        if found is None:
            found = self.invokers[node] = _dumps(self.invoker.for_node(node))
        return found

    # -- what the client's event loop reports --------------------------------------------------------

    async def _follow(self, sent: list[tuple]) -> None:
        """On the client's event loop: for each (key, future) sent, wait for the task to end, fetch
        its result and report it (distributed joins the fetches that are due together)."""
        await asyncio.gather(*(self._follow_one(key, future) for key, future in sent))

    async def _follow_one(self, key: tuple, future) -> None:
        try:
            outcome = await self.client.gather(future, asynchronous=True)
        except Exception as exc:  # noqa: BLE001 - the task erred, or its future was cancelled (CancelledError)
            outcome = exc
        self.notices.put(("ended", key, future, outcome))

    async def _stop(self, worker: str, dask_keys: list[str]) -> None:
        """On the client's event loop: tell a worker to cancel these attempts."""
        try:
            await self.client.run(stop_on_worker, dask_keys, workers=[worker], on_error="ignore", asynchronous=True)
        except Exception:  # noqa: BLE001 - the worker is gone: the notice that it left confirms the cancel
            pass

    async def _release(self, future) -> None:
        try:
            await self.client.cancel([future], asynchronous=True)
        except Exception:  # noqa: BLE001 - the client is closing: the task goes with it
            pass

    def _on_cluster_event(self, event) -> None:
        """On the client's event loop: the scheduler's "all" topic, of which workers leaving and joining matter."""
        _, msg = event
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "remove-worker":
            self.notices.put(("left", msg["worker"]))
        elif action == "add-worker":
            self.notices.put(("joined", msg["worker"]))

    def _take(self, notice) -> list:
        """The events a notice means (on the drive loop's thread)."""
        kind = notice[0]
        if kind == "ended":
            _, key, future, outcome = notice
            attempt = self.attempts.get(key)
            if attempt is None or attempt.future is not future:
                if key in self.given_up and self.given_up[key].future is future:
                    self.placement.give_back(self.given_up.pop(key).worker)  # its thread is free again
                return []  # reported already: abandoned, or failed with its worker
            self._forget(attempt)
            if attempt.cancelled_at is not None:
                self.cancelling -= 1
                return self._late(outcome) + [self._confirmed(attempt.cmd)]
            return [self._ended(attempt, outcome)]
        if kind == "left":
            return self._worker_left(notice[1])
        return self._look_at_workers()  # a worker joined: learn its threads

    def _ended(self, attempt: _Attempt, outcome):
        if isinstance(outcome, bytes):
            event = pickle.loads(outcome)
            if type(event) in (NodeSucceeded, NodeFailed):
                return self._on_this_clock(event)
            return self._failed(attempt, "DaskError", "the attempt did not run on its dask worker")
        if isinstance(outcome, CancelledError):  # flowcore releases a task only once it has reported it
            return self._failed(attempt, "DaskTaskLost", f"the dask cluster dropped its task (the scheduler went "
                                                         f"away or was restarted?): {describe(outcome)}")
        return self._failed(attempt, type(outcome).__name__,
                            f"its dask task failed outside the node's code: {describe(outcome)}")

    def _late(self, outcome) -> list:
        """The result of an attempt that ended after its cancel, if it ran (the core keeps it in the
        instance's history, marked late); nothing for one stopped before it started or lost."""
        if not isinstance(outcome, bytes):
            return []
        try:
            event = pickle.loads(outcome)
        except Exception:  # noqa: BLE001 - a value that cannot be read back: the cancel stands alone
            return []
        return [self._on_this_clock(event)] if type(event) in (NodeSucceeded, NodeFailed) else []

    def _on_this_clock(self, event):
        """The event with its times moved onto this process's clock (the worker's may differ), its
        duration kept: the drive loop orders events by time, with its own timers."""
        shift = self.clock() - event.at
        started = None if event.started_at is None else event.started_at + shift
        return attrs.evolve(event, at=event.at + shift, started_at=started)

    def _worker_left(self, worker: str) -> list:
        self.nthreads.pop(worker, None)
        for attempt in [a for a in self.given_up.values() if a.worker == worker]:
            self.placement.give_back(self.given_up.pop(attempt.key).worker)
        events = []
        for attempt in [a for a in self.attempts.values() if a.worker == worker]:
            self._forget(attempt)
            self.client.loop.add_callback(self._release, attempt.future)
            if attempt.cancelled_at is not None:
                self.cancelling -= 1
                self.abandoned += 1
                events.append(self._confirmed(attempt.cmd, abandoned=True))
            else:
                events.append(self._failed(attempt, "WorkerLost", f"the dask worker {worker} running the attempt "
                                                                  f"left the cluster before it ended (its process "
                                                                  f"died or stopped answering)"))
        return events

    def _look_at_workers(self) -> list:
        """Learn the cluster's workers; the events of attempts whose worker is no longer among them."""
        self.next_look = self.clock() + CHECK_SECONDS
        try:
            current = self.client.nthreads()
        except (OSError, TimeoutError):
            return []  # the scheduler did not answer: its futures say what happens next
        events = []
        for worker in [w for w in self.nthreads if w not in current]:
            events += self._worker_left(worker)
        self.nthreads = dict(current)
        return events

    def _abandon_overdue(self) -> list:
        now, events = self.clock(), []
        for attempt in [a for a in self.attempts.values() if a.cancelled_at is not None]:
            if now - attempt.cancelled_at >= self.grace:
                del self.attempts[attempt.key]
                self.given_up[attempt.key] = attempt  # its worker's thread stays busy until it ends
                self.cancelling -= 1
                self.abandoned += 1
                events.append(self._confirmed(attempt.cmd, abandoned=True))
        return events

    def _forget(self, attempt: _Attempt) -> None:
        del self.attempts[attempt.key]
        self.placement.give_back(attempt.worker)

    def _confirmed(self, cmd, abandoned: bool = False) -> CancelConfirmed:
        return CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(), abandoned=abandoned)

    def _failed(self, attempt: _Attempt, error_type: str, message: str) -> NodeFailed:
        cmd = attempt.cmd
        return NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(), error_type=error_type,
                          message=message)
