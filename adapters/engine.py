"""The engine facade: wires a workflow, a runner and a store into runs, and resumes them.

``Engine.run`` records the run (its definition and options, with its first step) and drives it;
``Engine.resume`` takes the run's lease, rebuilds the run (``adapters.recovery``), checks the
request against the state, and drives it on. Every refusal raises ``RunRefused`` before anything
is written (a lease taken for it is given back).
"""
from __future__ import annotations

import os
import threading
import uuid

import attrs

from runners import DEFAULT_GRACE, DEFAULT_LINGER, Drive, RunnerUnavailable, backend_names, make_backend
from scheduler_core import CapChanged, InputProvided, Resumed, RunStarted, fingerprint, initial_state, input_problem

from . import recovery
from .recovery import RunRefused, current_cap, load_run
from .report import run_dict, run_status
from .store import (LeaseHeld, Lease, MemoryStore, RunInfo, SqliteStore, StoreError, UnknownRun,
                    canonical_json, definition_hash, text_hash)  # noqa: F401 (definition_hash: re-exported)
from .workflow_file import WorkflowError, compiled, load_workflow, workflow_to_dict

HEARTBEAT_SECONDS = 10.0
CACHED_RUNS = 8  # final states an engine keeps of the runs it drove last, to resume them without a replay


class RunInterrupted(StoreError):
    """The store failed while a run was being driven. Every step logged before the failure stands
    (none of the failed step's commands was carried out), so the run can be resumed once the store
    works again."""


class RunResult:
    """What a run came to: ``.status``, ``.error``, ``.records``, and ``.to_dict()`` (the ``--json`` object)."""

    def __init__(self, run_id: str, state, abandoned: int = 0):
        self.run_id = run_id
        self.state = state
        self.abandoned = abandoned

    @property
    def status(self) -> str:
        return run_status(self.state)

    @property
    def error(self) -> dict | None:
        """``{node, type, message}`` of what ended the run, or None (as in ``to_dict()``)."""
        return None if self.state.error is None else self.state.error.as_dict(with_node=True)

    def to_dict(self) -> dict:
        return run_dict(self.run_id, self.state)

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


def _item_path(item) -> tuple:
    if item is None:
        return ()
    if isinstance(item, int):
        return (item,)
    return tuple(int(i) for i in item)


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
                 linger: float = DEFAULT_LINGER, grace: float = DEFAULT_GRACE, store=None, runner_options=None):
        if runner not in backend_names():
            raise ValueError(f"unknown runner {runner!r}; choose one of {', '.join(backend_names())}")
        self.runner = runner
        self.max_parallel = max_parallel
        self.linger = linger
        self.grace = grace
        self.store = store or (MemoryStore() if db is None else SqliteStore(db))
        self.runner_options = dict(runner_options or {})
        # run_id -> (logged batches, state) of the CACHED_RUNS runs this engine drove last: saves a replay
        self._cache: dict = {}

    # -- starting ----------------------------------------------------------------------------

    def run(self, workflow, trigger=None, run_id=None, *, runner=None, max_parallel=None, linger=None, grace=None,
            observer=None, path=None) -> RunResult:
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
        run_id = run_id or new_run_id(wf.name)
        if self._exists(run_id):
            raise RunRefused(f"a run with id {run_id!r} already exists; choose another --run-id")
        text = dhash = None
        if self.store.durable:  # encoded once: hashed here, stored as is (in memory, nothing can change it)
            text = canonical_json(definition)
            dhash = text_hash(text)
        info = RunInfo(run_id=run_id, workflow=wf.name, definition=definition, definition_hash=dhash,
                       options=options, definition_text=text)
        lease = self._acquire(run_id)
        return self._drive(_Session(run_id, wf, options, lease, 0, new_run=info), initial_state(graph),
                           lambda now: [RunStarted(at=now, trigger=trigger)], observer)

    # -- resuming ----------------------------------------------------------------------------

    def load(self, run_id: str, use_snapshot: bool = True):
        """(info, workflow, state) of a stored run, rebuilt by replaying its event log: in full, or
        from the last snapshot this code can read (``use_snapshot``)."""
        loaded = self._load(run_id, use_snapshot)
        return loaded.info, loaded.workflow, loaded.state

    def _load(self, run_id: str, use_snapshot: bool = True) -> recovery.LoadedRun:
        return load_run(self.store, run_id, use_snapshot, cached=self._cache.get(run_id))

    def status(self, run_id: str) -> RunResult:
        info, _, state = self.load(run_id)
        return RunResult(run_id, state)

    def runs(self) -> list[dict]:
        return self.store.runs()

    def resume(self, run_id: str, node=None, input=None, port=None, item=None, *, runner=None, max_parallel=None,
               linger=None, grace=None, observer=None) -> RunResult:
        try:
            self.store.info(run_id)
        except UnknownRun as exc:
            raise RunRefused(str(exc)) from None
        lease = self._acquire(run_id)  # first: the log cannot grow between reading it and driving on
        try:
            loaded = self._load(run_id)
            if loaded.state.finished and loaded.info.status != loaded.state.status:
                return self._repair_summary(run_id, loaded, lease)
            path = _check_request(run_id, loaded.state, node, input, port, item)
            _check_node_types(run_id, loaded.workflow)
            options = _resume_options(loaded, runner=runner, max_parallel=max_parallel, linger=linger, grace=grace)
        except BaseException:
            self.store.release(run_id, lease)
            raise
        new_cap = options["max_parallel"] if options["max_parallel"] != current_cap(loaded.state) else None

        def events(now):
            cap = [CapChanged(at=now, max_parallel=new_cap)] if new_cap is not None else []
            answer = [InputProvided(node=node, item=path, at=now, value=input, port=port)] if node is not None else []
            return [*cap, Resumed(at=now), *answer]
        session = _Session(run_id, loaded.workflow, options, lease, loaded.steps, tail=loaded.tail,
                           snapshot_at=loaded.snapshot_at)
        return self._drive(session, loaded.state, events, observer)

    def _repair_summary(self, run_id: str, loaded: recovery.LoadedRun, lease: Lease) -> RunResult:
        """A run whose log says it finished but whose summary does not (its driver died between the
        two, under a version that wrote them apart): write the summary the log implies."""
        try:
            self.store.update(run_id, _summary(loaded.state, run_status(loaded.state)))
        finally:
            self.store.release(run_id, lease)
        return RunResult(run_id, loaded.state)

    # -- driving -------------------------------------------------------------------------------

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
            raise RunRefused(str(exc)) from None
        return lease

    def _drive(self, session: "_Session", state, first_events, observer) -> RunResult:
        """Drive the run under ``session.lease`` (released at the end), logging each step before acting on it.

        ``first_events(now)`` makes the events that start the drive, stamped by the runner's clock
        (virtual for the simulated runner)."""
        run_id, options = session.run_id, session.options
        try:
            backend = self._backend(options, session.wf, run_id, options["max_parallel"])
        except BaseException:
            self.store.release(run_id, session.lease)
            raise

        def on_step(step_events, commands, new_state):
            # a run that ends with this step is stored ended by it: there is no moment at which the
            # log says finished and the summary says running
            status = new_state.status if new_state.finished else "running"
            session.log(self.store, step_events, fingerprint(commands), _summary(new_state, status))
            if self.store.durable and session.snapshot_due(ended=False):  # a crash replays only what follows
                session.snapshot(self.store, new_state)
            if observer is not None:
                observer(step_events, commands, new_state)

        drive = Drive(backend, linger=options["linger"], on_step=on_step)
        ended = False
        try:
            with _Heartbeat(self.store, run_id, session.lease):
                state = drive.run(state, first_events(backend.now()))
            ended = True
        finally:
            abandoned = backend.close(options["grace"])
            if ended:  # after a failure the last logged summary stands: the run can be resumed
                self.store.update(run_id, _summary(state, run_status(state)))
                if self.store.durable and session.snapshot_due(ended=True):
                    session.snapshot(self.store, state)
            self.store.release(run_id, session.lease)
        self._cache.pop(run_id, None)
        self._cache[run_id] = (session.index, state)
        while len(self._cache) > CACHED_RUNS:  # a long-lived engine must not keep every run's state
            del self._cache[next(iter(self._cache))]
        return RunResult(run_id, state, abandoned)

    def _backend(self, options, wf, run_id, max_parallel):
        from .workflow_file import build_invoker

        name = options["runner"]
        extra = dict(self.runner_options)
        if name in ("thread", "asyncio", "dask"):
            extra["grace"] = options["grace"]
        if name == "simulated":
            extra.setdefault("estimates", {n.id: n.estimate for n in wf.nodes})
        try:
            return make_backend(name, build_invoker(wf, json_only=self.store.durable), run_id, max_parallel, **extra)
        except RunnerUnavailable as exc:
            raise RunRefused(str(exc)) from None


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

    def log(self, store, events, print_: str, summary: dict) -> None:
        changed = {} if summary == self.summary else summary
        if self.new_run is not None:
            store.create_run(attrs.evolve(self.new_run, **summary), events, print_)
            self.new_run = None
        else:
            try:
                store.append(self.run_id, self.index, events, print_, changed)
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


def _check_request(run_id: str, state, node, input, port, item) -> tuple:
    """The item path of a valid request; ``RunRefused`` saying what is wrong with any other."""
    if state.finished:
        raise RunRefused(f"run {run_id!r} has already finished ({state.status}); there is nothing to resume")
    path = _item_path(item)
    if node is not None:
        problem = input_problem(state, node, path, port)
        if problem:
            raise RunRefused(f"run {run_id!r}: {problem}")
    elif port is not None or input is not None:
        raise RunRefused("--port and --input answer a waiting node: name it with --node")
    return path


def _summary(state, status: str) -> dict:
    return {"status": status, "started_at": state.started_at, "finished_at": state.finished_at}
