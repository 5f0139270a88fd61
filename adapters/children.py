"""Child runs of ``subworkflow`` nodes: who starts them, drives them and reports their end.

The core parks a ``subworkflow`` instance and asks for its child (``StartChild``, again after every
``Resumed``); it hears the child's end as ``ChildEnded`` and asks for a cancel (``CancelChild``)
when the instance stops waiting. This module carries those out for one drive of the parent run:

- **One child per instance, found again.** The child's run id is derived from the parent's run
  id, the node and the item (``child_run_id``), so a parent resumed after a crash finds the child
  it started instead of starting a second: a child that has ended is read and its end reported at
  once; one that has not is driven on (taken over as any run is); one a live process drives is
  left to it.
- **Driven in this process, in a thread of its own**, with the same engine and store, while the
  parent's drive goes on (``WithChildren`` counts the children as work in flight, and wakes the
  parent's drive when one ends). A child left waiting (for an answer, a far timer) ends its
  thread; the parent then waits too.
- **Reported through the inbox when ended elsewhere.** A child that ends in a drive that is not
  its parent's (``resume CHILD``, a worker, ``cancel CHILD``) posts its end to the parent's inbox
  (``child_ended``) and drives the parent on if no live process does (``Engine._tell_parent``;
  a cancel's drive, which starts nothing, only applies it there).
- **Cancels.** ``CancelChild`` posts a cancel to the child's inbox (applied by the child's
  driver) or, when nothing drives the child, applies it (``Engine.cancel``).

A child deeper than the node's ``max_depth`` is never made: the node fails (``max_depth``).
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any

from scheduler_core import CancelChild, ChildEnded, RunStatus, StartChild

from .node_types.subworkflow import ChildInputProblem
from .recovery import RunBusy
from .report import child_run_id
from .store import ENDED, UnknownRun


def child_output(state) -> Any:
    """What a child run that succeeded gives its parent: the output of its single sink, or
    ``{sink id: output}`` with several. A sink inside a fan-out gives the list of its items' outputs
    (those that succeeded, in item order); a sink that did not succeed gives null."""
    g = state.graph
    sinks = [n for n in range(len(g.ids)) if not g.out_edges[n]]
    outputs = {g.ids[n]: _output_of(state, n) for n in sinks}
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def _output_of(state, n: int) -> Any:
    if state.graph.depth[n] == 0:
        record = state.records.get((n, ()))
        return record.ports.get("result") if record is not None and record.status == "succeeded" else None
    done = sorted((key[1], r) for key, r in state.records.items() if key[0] == n and r.status == "succeeded")
    return [r.ports.get("result") for _, r in done]


def ended_body(state) -> dict:
    """What a finished child run tells its parent (a ``child_ended`` request's body, less the instance)."""
    if state.status == RunStatus.SUCCEEDED:
        return {"status": "succeeded", "ports": {"result": child_output(state)}}
    error = state.error
    message = error.message if error is not None else f"the child run {state.status}"
    if state.status == RunStatus.CANCELLED:
        return {"status": "cancelled", "error_type": "cancelled", "message": message}
    return {"status": "failed", "error_type": "subworkflow", "message": message}


def ended_event(node: str, item, body: dict, at: float) -> ChildEnded:
    return ChildEnded(node=node, item=tuple(item), at=at, status=body["status"], ports=body.get("ports"),
                      error_type=body.get("error_type"), message=body.get("message"))


class ChildRuns:
    """The child runs one drive of a parent run starts, finds, drives and cancels (its ``on_child``)."""

    def __init__(self, engine, run_id: str, wf, options: dict, clock, apply_only: bool = False):
        self.engine = engine
        self.run_id = run_id
        self.wf = wf
        self.options = options
        self.clock = clock
        self.apply_only = apply_only  # a drive that only applies requests starts no child...
        self.deferred = False  # ...and notes it asked for one: the next driver's Resumed asks again
        self.depth = options.get("depth", 0)
        self.ended: queue.SimpleQueue = queue.SimpleQueue()  # ChildEnded events, or None: a child thread ended
        self.results: queue.SimpleQueue | None = None  # the runner's own queue of results, if it has one
        self.lock = threading.Lock()
        self.live: dict[str, threading.Thread] = {}  # child run id -> the thread driving it
        self.drives: dict[str, Any] = {}  # child run id -> its Drive (to drain it when this drive stops)
        self.cancelled: set[str] = set()
        self.draining = False  # the parent's drive was told to stop: so are its children, at once

    def __call__(self, cmd) -> None:
        if type(cmd) is StartChild:
            if self.apply_only:
                self.deferred = True
            else:
                self.start(cmd)
        elif type(cmd) is CancelChild:
            self.cancel(cmd)

    def count(self) -> int:
        with self.lock:
            return len(self.live)

    # -- starting or finding a child -------------------------------------------------------

    def start(self, cmd: StartChild) -> None:
        child_id = child_run_id(self.run_id, cmd.node, cmd.item)
        with self.lock:
            if child_id in self.live:
                return
        impl = self.engine._node_impl(self.wf, cmd.node)
        parent = {"run_id": self.run_id, "node": cmd.node, "item": list(cmd.item) or None}
        try:
            info = self.engine.store.info(child_id)
        except UnknownRun:
            info = None
        if info is not None and info.options.get("parent") != parent:
            self._report(cmd, {"status": "failed", "error_type": "subworkflow", "message": (
                f"the run {child_id!r} is in the store, but is no child of this instance (another run took "
                f"its id); its child run cannot be made")})
        elif info is not None and info.status in ENDED:
            self._report(cmd, ended_body(self.engine.load(child_id)[2]))
        elif info is not None:
            self._take_over(cmd, child_id)
        elif self.depth + 1 > impl.max_depth:
            self._report(cmd, {"status": "failed", "error_type": "max_depth", "message": (
                f"subworkflow {cmd.node!r} would start a child run at depth {self.depth + 1}, deeper than its "
                f"max_depth of {impl.max_depth} (does the recursion never end?)")})
        else:
            try:
                trigger = impl.child_trigger(cmd.input)
            except ChildInputProblem as exc:
                self._report(cmd, {"status": "failed", "error_type": "subworkflow_input", "message": str(exc)})
                return
            self._spawn(cmd, child_id, lambda on_drive: self.engine._run_child(
                impl.path, trigger, child_id, parent, self.depth + 1, self.options, on_drive))

    def _take_over(self, cmd: StartChild, child_id: str) -> None:
        try:
            lease = self.engine.claim(child_id)
        except RunBusy:
            return  # a live process drives it: it tells this run when the child ends (the inbox)
        self._spawn(cmd, child_id, lambda on_drive: self.engine._take_over(
            child_id, lease, on_drive=on_drive, report_to_parent=False))

    def _spawn(self, cmd: StartChild, child_id: str, drive) -> None:
        def body():
            event = None
            try:
                result = drive(lambda d: self._register(child_id, d))
            except Exception as exc:  # noqa: BLE001 - the child's failure to run is the node's failure
                event = ended_event(cmd.node, cmd.item, {
                    "status": "failed", "error_type": "subworkflow",
                    "message": f"child run {child_id!r} could not run: {exc}"}, self.clock())
            else:
                if result.state.finished:  # (else it waits, for an answer or a far timer: so does its parent)
                    event = ended_event(cmd.node, cmd.item, ended_body(result.state), self.clock())
            finally:
                # out of the in-flight count and its end handed over at once (under the lock ``count``
                # takes): the parent's drive never sees it gone without its end, nor its end with it
                # still counted (it would wait for nothing)
                with self.lock:
                    self.live.pop(child_id, None)
                    self.drives.pop(child_id, None)
                    self._deliver(event)
        thread = threading.Thread(target=body, name=f"flowcore-child-{child_id}", daemon=True)
        with self.lock:
            self.live[child_id] = thread
        thread.start()

    def _register(self, child_id: str, drive) -> None:
        with self.lock:
            self.drives[child_id] = drive
            draining = self.draining and child_id not in self.cancelled
        if draining:
            drive.drain()

    def _report(self, cmd: StartChild, body: dict) -> None:
        self._deliver(ended_event(cmd.node, cmd.item, body, self.clock()))

    def _deliver(self, event: ChildEnded | None) -> None:
        """Hand a child's end (None: a child thread ended without one) to the parent's drive: among
        the runner's own results where it keeps them in a queue (its wait wakes at once), else here."""
        if self.results is not None:
            if event is not None:
                self.results.put(event)
            return
        self.ended.put(event)

    # -- cancelling ---------------------------------------------------------------------------

    def cancel(self, cmd: CancelChild) -> None:
        child_id = child_run_id(self.run_id, cmd.node, cmd.item)
        with self.lock:
            live = child_id in self.live
            self.cancelled.add(child_id)
        if live:  # its drive, here, applies it from the inbox
            self.engine.store.post(child_id, "cancel", {"reason": cmd.reason}, at=time.time())
            return
        self.engine._cancel_child(child_id, cmd.reason)

    # -- what the parent's drive waits for ----------------------------------------------------

    def take(self) -> list:
        """The ends reported so far (without waiting)."""
        out = []
        while True:
            try:
                event = self.ended.get_nowait()
            except queue.Empty:
                return out
            if event is not None:
                out.append(event)

    def wait(self, timeout: float | None) -> list:
        """The ends reported so far, after waiting up to ``timeout`` for one (or for a child's thread to end)."""
        try:
            first = self.ended.get(timeout=timeout) if timeout != 0 else self.ended.get_nowait()
        except queue.Empty:
            return []
        return ([first] if first is not None else []) + self.take()

    def drain(self) -> None:
        """The parent's drive is told to stop (a worker's SIGTERM): its children start nothing new either,
        from now on, not only once the parent has given up on them. A child being cancelled is left to
        apply its cancel."""
        with self.lock:
            self.draining = True
            drives = [d for child_id, d in self.drives.items() if child_id not in self.cancelled]
        for drive in drives:
            drive.drain()

    def close(self, grace: float) -> None:
        """The parent's drive ends: children it cancelled get ``grace`` seconds to apply it; the others
        are told to stop (they drain, as the parent did, and the next driver of the parent finds them)."""
        with self.lock:
            threads = dict(self.live)
            for child_id, drive in self.drives.items():
                if child_id not in self.cancelled:
                    drive.drain()
        end = time.monotonic() + grace
        for thread in threads.values():
            thread.join(max(0.0, end - time.monotonic()))


class WithChildren:
    """A backend that also counts the parent's child runs as work in flight: the parent's drive keeps
    going while one runs, and wakes when one ends. Everything else is the runner's own backend.

    A runner that keeps its results in a queue (thread, asyncio) gets the children's ends in it, so
    its own wait wakes for them; for the others, the wait looks at both in turn (every ``SLICE``)
    while node attempts and children are in flight at once."""

    SLICE = 0.002

    def __init__(self, inner, children: ChildRuns):
        self.inner = inner
        self.children = children
        results = getattr(inner, "results", None)  # the thread and asyncio runners' queue of results
        if isinstance(results, queue.SimpleQueue):
            children.results = results

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def now(self) -> float:
        return self.inner.now()

    def start(self, cmd) -> None:
        self.inner.start(cmd)

    def cancel(self, cmd) -> None:
        self.inner.cancel(cmd)

    def in_flight(self) -> int:
        return self.inner.in_flight() + self.children.count()

    def wait(self, timeout):
        if self.children.results is not None:
            return self.inner.wait(timeout)  # the children's ends come among the runner's own results
        live = self.children.count()  # (read first: a child no longer counted has handed over its end)
        ended = self.children.take()
        if ended or not live:
            return self.inner.wait(0 if ended else timeout) + ended
        if self.inner.in_flight() == 0:
            return self.inner.wait(0) + self.children.wait(timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.SLICE if end is None else min(self.SLICE, max(0.0, end - time.monotonic()))
            out = self.inner.wait(left) + self.children.take()
            if out or not self.children.count() or (end is not None and time.monotonic() >= end):
                return out

    def close(self, grace: float) -> int:
        abandoned = self.inner.close(grace)
        self.children.close(grace)
        return abandoned
