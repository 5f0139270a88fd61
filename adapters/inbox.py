"""The inbox: answers and cancels asked for from anywhere, applied by whichever process drives the run.

A request is written to the store (``post``) by the process a person used (``resume --node``,
``cancel``), and becomes an event (``InputProvided``, ``CancelRequested``, ``NodeCancelRequested``)
that the driving process feeds to ``step`` with the completions and due timers of the moment, in
time order: the event carries the time the request was written. The core decides what a request
does, and refuses one that no longer fits (``Refused``, pointing at the event by its id); the step
that applied or refused a request marks it so in the same transaction that logs the step.

A process that takes a run over (a worker, a resume, a cancel) first fires the timers that fell
due while no process drove the run, merged by time with the requests waiting in the inbox
(``takeover_events``): a timer due at T fires before an answer given after T.
"""
from __future__ import annotations

import time

import attrs

from scheduler_core import (CancelRequested, ChildEnded, Draining, InputProvided, NodeCancelRequested, Refused, Resumed,
                            RunStarted, RunStatus, State, TimerFired, cancel_problem, input_problem)

from .recovery import RunRefused
from .report import parked_timers
from .store import ENDED, Request


class RequestPending(RuntimeError):
    """The process driving the run has not applied the request yet; it stays in the inbox."""


def item_path(item) -> tuple:
    if item is None:
        return ()
    if isinstance(item, int):
        return (item,)
    return tuple(int(i) for i in item)


def answer_problem(state: State, node: str, item, port) -> str | None:
    """Why an answer would be refused at once, or None (the driver may still refuse it: a timeout
    can fall due before it is applied)."""
    return input_problem(state, node, item_path(item), port)


def cancel_request(run_id: str, state: State, node, item, reason) -> tuple[str, dict]:
    """(kind, body) of a cancel request, or ``RunRefused`` for one that cannot be applied."""
    reason = reason or "cancelled by request"
    if node is None:
        if item is not None:
            raise RunRefused("--item names an item of a node: give --node too")
        return "cancel", {"reason": reason}
    path = None if item is None else item_path(item)
    problem = cancel_problem(state, node, path)
    if problem:
        raise RunRefused(f"run {run_id!r}: {problem}")
    return "cancel_node", {"node": node, "item": None if path is None else list(path), "reason": reason}


def event_of(request: Request, now: float):
    """The event a request stands for, at the time it was written (never later than ``now``: under
    a virtual clock the request is 'now')."""
    at = min(request.at, now)
    body = request.body
    if request.kind == "answer":
        return InputProvided(node=body["node"], item=tuple(body.get("item") or ()), at=at, value=body.get("value"),
                             port=body.get("port"))
    if request.kind == "cancel":
        return CancelRequested(at=at, reason=body.get("reason") or "cancelled by request")
    if request.kind == "cancel_node":
        item = body.get("item")
        return NodeCancelRequested(node=body["node"], item=None if item is None else tuple(item), at=at,
                                   reason=body.get("reason") or "cancelled by request")
    if request.kind == "child_ended":  # a child run ended in another drive than its parent's
        return ChildEnded(node=body["node"], item=tuple(body.get("item") or ()), at=at, status=body["status"],
                          ports=body.get("ports"), error_type=body.get("error_type"), message=body.get("message"))
    raise ValueError(f"unknown request kind {request.kind!r}")


class StoreInbox:
    """One run's inbox in a store, as the drive of that run sees it."""

    def __init__(self, store, run_id: str):
        self.store = store
        self.run_id = run_id
        self.fed: dict[int, int] = {}  # id(event) -> the request's seq, until its step is logged
        self.seen: set[int] = set()  # seqs fed by this drive
        self.unreadable: list = []  # (seq, "refused", reason) of requests no event can be made of, to mark

    def _events(self, requests, now: float) -> list:
        out = []
        for r in requests:
            if r.seq in self.seen:
                continue
            self.seen.add(r.seq)
            try:
                event = event_of(r, now)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # written by hand: refused, not fed
                self.unreadable.append((r.seq, "refused", f"the request cannot be read ({type(exc).__name__}: {exc})"))
                continue
            self.fed[id(event)] = r.seq
            out.append(event)
        return out

    def poll(self, now: float) -> list:
        return self._events(self.store.pending(self.run_id), now)

    def takeover_events(self, state: State, trigger, now: float, apply_only: bool = False) -> list:
        """The first step of a process that takes the run over.

        A queued run starts (``RunStarted``), with what its inbox holds applied before anything of
        it starts; a cancel of the whole run ends it without starting. A run that had started: the
        timers that fell due while no process drove it and the requests in its inbox, in time order
        (timeouts of attempts in flight excepted: those attempts start again, with fresh ones), then
        ``Resumed`` (the process carries on the run) or, for a drive that only applies requests,
        ``Draining`` (start nothing)."""
        asked = self._events(self.store.pending(self.run_id), now)
        if state.status == RunStatus.PENDING:
            cancel = next((e for e in asked if type(e) is CancelRequested), None)
            if cancel is not None:
                return [cancel]  # the rest is refused: the run ended before it started
            return [RunStarted(at=now, trigger=trigger), *asked]
        fired = [TimerFired(timer=tid, at=due) for due, tid in parked_timers(state) if due <= now]
        batch = sorted(fired + asked, key=lambda e: e.at)  # stable: at equal times the timer first
        if apply_only:
            return [*batch, Draining(at=now)]
        return [*batch, Resumed(at=now)]

    def outcomes(self, events, commands, index: int) -> list[tuple[int, str, str | None]]:
        """(seq, applied or refused, reason) of each request among a step's ``events`` (step ``index``)."""
        out, self.unreadable = self.unreadable, []
        if not self.fed:
            return out
        refused = {c.stimulus: c.reason for c in commands if type(c) is Refused}
        for i, e in enumerate(events):
            seq = self.fed.pop(id(e), None)
            if seq is not None:
                reason = refused.get(f"{index}.{i}")
                out.append((seq, "applied" if reason is None else "refused", reason))
        return out


def raise_if_refused(run_id: str, request: Request) -> None:
    if request.state == "refused":
        raise RunRefused(f"run {run_id!r}: {request.reason}")


def await_request(store, run_id: str, seq: int, wait: float, every: float = 0.02) -> Request:
    """The request once it is applied or refused, or as it is after ``wait`` seconds. A request left
    in the inbox of a run that has ended is refused."""
    end = time.monotonic() + wait
    while True:
        request = store.request(seq)
        if request.state != "pending":
            return request
        if store.info(run_id).status in ENDED:
            request = store.request(seq)
            if request.state == "pending":
                return attrs.evolve(request, state="refused", reason="the run has already finished")
            return request
        if time.monotonic() >= end:
            return request
        time.sleep(every)


def wake_at(state: State) -> float | None:
    """When a run no process drives next needs one: its earliest timer (attempt timeouts aside:
    nothing runs), or None."""
    if state.finished:
        return None
    timers = parked_timers(state)
    return timers[0][0] if timers else None


class NoWork:
    """The backend of a drive that only applies requests: nothing starts, nothing runs."""

    def now(self) -> float:
        return time.time()

    def start(self, cmd) -> None:
        raise RuntimeError(f"{cmd.node}: a drive that only applies requests started a node")

    def cancel(self, cmd) -> None:
        pass  # the attempt is not in this process: the next driver re-dispatches or forgets it

    def in_flight(self) -> int:
        return 0

    def wait(self, timeout) -> list:
        return []

    def close(self, grace: float) -> int:
        return 0
