"""The process runner: node attempts run in a pool of worker processes on this machine.

For CPU-bound node code, which threads cannot speed up (Python runs one thread at a time).

Workers. Up to ``max_parallel`` long-lived worker processes, started when work needs them, each
running one attempt at a time and reused for the next. They are forked by multiprocessing's
*forkserver*: a server process started once, from a fresh interpreter, by the first backend of the
driving process. Plain ``fork`` is unsafe here: the driving process has threads (the lease
heartbeat, a ``flowcore worker``'s drive threads, ``distributed``'s), and a fork copies the locks
they hold at that instant, so a child can hang on one forever. The fork server forks only its own
single-threaded self. ``spawn`` is as safe but starts a new interpreter per worker (about 280 ms
here, against about 7 ms for a fork from the server), and every cancel or timeout costs a worker.
A worker starts as the driving process is now: its ``sys.path``, working directory, environment,
standard output and error, and ``__main__`` (re-imported as multiprocessing does: a script that
starts runs needs ``if __name__ == "__main__":``). It gets the workflow's nodes pickled: each node
pickles as its fields and is built again in the worker, which imports a python node's module
there as ``adapters/imports.py`` says (the workflow's folder first). A worker leaves with the
driving process, even one that was killed (a thread of the worker watches it), and at the driving
process's exit; it is not a daemon process, so node code may start processes of its own.

Cancels and timeouts end the process. The worker running a cancelled attempt gets SIGTERM, which
raises ``AttemptCancelled`` in the node's code (``finally`` and ``with`` blocks run, and
``ctx.cancelled`` is true there); one still alive ``grace`` seconds later gets SIGKILL. The core
hears ``CancelConfirmed`` only once the process is gone, so a retry never runs beside the attempt
it replaces; the next attempt gets a new worker, so the pool keeps its parallelism. A process not
gone ``KILL_WAIT`` seconds after SIGKILL (stuck in the kernel) is abandoned and counted as such.

A worker that dies on its own (a crash in C code, ``os._exit``, SIGKILL from outside) fails the
attempt it was running ("the worker process running it died (exit code -9: SIGKILL)"), so the
node's retries apply; the pool starts another worker for the next attempt.

What ``ctx`` is in a worker: ``run_id``, ``node``, ``item``, ``attempt``, ``inputs``,
``idempotency_key`` and ``deadline`` as on every runner; ``ctx.logger``'s lines come back with the
result. Cancellation is not cooperative: a cancel does not wait for the node to look at
``ctx.cancelled``, it raises ``AttemptCancelled`` wherever the node is (inside
``ctx.wait_cancelled`` too), and ``ctx.cancelled`` turns true only then. Nothing else is shared
with the driving process: module-level state, caches and objects a node keeps live in its worker
(and last as long as the worker), and changes to them are not seen by the driving process or by
other workers. A coroutine function runs under ``asyncio.run`` in its worker, one attempt per
worker at a time.

Values cross the boundary pickled: a node's input on the way in, its ports (or its error's type
name and message) on the way out. A stored run keeps outputs as JSON anyway; in memory, an output
that does not pickle fails its node with a message that says so. Standard output goes where the
driving process's goes (to standard error under ``--json``), flushed after each attempt.
"""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # noqa: F401 - its exit hook joins child processes: ours (registered after) ends them first
import os
import pickle
import signal
import sys
import threading
import time
import weakref
from collections import deque
from multiprocessing import connection, reduction

from scheduler_core import CancelConfirmed, NodeFailed

from .context import NodeContext
from .drive import DEFAULT_GRACE, RunnerUnavailable, attempt_event, describe

KILL_WAIT = 5.0  # seconds a SIGKILLed worker may take to be gone before its attempt is abandoned


class AttemptCancelled(BaseException):
    """Raised in a node's code in a worker process when its attempt is cancelled or timed out: the
    process ends once it unwinds. A ``BaseException``, so ``except Exception`` does not swallow it."""


# -- the driving process --------------------------------------------------------------------------

class _Job:
    """One attempt, from its start until its result or its cancel confirmation is out."""
    __slots__ = ("cmd", "worker", "dispatched_at", "cancelled")

    def __init__(self, cmd):
        self.cmd = cmd
        self.worker: _Worker | None = None  # None while queued
        self.dispatched_at: float | None = None
        self.cancelled = False


class _Worker:
    """A worker process and this end of its pipe."""
    __slots__ = ("process", "conn", "job", "kill_at", "give_up_at", "broken")

    def __init__(self, process, conn):
        self.process, self.conn = process, conn
        self.job: _Job | None = None  # the attempt it runs (None: idle)
        self.kill_at: float | None = None  # set when told to end: SIGKILL follows then (monotonic)
        self.give_up_at: float | None = None  # set when killed: abandon it if not gone by then
        self.broken = False  # its pipe failed: it is dying, its sentinel will say how


class _InheritedFd:
    """One of this process's file descriptors, sent to a worker as it starts (standard output, error)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _received_fd, (reduction.DupFd(self.fd),)


def _received_fd(dup) -> int:
    return dup.detach()


def _open_fd(fd: int) -> _InheritedFd | None:
    try:
        os.fstat(fd)
    except OSError:  # closed (an embedding without standard streams): the worker keeps the server's
        return None
    return _InheritedFd(fd)


_LIVE: weakref.WeakSet = weakref.WeakSet()  # backends whose workers the exit hook ends


def _context(preload: list[str]):
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload)  # heeded only when the server starts: the first backend's
    return ctx


class ProcessBackend:
    """Runs attempts on up to ``max_parallel`` worker processes; driven from one thread (the drive
    loop's), so it needs no lock: results and process ends are read in ``wait``."""

    def __init__(self, invoker, run_id: str, max_parallel: int = 8, *, grace: float = DEFAULT_GRACE,
                 clock=time.time):
        self.run_id = run_id
        self.size = max(1, max_parallel)
        self.grace = grace
        self.clock = clock
        try:
            self.invoker_data = pickle.dumps(invoker, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - whatever pickling a node's fields raises
            raise RunnerUnavailable(f"the process runner sends the workflow's nodes to its worker processes, and "
                                    f"they do not pickle ({type(exc).__name__}: {describe(exc)}); give node fields "
                                    f"as plain data, or use the thread runner") from None
        self.context = _context(["__main__", __name__, type(invoker).__module__])
        self.jobs: dict = {}  # (node, item, attempt) -> _Job, until its result or confirmation is out
        self.pending: deque = deque()  # jobs waiting for a worker
        self.workers: list[_Worker] = []  # every worker not yet gone (idle, busy or ending)
        self.idle: list[_Worker] = []
        self.ending: list[_Worker] = []
        self.results: list = []
        self.abandoned = 0
        _LIVE.add(self)

    def now(self) -> float:
        return self.clock()

    def in_flight(self) -> int:
        """Attempts queued, running or winding down after a cancel."""
        return len(self.jobs)

    # -- starting -----------------------------------------------------------------------------

    def start(self, cmd) -> None:
        job = _Job(cmd)
        self.jobs[(cmd.node, cmd.item, cmd.attempt)] = job
        self.pending.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        """Give queued jobs to idle workers, starting workers up to the pool's size."""
        while self.pending:
            try:
                worker = self._free_worker()
            except OSError as exc:
                self._fail(self.pending.popleft(), "WorkerStartFailed", f"could not start a worker process ({exc})")
                continue
            if worker is None:
                return
            job = self.pending.popleft()
            try:
                data = pickle.dumps(job.cmd, pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - whatever pickling the input raises
                self.idle.append(worker)
                self._fail(job, type(exc).__name__, f"node {job.cmd.node!r}: its input cannot be sent to a worker "
                                                    f"process ({describe(exc)}); the process runner pickles inputs")
                continue
            try:
                worker.conn.send_bytes(data)
            except OSError:  # it died while idle: end it, and try the next worker
                self._end(worker)
                self.pending.appendleft(job)
                continue
            worker.job, job.worker, job.dispatched_at = job, worker, self.clock()

    def _free_worker(self) -> _Worker | None:
        if self.idle:
            return self.idle.pop()
        if len(self.workers) - len(self.ending) >= self.size:
            return None
        mine, theirs = self.context.Pipe()
        process = self.context.Process(
            target=serve, name=f"flowcore-worker {self.run_id}", daemon=False,  # (a daemon could not start processes)
            args=(theirs, self.invoker_data, self.run_id, dict(os.environ), _open_fd(1), _open_fd(2)))
        try:
            process.start()
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(process, mine)
        self.workers.append(worker)
        return worker

    def _fail(self, job: _Job, error_type: str, message: str) -> None:
        cmd = job.cmd
        del self.jobs[(cmd.node, cmd.item, cmd.attempt)]
        self.results.append(NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(),
                                       started_at=job.dispatched_at, error_type=error_type, message=message))

    # -- cancelling ---------------------------------------------------------------------------

    def cancel(self, cmd) -> None:
        job = self.jobs.get((cmd.node, cmd.item, cmd.attempt))
        if job is None:  # finished already: it has stopped
            self._confirm(cmd)
            return
        if job.cancelled:
            return
        job.cancelled = True
        if job.worker is None:  # queued: it never started, and now never will
            self.pending.remove(job)
            del self.jobs[(cmd.node, cmd.item, cmd.attempt)]
            self._confirm(cmd)
            return
        self._end(job.worker, terminate=True)
        self._dispatch()  # a new worker takes its place if work waits

    def _end(self, worker: _Worker, terminate: bool = True) -> None:
        """Make the worker end: SIGTERM (or, to an idle one, the end of its pipe), SIGKILL after the grace."""
        if worker.kill_at is not None:
            return
        if worker in self.idle:
            self.idle.remove(worker)
        worker.kill_at = time.monotonic() + self.grace
        self.ending.append(worker)
        if terminate:
            worker.process.terminate()
        else:
            worker.conn.close()

    def _confirm(self, cmd, abandoned: bool = False) -> None:
        self.results.append(CancelConfirmed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=self.clock(),
                                            abandoned=abandoned))

    def _escalate(self) -> None:
        """SIGKILL the ending workers past their grace; abandon those a SIGKILL did not end."""
        now = time.monotonic()
        for worker in list(self.ending):
            if worker.give_up_at is None and now >= worker.kill_at:
                worker.process.kill()
                worker.give_up_at = now + KILL_WAIT
            elif worker.give_up_at is not None and now >= worker.give_up_at:
                self._forget(worker)
                job = worker.job
                if job is not None:
                    del self.jobs[(job.cmd.node, job.cmd.item, job.cmd.attempt)]
                    self.abandoned += 1
                    self._confirm(job.cmd, abandoned=True)

    def _next_escalation(self) -> float | None:
        times = [w.give_up_at if w.give_up_at is not None else w.kill_at for w in self.ending]
        return min(times) if times else None

    # -- hearing back -------------------------------------------------------------------------

    def wait(self, timeout):
        """Every event so far, after waiting up to ``timeout`` (None: until one comes) for the first."""
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            self._escalate()
            self._collect(0 if self.results else self._limit(until))
            if self.results or (until is not None and time.monotonic() >= until):
                out, self.results = self.results, []
                return out

    def _limit(self, until: float | None) -> float | None:
        """How long one look may block: until the wait's end or the next SIGKILL, whichever is first."""
        ends = [t for t in (until, self._next_escalation()) if t is not None]
        return max(0.0, min(ends) - time.monotonic()) if ends else None

    def _collect(self, limit: float | None) -> None:
        """Read the results and notice the ends that come within ``limit`` seconds."""
        watched: dict = {}
        for worker in self.workers:
            watched[worker.process.sentinel] = worker
            if worker.job is not None and worker.kill_at is None and not worker.broken:
                watched[worker.conn] = worker
        ready = connection.wait(list(watched), limit)
        for got in ready:  # results first: a worker may have sent its result and then ended
            if not isinstance(got, int):
                self._receive(watched[got])
        for got in ready:
            if isinstance(got, int):
                self._gone(watched[got])
        self._dispatch()

    def _receive(self, worker: _Worker) -> None:
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            worker.broken = True  # it is dying: its sentinel says how
            return
        job, worker.job = worker.job, None
        self.idle.append(worker)
        try:
            event = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - whatever unpickling a node's value raises
            self._fail(job, type(exc).__name__, f"node {job.cmd.node!r}: its result cannot be read back from its "
                                                f"worker process ({describe(exc)})")
            return
        del self.jobs[(job.cmd.node, job.cmd.item, job.cmd.attempt)]
        self.results.append(event)

    def _gone(self, worker: _Worker) -> None:
        """The worker process ended: confirm its cancelled attempt, or fail the one it died in."""
        while worker.job is not None and worker.kill_at is None and not worker.broken and worker.conn.poll(0):
            self._receive(worker)  # it sent its result before it ended
        worker.process.join()  # (at once: it has ended) reaps it, and sets its exit code
        code = worker.process.exitcode
        worker.process.close()
        self._forget(worker)
        job = worker.job
        if job is None:
            return
        if job.cancelled:
            del self.jobs[(job.cmd.node, job.cmd.item, job.cmd.attempt)]
            self._confirm(job.cmd)
        else:
            self._fail(job, "WorkerDied", f"the worker process running it died ({_exit_text(code)})")

    def _forget(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        for group in (self.idle, self.ending):
            if worker in group:
                group.remove(worker)
        worker.conn.close()

    # -- closing ------------------------------------------------------------------------------

    def close(self, grace: float) -> int:
        """End every worker: idle ones when their pipe closes, running ones by SIGTERM, any still
        alive ``grace`` seconds later by SIGKILL. Returns the attempts abandoned (not ended)."""
        self.grace = grace
        for worker in list(self.workers):
            self._end(worker, terminate=worker.job is not None)
        while self.workers:
            self._escalate()
            self._collect(self._limit(None))
        self.results.clear()
        _LIVE.discard(self)
        return self.abandoned

    def kill_all(self) -> None:
        """SIGKILL every worker and reap it (the exit hook: no worker outlives the driving process)."""
        for worker in list(self.workers):
            worker.process.kill()
            worker.process.join(KILL_WAIT)
        self.workers.clear()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"exit code {code}: {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


@atexit.register
def _end_workers() -> None:
    for backend in list(_LIVE):
        backend.kill_all()


# -- a worker process -----------------------------------------------------------------------------

_current: NodeContext | None = None  # the attempt this worker runs
_ending = False  # SIGTERM came: end once the attempt unwound


def serve(conn, invoker_data: bytes, run_id: str, env: dict, stdout: int | None, stderr: int | None) -> None:
    """A worker process's life: run the attempts the pipe brings, one at a time, and send back how
    each ended, until the pipe closes or SIGTERM comes."""
    _take_over(env, stdout, stderr)
    try:
        invoker, problem = pickle.loads(invoker_data), None
    except BaseException as exc:  # noqa: B036 - a node module may raise anything as it is imported, sys.exit too
        invoker, problem = None, (f"the worker process could not build the workflow's nodes "
                                  f"({type(exc).__name__}: {describe(exc)})")
    try:
        while not _ending:
            try:
                data = conn.recv_bytes()
            except EOFError:
                return  # the driving process is done with this worker
            cmd = pickle.loads(data)
            event = _attempt(invoker, problem, run_id, cmd)
            if _ending:
                break
            conn.send_bytes(_pickled(event, cmd))
    except AttemptCancelled:
        pass
    _flush()
    os._exit(0)


def _take_over(env: dict, stdout: int | None, stderr: int | None) -> None:
    """Become like the driving process (multiprocessing did sys.path and the working directory)."""
    os.environ.clear()
    os.environ.update(env)
    for fd, target in ((stdout, 1), (stderr, 2)):
        if fd is not None and fd != target:
            os.dup2(fd, target)
            os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driving process's to handle: it cancels the run
    signal.signal(signal.SIGTERM, _on_sigterm)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a worker never outlives its driving process, even one that was SIGKILLed
        threading.Thread(target=_exit_with, args=(parent,), name="flowcore-parent-watch", daemon=True).start()


def _exit_with(parent) -> None:
    parent.join()
    os._exit(1)


def _on_sigterm(signum, frame):
    global _ending
    _ending = True
    if _current is not None:
        _current.cancel_in_signal_handler()
    raise AttemptCancelled("the attempt was cancelled: its worker process is ending")


def _attempt(invoker, problem: str | None, run_id: str, cmd):
    global _current
    if problem is not None:
        return NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=time.time(),
                          error_type="WorkerSetupFailed", message=problem)
    ctx = _current = NodeContext(run_id, cmd)
    try:
        return attempt_event(cmd, ctx, lambda: invoker.call(cmd, ctx), time.time)
    finally:
        _current = None
        _flush()


def _pickled(event, cmd) -> bytes:
    try:
        return pickle.dumps(event, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - whatever pickling a node's output raises
        failed = NodeFailed(node=cmd.node, item=cmd.item, attempt=cmd.attempt, at=event.at,
                            started_at=event.started_at, logs=event.logs, error_type=type(exc).__name__,
                            message=f"node {cmd.node!r} returned a value that cannot be sent back from its worker "
                                    f"process ({describe(exc)}); the process runner pickles outputs: return plain "
                                    f"data")
        return pickle.dumps(failed, pickle.HIGHEST_PROTOCOL)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a stream node code replaced or closed
            pass
