"""The engine facade: wires a workflow, a runner and a store into runs, and resumes them.

``Engine.run`` records the run (its definition and options, with its first step) and drives it;
``Engine.resume`` takes the run's lease, rebuilds the run (``adapters.recovery``), checks the
request against the state, and drives it on. Every refusal raises ``RunRefused`` before anything
is written (a lease taken for it is given back).
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
import weakref

import attrs

from runners import (DEFAULT_GRACE, DEFAULT_LINGER, ClusterUnreachable, Drive, RunnerUnavailable,  # noqa: F401
                     backend_names, make_backend)  # (ClusterUnreachable: re-exported for the CLI)
from scheduler_core import CapChanged, Kind, RunStarted, fingerprint, initial_state

from . import inbox, recovery
from .inbox import RequestPending, answer_problem
from .recovery import RunBusy, RunRefused, current_cap, load_run
from .report import child_run_id, run_dict, run_status
from .leases import HEARTBEAT_SECONDS
from .store import (ENDED, LeaseHeld, LeaseLost, Lease, MemoryStore, RunExists, RunInfo, StoreError, UnknownRun,
                    canonical_json, definition_hash, open_store, text_hash)  # noqa: F401 (definition_hash: re-exported)
from .children import ChildRuns, WithChildren, ended_body
from .workflow_file import WorkflowError, compiled, dask_address_problem, load_workflow, workflow_to_dict
from .node_types.subworkflow import load_child_workflow

CACHED_RUNS = 8  # final states an engine keeps of the runs it drove last, to resume them without a replay
AWAIT_SLICE = 0.25  # how often a request waiting for another process to apply it looks whether that process let the run go


class RunInterrupted(StoreError):
    """The store failed while a run was being driven. Every step logged before the failure stands
    (none of the failed step's commands was carried out), so the run can be resumed once the store
    works again."""


class RunResult:
    """What a run came to: ``.status``, ``.error``, ``.records``, and ``.to_dict()`` (the ``--json`` object)."""

    def __init__(self, run_id: str, state, abandoned: int = 0, applied_by: str | None = None,
                 parent: dict | None = None):
        self.run_id = run_id
        self.state = state
        self.abandoned = abandoned
        self.parent = parent  # a child run's parent ({run_id, node, item}), from its options
        # set when a request (an answer, a cancel) was applied by another process driving the run:
        # ``state`` is the run as this process read it afterwards
        self.applied_by = applied_by

    @property
    def status(self) -> str:
        return run_status(self.state)

    @property
    def error(self) -> dict | None:
        """``{node, type, message}`` of what ended the run, or None (as in ``to_dict()``)."""
        return None if self.state.error is None else self.state.error.as_dict(with_node=True)

    def to_dict(self) -> dict:
        out = run_dict(self.run_id, self.state)
        if self.parent is not None:
            out["parent"] = dict(self.parent)
        return out

    def record(self, node: str, item=None) -> dict:
        """The ``--json`` record of one instance."""
        want = list(item) if item else None
        for r in self.to_dict()["nodes"]:
            if r["node"] == node and r["item"] == want:
                return r
        raise KeyError((node, item))

    def __repr__(self):
        return f"RunResult(run_id={self.run_id!r}, status={self.status!r})"


def new_run_id(name: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:24] or "run"
    return f"{slug}-{uuid.uuid4().hex[:8]}"


class _Heartbeat:
    """Keeps a run's lease fresh while a process drives it."""

    def __init__(self, store, run_id, lease):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(store, run_id, lease), daemon=True)

    def _beat(self, store, run_id, lease):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                store.heartbeat(run_id, lease)
            except StoreError:
                pass  # the next beat tries again; the run itself reports store failures

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


class Engine:
    def __init__(self, runner: str = "thread", max_parallel: int = 8, db: str | None = None, *,
                 linger: float = DEFAULT_LINGER, grace: float = DEFAULT_GRACE, store=None, runner_options=None,
                 dask_address: str | None = None):
        if runner not in backend_names():
            raise ValueError(f"unknown runner {runner!r}; choose one of {', '.join(backend_names())}")
        if dask_address is not None and (problem := dask_address_problem(dask_address)):
            raise ValueError(problem)
        self.runner = runner
        self.dask_address = dask_address  # for runs on the dask runner that name no scheduler of their own
        self.max_parallel = max_parallel
        self.linger = linger
        self.grace = grace
        self.store = store or (MemoryStore() if db is None else open_store(db))  # a file, or postgresql://...
        self.runner_options = dict(runner_options or {})
        self.json_only = False  # check node outputs as a stored run does, in memory too (simulate --execute)
        # run_id -> (logged batches, state) of the CACHED_RUNS runs this engine drove last: saves a replay
        self._cache: dict = {}
        self._lock = threading.Lock()  # a worker drives several runs at once through one engine

    # -- starting ----------------------------------------------------------------------------

    def run(self, workflow, trigger=None, run_id=None, *, runner=None, max_parallel=None, linger=None, grace=None,
            observer=None, path=None, dask_address=None) -> RunResult:
        wf, graph, info = self._new_run(workflow, trigger, run_id, runner=runner, max_parallel=max_parallel,
                                        linger=linger, grace=grace, path=path, dask_address=dask_address)
        lease = self._acquire(info.run_id)
        return self._drive(_Session(info.run_id, wf, info.options, lease, 0, new_run=info), initial_state(graph),
                           lambda now: [RunStarted(at=now, trigger=trigger)], observer,
                           box=inbox.StoreInbox(self.store, info.run_id))

    def submit(self, workflow, trigger=None, run_id=None, *, runner=None, max_parallel=None, path=None) -> str:
        """Store a new run, ``queued``, for a worker (or ``resume``) to start; nothing runs here. Returns
        its id. ``RunRefused`` for a taken run id or a trigger the store cannot keep; ``WorkflowError``
        for an invalid workflow."""
        wf, graph, info = self._new_run(workflow, trigger, run_id, runner=runner, max_parallel=max_parallel,
                                        path=path)
        if self.store.durable:
            try:
                json.dumps(trigger)
            except (TypeError, ValueError) as exc:
                raise RunRefused(f"the trigger cannot be stored as JSON ({exc})") from None
        try:
            self.store.create_run(attrs.evolve(info, status="queued", trigger=trigger), [], "")
        except RunExists:
            raise RunRefused(f"a run with id {info.run_id!r} already exists; choose another --run-id") from None
        return info.run_id

    def _new_run(self, workflow, trigger, run_id, *, runner, max_parallel, linger=None, grace=None, path=None,
                 dask_address=None, child_of: dict | None = None):
        """(workflow, graph, RunInfo) of a run about to be stored: checked, with its options."""
        wf = load_workflow(workflow)
        if path is None and isinstance(workflow, (str, os.PathLike)):  # a resume finds its node modules there
            path = os.path.abspath(workflow)
        runner = runner or wf.settings.runner or self.runner
        if runner not in backend_names():
            raise RunRefused(f"unknown runner {runner!r}; choose one of {', '.join(backend_names())}")
        graph = compiled(wf, default_max_parallel=self.max_parallel, max_parallel=max_parallel)
        definition = workflow_to_dict(wf)
        options = {"runner": runner, "max_parallel": graph.max_parallel,
                   "linger": self.linger if linger is None else linger,
                   "grace": self.grace if grace is None else grace, "path": path}
        options.update(self._dask_option(runner, dask_address, wf.settings.dask_address))
        if child_of is not None:  # a subworkflow's child run: {parent: {run_id, node, item}, depth}
            options.update(child_of)
        run_id = run_id or new_run_id(wf.name)
        if self._exists(run_id):
            raise RunRefused(f"a run with id {run_id!r} already exists; choose another --run-id")
        text = dhash = None
        if self.store.durable:  # encoded once: hashed here, stored as is (in memory, nothing can change it)
            text = canonical_json(definition)
            dhash = text_hash(text)
        info = RunInfo(run_id=run_id, workflow=wf.name, definition=definition, definition_hash=dhash,
                       options=options, definition_text=text)
        return wf, graph, info

    # -- resuming ----------------------------------------------------------------------------

    def load(self, run_id: str, use_snapshot: bool = True):
        """(info, workflow, state) of a stored run, rebuilt by replaying its event log: in full, or
        from the last snapshot this code can read (``use_snapshot``)."""
        loaded = self._load(run_id, use_snapshot)
        return loaded.info, loaded.workflow, loaded.state

    def _load(self, run_id: str, use_snapshot: bool = True) -> recovery.LoadedRun:
        with self._lock:
            cached = self._cache.get(run_id)
        return load_run(self.store, run_id, use_snapshot, cached=cached)

    def status(self, run_id: str) -> RunResult:
        info, _, state = self.load(run_id)
        return RunResult(run_id, state, parent=info.options.get("parent"))

    def runs(self, status: str | None = None, workflow: str | None = None, limit: int | None = None) -> list[dict]:
        return self.store.runs(status=status, workflow=workflow, limit=limit)

    def resume(self, run_id: str, node=None, input=None, port=None, item=None, *, runner=None, max_parallel=None,
               linger=None, grace=None, observer=None, wait: float = 30.0, dask_address=None) -> RunResult:
        """Continue a stored run, and with ``node`` answer one of its waiting instances.

        The answer goes to the run's inbox. If no live process drives the run, this one does, as a
        resume always did (the answer is applied with its first step). If another does, this waits
        up to ``wait`` seconds for that process to apply it: ``RunResult.applied_by`` says so,
        ``RunRefused`` says why it was refused, ``RequestPending`` that it is still in the inbox."""
        info = self._info(run_id)
        _refuse_misplaced_address(runner or info.options["runner"], dask_address)  # before anything is written
        seq = None
        if node is not None:
            loaded = self._load(run_id)
            problem = answer_problem(loaded.state, node, item, port)
            if problem:
                raise RunRefused(f"run {run_id!r}: {problem}")
            seq = self.store.post(run_id, "answer", {"node": node, "item": list(inbox.item_path(item)), "port": port,
                                                      "value": input}, at=time.time())
        elif port is not None or input is not None:
            raise RunRefused("--port and --input answer a waiting node: name it with --node")
        elif info.status in ENDED:
            raise RunRefused(f"run {run_id!r} has already finished ({info.status}); there is nothing to resume")

        def take_over(lease: Lease) -> RunResult:
            result = self._take_over(run_id, lease, runner=runner, max_parallel=max_parallel, linger=linger,
                                     grace=grace, observer=observer, dask_address=dask_address)
            if seq is not None:
                inbox.raise_if_refused(run_id, self.store.request(seq))
            return result

        try:
            lease = self._acquire(run_id)
        except RunBusy:
            if seq is None:
                raise
            return self._await(run_id, seq, wait, take_over)
        return take_over(lease)

    def cancel(self, run_id: str, node=None, item=None, reason=None, *, wait: float = 30.0) -> RunResult:
        """Cancel a whole run (``node`` None) or one node's open instances (or one ``item``), wherever
        the run is. The request goes to the run's inbox; if no live process drives the run, this one
        applies it at once and starts nothing (a worker or ``resume`` continues what is left), else
        it waits up to ``wait`` seconds for the driver to apply it (see ``resume``)."""
        info = self._info(run_id)
        if info.status in ENDED:
            raise RunRefused(f"run {run_id!r} has already finished ({info.status}); there is nothing to cancel")
        loaded = self._load(run_id)
        kind, body = inbox.cancel_request(run_id, loaded.state, node, item, reason)
        seq = self.store.post(run_id, kind, body, at=time.time())
        if node is not None and info.status == "queued":  # applied with its first step, before anything starts
            return RunResult(run_id, loaded.state, applied_by="queued")

        def take_over(lease: Lease) -> RunResult:
            result = self._take_over(run_id, lease, apply_only=True)
            inbox.raise_if_refused(run_id, self.store.request(seq))
            return result

        try:
            lease = self._acquire(run_id)
        except RunBusy:
            return self._await(run_id, seq, wait, take_over)
        return take_over(lease)

    def drive(self, run_id: str, *, runner=None, max_parallel=None, linger=None, grace=None, observer=None,
              on_drive=None, lease: Lease | None = None, dask_address=None) -> RunResult | None:
        """Drive a stored run that needs it (a worker's job): start a queued run, apply its inbox, fire
        its due timers, take over from a driver that died. ``RunBusy`` when a live process drives it;
        None when, by the time its lease was taken, the run no longer needed a driver (another
        process drove it meanwhile). ``lease``: the run's lease, taken already (``claim``)."""
        if lease is None:
            lease = self.claim(run_id)
        try:
            needed = self._needs_driver(run_id, time.time())
        except BaseException:
            self.store.release(run_id, lease)
            raise
        if not needed:
            self.store.release(run_id, lease)
            return None
        return self._take_over(run_id, lease, runner=runner, max_parallel=max_parallel, linger=linger, grace=grace,
                               observer=observer, on_drive=on_drive, dask_address=dask_address)

    def _take_over(self, run_id: str, lease: Lease, *, runner=None, max_parallel=None, linger=None, grace=None,
                   observer=None, on_drive=None, apply_only: bool = False, dask_address=None,
                   report_to_parent: bool = True) -> RunResult:
        """Drive a stored run under ``lease`` (released at the end): rebuild it, check it can run here,
        and feed the first step a takeover makes (see ``inbox.takeover_events``)."""
        try:
            loaded = self._load(run_id)
            if loaded.state.finished:
                if loaded.info.status != loaded.state.status:
                    return self._repair_summary(run_id, loaded, lease)
                self.store.refuse_pending(run_id, "the run has already finished")
                self.store.release(run_id, lease)
                return RunResult(run_id, loaded.state, parent=loaded.info.options.get("parent"))
            if not apply_only:
                _check_node_types(run_id, loaded.workflow)
            options = _resume_options(loaded, runner=runner, max_parallel=max_parallel, linger=linger, grace=grace)
            if options["runner"] == "dask":  # (a worker gives its address for every run it drives)
                own = options.get("dask_address") or loaded.workflow.settings.dask_address
                options.update(self._dask_option("dask", dask_address, own))
        except BaseException:
            self.store.release(run_id, lease)
            raise
        new_cap = options["max_parallel"] if options["max_parallel"] != current_cap(loaded.state) else None
        box = inbox.StoreInbox(self.store, run_id)

        def events(now):
            cap = [CapChanged(at=now, max_parallel=new_cap)] if new_cap is not None and not apply_only else []
            return cap + box.takeover_events(loaded.state, loaded.info.trigger, now, apply_only=apply_only)
        session = _Session(run_id, loaded.workflow, options, lease, loaded.steps, tail=loaded.tail,
                           snapshot_at=loaded.snapshot_at)
        return self._drive(session, loaded.state, events, observer, box=box, apply_only=apply_only,
                           on_drive=on_drive, report_to_parent=report_to_parent)

    def claim(self, run_id: str) -> Lease:
        """Take the run's lease for this process (``RunBusy`` when a live process holds it)."""
        self._info(run_id)
        return self._acquire(run_id)

    def _needs_driver(self, run_id: str, now: float) -> bool:
        """Whether a run needs a driver, read under its lease (a worker listed it a moment ago)."""
        info = self._info(run_id)
        if info.status in ENDED:
            return False
        if info.status == "waiting" and (info.wake_at is None or info.wake_at > now + 1.0):
            return bool(self.store.pending(run_id))
        return True

    def _info(self, run_id: str) -> RunInfo:
        try:
            return self.store.info(run_id)
        except UnknownRun as exc:
            raise RunRefused(str(exc)) from None

    def _await(self, run_id: str, seq: int, wait: float, take_over) -> RunResult:
        """Wait for the process driving the run to apply request ``seq``. Should that process let the run go
        without applying it (a worker told to stop applies no more requests), this one takes the run over
        (``take_over(lease)``) as if no process had driven it, instead of waiting out ``wait``. Ctrl-C cuts
        the wait short, as its end would: the request stays pending, and ``RequestPending`` says so."""
        end = time.monotonic() + wait
        while True:
            try:
                request = inbox.await_request(self.store, run_id, seq,
                                              min(AWAIT_SLICE, max(0.0, end - time.monotonic())))
            except KeyboardInterrupt:
                raise RequestPending(f"run {run_id!r} is driven by another process; interrupted while waiting for "
                                     f"it to apply the request, which stays in the run's inbox and is applied when "
                                     f"that process (or the next one to drive the run) gets to it") from None
            if request.state != "pending":
                break
            try:
                lease = self._acquire(run_id)
            except RunBusy:
                if time.monotonic() < end:
                    continue
                raise RequestPending(f"run {run_id!r} is driven by another process, which has not applied the "
                                     f"request within {wait:g} s; it stays in the run's inbox and is applied when "
                                     f"that process (or the next one to drive the run) gets to it") from None
            return take_over(lease)
        inbox.raise_if_refused(run_id, request)
        return RunResult(run_id, self._load(run_id).state, applied_by="another process")

    def _repair_summary(self, run_id: str, loaded: recovery.LoadedRun, lease: Lease) -> RunResult:
        """A run whose log says it finished but whose summary does not (its driver died between the
        two, under a version that wrote them apart): write the summary the log implies."""
        try:
            self.store.update(run_id, _summary(loaded.state, run_status(loaded.state)))
        finally:
            self.store.release(run_id, lease)
        return RunResult(run_id, loaded.state)

    # -- driving -------------------------------------------------------------------------------

    def _dask_option(self, runner: str, given: str | None, own: str | None) -> dict:
        """The run's ``dask_address`` option: the one ``given`` for this call, else the run's own (its
        workflow's setting), else this engine's; none for a run on another runner."""
        _refuse_misplaced_address(runner, given)
        if runner != "dask":
            return {}
        if given is not None and (problem := dask_address_problem(given)):
            raise RunRefused(problem)
        address = given or own or self.dask_address
        return {"dask_address": address} if address else {}

    def _exists(self, run_id: str) -> bool:
        try:
            self.store.info(run_id)
        except UnknownRun:
            return False
        return True

    def _acquire(self, run_id: str) -> Lease:
        lease = Lease.mine()
        try:
            self.store.acquire(run_id, lease)
        except LeaseHeld as exc:
            raise RunBusy(str(exc)) from None
        return lease

    def _drive(self, session: "_Session", state, first_events, observer, box=None, apply_only: bool = False,
               on_drive=None, report_to_parent: bool = True) -> RunResult:
        """Drive the run under ``session.lease`` (released at the end), logging each step before acting on it.

        ``first_events(now)`` makes the events that start the drive, stamped by the runner's clock
        (virtual for the simulated runner). ``box``: the run's inbox, looked into while it is driven.
        ``apply_only``: apply what the first step holds and start nothing (a cancel's own drive).
        ``report_to_parent``: a child run that ends here tells its parent (see ``_tell_parent``);
        not when the parent's own drive drives it (``children.ChildRuns`` hears its end directly)."""
        run_id, options = session.run_id, session.options
        try:
            if apply_only:
                backend = inbox.NoWork()
            else:
                backend = self._backend(options, session.wf, run_id, options["max_parallel"], since=state.now)
        except BaseException:
            self.store.release(run_id, session.lease)
            raise
        children = None
        if _has_children(session.wf):
            children = ChildRuns(self, run_id, session.wf, options, backend.now, apply_only=apply_only)
            backend = WithChildren(backend, children)

        def on_step(step_events, commands, new_state):
            # a run that ends with this step is stored ended by it: there is no moment at which the
            # log says finished and the summary says running
            status = new_state.status if new_state.finished else "running"
            done = box.outcomes(step_events, commands, session.index) if box is not None else ()
            session.log(self.store, step_events, fingerprint(commands), _summary(new_state, status), done)
            if self.store.durable and session.snapshot_due(ended=False):  # a crash replays only what follows
                session.snapshot(self.store, new_state)
            if observer is not None:
                observer(step_events, commands, new_state)

        drive = Drive(backend, linger=0.0 if apply_only else options["linger"], on_step=on_step, inbox=box,
                      grace=options["grace"], on_child=children)
        if on_drive is not None:  # a worker keeps it, to drain it when told to stop
            on_drive(drive if children is None else _DrainsChildren(drive, children))
        ended = False
        try:
            with _Heartbeat(self.store, run_id, session.lease):
                state = drive.run(state, first_events(backend.now()))
            ended = True
        finally:
            abandoned = backend.close(0.0 if drive.hurried else options["grace"])
            if ended and children is not None and drive.drained and not state.finished:
                self._post_unheard_ends(run_id, state)  # (a drive not told to stop hears every child's end)
            if ended:  # after a failure the last logged summary stands: the run can be resumed
                status = run_status(state)
                if status == "waiting" and children is not None and children.deferred:
                    status = "running"  # a child run is still to be started: for the next driver (a worker)
                summary = _summary(state, status)
                # a run that ended has its summary from the step that ended it (its wake_at no longer
                # matters): two write transactions a run fewer, which workers sharing a store wait for
                if not (state.finished and summary == session.summary):
                    try:  # fenced: a process that took the run over meanwhile keeps the summary it wrote
                        self.store.update(run_id, {**summary, "wake_at": inbox.wake_at(state)}, lease=session.lease)
                    except LeaseLost as exc:
                        raise RunInterrupted(f"run {run_id!r} stopped here: {exc}") from exc
                if state.finished and self.store.pending(run_id):
                    self.store.refuse_pending(run_id, "the run has already finished")
                if self.store.durable and session.snapshot_due(ended=True):
                    session.snapshot(self.store, state)
            self.store.release(run_id, session.lease)
        with self._lock:
            self._cache.pop(run_id, None)
            self._cache[run_id] = (session.index, state)
            while len(self._cache) > CACHED_RUNS:  # a long-lived engine must not keep every run's state
                del self._cache[next(iter(self._cache))]
        parent = options.get("parent")
        if parent is not None and state.finished and report_to_parent:
            self._tell_parent(parent, state, apply_only)
        return RunResult(run_id, state, abandoned, parent=parent)

    # -- child runs (subworkflow nodes; see adapters/children.py) --------------------------------

    def _node_impl(self, wf, node: str):
        from .workflow_file import build_invoker

        return build_invoker(wf).impls[node]

    def _run_child(self, path: str, trigger, child_id: str, parent: dict, depth: int, parent_options: dict,
                   on_drive) -> RunResult:
        """Start and drive the child run ``child_id`` of a subworkflow node, in this thread: on the
        child workflow's own runner setting, else the parent's; with the parent's linger and grace."""
        wf = load_child_workflow(path)
        wf, graph, info = self._new_run(wf, trigger, child_id, runner=wf.settings.runner or parent_options["runner"],
                                        max_parallel=None, linger=parent_options["linger"],
                                        grace=parent_options["grace"], path=path,
                                        child_of={"parent": parent, "depth": depth})
        lease = self._acquire(info.run_id)
        return self._drive(_Session(info.run_id, wf, info.options, lease, 0, new_run=info), initial_state(graph),
                           lambda now: [RunStarted(at=now, trigger=trigger)], None,
                           box=inbox.StoreInbox(self.store, info.run_id), on_drive=on_drive, report_to_parent=False)

    def _cancel_child(self, child_id: str, reason: str) -> None:
        """Cancel a child run its parent no longer waits for (nothing to tell the parent afterwards)."""
        try:
            info = self.store.info(child_id)
        except UnknownRun:
            return  # never made (max_depth, an input that is no mapping)
        if info.status in ENDED:
            return
        try:
            self.store.post(child_id, "cancel", {"reason": reason}, at=time.time())
            try:
                lease = self._acquire(child_id)
            except RunBusy:
                return  # its driver applies it
            self._take_over(child_id, lease, apply_only=True, report_to_parent=False)
        except (RunRefused, StoreError):
            pass  # the child is left as it is: `flowcore cancel CHILD` cancels it

    def _post_unheard_ends(self, run_id: str, state) -> None:
        """A child run that ended as its parent's drive stopped (told to stop, it gave up waiting for the
        child first): its end reached no one. It goes to the parent's inbox, so the next driver (a
        worker) applies it, instead of the parent waiting for a child that has ended."""
        for n, item in state.children.keys():
            node = state.graph.ids[n]
            child_id = child_run_id(run_id, node, item)
            try:
                info = self.store.info(child_id)
            except UnknownRun:
                continue
            if info.status not in ENDED or (info.options.get("parent") or {}).get("run_id") != run_id:
                continue
            child = self.load(child_id)[2]
            at = child.finished_at if isinstance(child.finished_at, (int, float)) else time.time()
            self.store.post(run_id, "child_ended", {"node": node, "item": list(item), **ended_body(child)}, at=at)

    def _tell_parent(self, parent: dict, state, apply_only: bool) -> None:
        """A child run ended in a drive that is not its parent's: post its end to the parent's inbox,
        and drive the parent on (or only apply it, after a cancel) unless a live process drives it."""
        parent_id = parent["run_id"]
        body = {"node": parent["node"], "item": parent.get("item") or [], **ended_body(state)}
        try:
            self.store.post(parent_id, "child_ended", body, at=time.time())
            lease = self._acquire(parent_id)
        except (RunBusy, UnknownRun, StoreError):
            return  # its driver (or the next one) applies it from the inbox
        try:
            self._take_over(parent_id, lease, apply_only=apply_only)
        except (RunRefused, StoreError):
            pass  # the request stays in the parent's inbox for the next driver

    def _backend(self, options, wf, run_id, max_parallel, since: float | None = None):
        """The runner that executes the run's commands. ``since``: the run's latest time (``None``
        for a new run), where a simulated run's virtual clock goes on from."""
        from .workflow_file import build_invoker

        name = options["runner"]
        extra = dict(self.runner_options)
        if name in ("thread", "asyncio", "process", "dask"):
            extra["grace"] = options["grace"]
        if name == "dask":
            extra["address"] = options.get("dask_address")
        if name == "simulated":
            extra.setdefault("estimates", {n.id: n.estimate for n in wf.nodes})
            extra.setdefault("start_time", self._virtual_start(since))
        try:
            return make_backend(name, build_invoker(wf, json_only=self.store.durable or self.json_only), run_id,
                                max_parallel, **extra)
        except RunnerUnavailable as exc:
            raise RunRefused(str(exc)) from None

    def _virtual_start(self, since: float | None) -> float:
        """Where a simulated run's virtual clock starts: never before the run's own latest time (a
        resume that began again at 0 recorded answers before the waits they answered); in a stored
        database, not before now either, so that its times are Unix seconds like every other run's,
        which status, runs, workers and other runners read against the wall clock (from 0, its
        waits looked overdue since 1970: another runner timed them out at once, and a worker drove
        the run again and again). In memory, a new run starts at 0."""
        start = since if since is not None else 0.0
        return max(start, time.time()) if self.store.durable else start


class _DrainsChildren:
    """What a worker drains for a run with subworkflow nodes: its drive and, at once, the child runs
    this drive drives."""

    def __init__(self, drive, children: ChildRuns):
        self.drive = drive
        self.children = children

    def drain(self) -> None:
        self.drive.drain()
        self.children.drain()


def _has_children(wf) -> bool:
    """Whether the workflow has subworkflow nodes (whose drives need ``ChildRuns``): looked at once
    per workflow."""
    found = _HAS_CHILDREN.get(wf)
    if found is None:
        found = _HAS_CHILDREN[wf] = any(n.behaviour is not None and n.behaviour.kind is Kind.PARK_CHILD
                                        for n in wf.nodes)
    return found


_HAS_CHILDREN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _refuse_misplaced_address(runner: str, given: str | None) -> None:
    if given is not None and runner != "dask":
        raise RunRefused(f"--dask-address (dask_address) is for the dask runner, and this run uses the {runner} "
                         f"runner; add --runner dask, or leave the address out")


def _check_node_types(run_id: str, wf) -> None:
    """Before a resume runs anything: the node types' checks, which loading the run left out (the
    code a python node calls may be gone, or a node type may no longer accept its fields)."""
    from .workflow_file import build_invoker

    try:
        build_invoker(wf)
    except WorkflowError as exc:
        raise RunRefused(f"run {run_id!r}: its stored workflow no longer loads here:\n{exc}") from None


@attrs.define
class _Session:
    """One process driving one run: where its log goes on, and what its first step must also record."""
    run_id: str
    wf: object
    options: dict
    lease: Lease
    index: int
    new_run: RunInfo | None = None  # created together with the first batch
    summary: dict | None = None  # the last one written: most steps leave it as it was
    tail: int = 0  # events in the log after the latest snapshot
    snapshot_at: int = 0  # steps the latest snapshot covers (0: none)

    def snapshot_due(self, ended: bool) -> bool:
        return recovery.snapshot_due(self.tail, self.index, self.snapshot_at, ended)

    def snapshot(self, store, state) -> None:
        recovery.save_snapshot(store, self.run_id, self.index, state)
        self.snapshot_at, self.tail = self.index, 0

    def log(self, store, events, print_: str, summary: dict, done=()) -> None:
        changed = {} if summary == self.summary else summary
        if self.new_run is not None:
            store.create_run(attrs.evolve(self.new_run, **summary), events, print_)
            self.new_run = None
        else:
            try:
                store.append(self.run_id, self.index, events, print_, changed, done, lease=self.lease)
            except LeaseLost as exc:
                raise RunInterrupted(f"run {self.run_id!r} stopped here: {exc}. Nothing of step {self.index} was "
                                     f"carried out by this process.") from exc
            except StoreError as exc:
                raise RunInterrupted(f"run {self.run_id!r} stopped: the store failed to log step {self.index} "
                                     f"({exc}). Nothing of that step was carried out and every step before it "
                                     f"is kept: `flowcore resume {self.run_id}` continues the run once the "
                                     f"store works again.") from exc
        self.summary = summary
        self.index += 1
        self.tail += len(events)


def _resume_options(loaded: recovery.LoadedRun, *, runner, max_parallel, linger, grace) -> dict:
    """The run's own settings (its cap: the one in force), overridden by the resume's."""
    options = dict(loaded.info.options, max_parallel=max_parallel or current_cap(loaded.state))
    options.pop("caps", None)  # the cap history of a run stored before CapChanged: read by recovery only
    for key, value in (("runner", runner), ("linger", linger), ("grace", grace)):
        if value is not None:
            options[key] = value
    if options["runner"] not in backend_names():
        raise RunRefused(f"unknown runner {options['runner']!r}; choose one of {', '.join(backend_names())}")
    return options


def _summary(state, status: str) -> dict:
    return {"status": status, "started_at": state.started_at, "finished_at": state.finished_at}
