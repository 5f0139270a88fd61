"""The engine facade: wires a workflow, a runner and a store into runs, and resumes them.

``Engine.run`` records the run (its definition and options, with its first step) and drives it;
``Engine.resume`` takes the run's lease, rebuilds the run from its event log (replaying it with a
check of every decision), checks the request against the state, and drives it on. Every refusal
raises ``RunRefused`` before anything is written (a lease taken for it is given back).
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
import threading
import uuid

import attrs

from runners import (DEFAULT_GRACE, DEFAULT_LINGER, Drive, RunnerUnavailable, backend_names, collector_paused,
                     make_backend)
from scheduler_core import (InputProvided, ReplayDiverged, Resumed, RunStarted, State, fingerprint,
                            initial_state, input_problem, step)

from .report import run_dict, run_status
from .store import (LeaseHeld, Lease, MemoryStore, RunInfo, Snapshot, SqliteStore, StoreError, UnknownRun,
                    canonical_json, definition_hash, text_hash)  # noqa: F401 (definition_hash: re-exported)
from .workflow_file import WorkflowError, compiled, load_workflow, workflow_to_dict

HEARTBEAT_SECONDS = 10.0
CACHED_RUNS = 8  # final states an engine keeps of the runs it drove last, to resume them without a replay


class RunRefused(ValueError):
    """A request the engine will not carry out; nothing was changed."""


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
    def error(self):
        return self.state.error

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
        options = {"runner": runner, "max_parallel": graph.max_parallel, "caps": [[0, graph.max_parallel]],
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
        from the last snapshot a run of this same core left (``use_snapshot``)."""
        info, wf, state, *_ = self._load(run_id, use_snapshot)
        return info, wf, state

    def _load(self, run_id: str, use_snapshot: bool = True):
        with collector_paused():  # a replay builds many long-lived acyclic values, and runs no node code
            return self._load_and_replay(run_id, use_snapshot)

    def _snapshot_state(self, run_id: str):
        """(steps it covers, state without graph) from a usable snapshot, or (0, None)."""
        snap = self.store.snapshot(run_id)
        if snap is None or snap.version != core_version():
            return 0, None
        try:
            return snap.index, pickle.loads(snap.blob)
        except Exception:  # a cache only: an unreadable one means a full replay
            return 0, None

    def _load_and_replay(self, run_id: str, use_snapshot: bool):
        """(info, workflow, state, steps logged, steps the snapshot used covers, events after it)."""
        since, start = self._snapshot_state(run_id) if use_snapshot and self.store.durable else (0, None)
        try:
            info, batches, prints = self.store.load(run_id, since=since)
        except UnknownRun as exc:
            raise RunRefused(str(exc)) from None
        if not info.definition_intact():
            raise RunRefused(f"run {run_id!r}: its stored workflow definition does not match the hash recorded "
                             f"when it started; the store was changed by hand, so the run cannot be trusted")
        path = info.options.get("path")  # node modules beside the workflow file import as they did at run time
        try:  # the structure, for the replay; the node types are checked when a resume runs them
            wf = load_workflow(info.definition, node_types=False, base_dir=os.path.dirname(path) if path else None)
        except WorkflowError as exc:
            raise RunRefused(f"run {run_id!r}: its stored workflow no longer loads here:\n{exc}") from None
        count = since + len(batches)
        tail = sum(len(b) for b in batches)  # events after the snapshot
        cached = self._cache.get(run_id)
        if cached and cached[0] == count:
            return info, wf, cached[1], count, since, tail
        try:
            state = replay_run(wf, batches, prints, _caps(info.options), since, start)
        except ReplayDiverged as exc:
            raise RunRefused(f"run {run_id!r} cannot be continued: {exc}. The engine, the node types or the "
                             f"stored definition changed since the run was recorded; finish it with the "
                             f"version that started it.") from None
        return info, wf, state, count, since, tail

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
            info, wf, state, count, snapshot_at, tail = self._load(run_id)
            path = _check_request(run_id, state, node, input, port, item)
            _check_node_types(run_id, wf)
            options = _resume_options(info.options, count, runner=runner, max_parallel=max_parallel,
                                      linger=linger, grace=grace)
        except BaseException:
            self.store.release(run_id, lease)
            raise
        if options["max_parallel"] != state.graph.max_parallel:
            state = attrs.evolve(state, graph=compiled(wf, max_parallel=options["max_parallel"]))

        def events(now):
            answer = [InputProvided(node=node, item=path, at=now, value=input, port=port)] if node is not None else []
            return [Resumed(at=now), *answer]
        changed = options["caps"] != _caps(info.options)
        stored = dict(info.options, max_parallel=options["max_parallel"], caps=options["caps"]) if changed else None
        session = _Session(run_id, wf, options, lease, count, new_options=stored, tail=tail, snapshot_at=snapshot_at)
        return self._drive(session, state, events, observer)

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
            backend = self._backend(options, session.wf, run_id, state.graph.max_parallel)
        except BaseException:
            self.store.release(run_id, session.lease)
            raise

        def on_step(step_events, commands, new_state):
            session.log(self.store, step_events, fingerprint(commands), _summary(new_state, "running"))
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
    new_options: dict | None = None  # a resume that changed the cap stores it with its first batch
    summary: dict | None = None  # the last one written: most steps leave it as it was
    tail: int = 0  # events in the log after the latest snapshot
    snapshot_at: int = 0  # steps the latest snapshot covers (0: none)

    def snapshot_due(self, ended: bool) -> bool:
        """Leave a snapshot now? At the end of a drive: once SNAPSHOT_EVERY events came after the
        latest one. During a drive: once SNAPSHOT_DURING events came after the latest one and the log
        has doubled in steps since it, so that in a very long run a crash replays at most about half
        the log, and pickling costs at most about twice the final state in all."""
        if ended:
            return self.tail >= SNAPSHOT_EVERY
        return self.tail >= SNAPSHOT_DURING and self.index >= 2 * self.snapshot_at

    def snapshot(self, store, state: State) -> None:
        save_snapshot(store, self.run_id, self.index, state)
        self.snapshot_at, self.tail = self.index, 0

    def log(self, store, events, print_: str, summary: dict) -> None:
        changed = {} if summary == self.summary else summary
        if self.new_run is not None:
            store.create_run(attrs.evolve(self.new_run, **summary), events, print_)
            self.new_run = None
        else:
            if self.new_options is not None:
                changed = dict(summary, options=self.new_options)
                self.new_options = None
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


def replay_run(wf, batches, prints, caps, since: int = 0, start: State | None = None) -> State:
    """Fold the logged batches (from step ``since`` on, onto ``start``) through ``step`` with the cap
    in force at each, checking every decision against its fingerprint."""
    changes = dict(caps)
    cap_at = lambda i: changes[max(k for k in changes if k <= i)]  # noqa: E731
    graph = compiled(wf, max_parallel=cap_at(since))
    state = initial_state(graph) if start is None else attrs.evolve(start, graph=graph)
    for i, events in enumerate(batches, start=since):
        if i and i in changes and i != since:
            state = attrs.evolve(state, graph=compiled(wf, max_parallel=changes[i]))
        state, commands = step(state, events)
        if fingerprint(commands) != prints[i - since]:
            raise ReplayDiverged(i, prints[i - since], fingerprint(commands))
    return state


# Events logged after the latest snapshot that make a drive leave a new one at its end: below this a
# full replay is quick, and pickling a state is not free. (Events, not steps: a step can hold many.)
SNAPSHOT_EVERY = 20_000
# ... and that make a drive leave one before its end (for a crash). Higher: pickling a large state in
# the middle of a run costs the run that long (0.2-0.8 s for 100,000 instances), a replay is rarer.
SNAPSHOT_DURING = 100_000


@functools.cache
def core_version() -> str:
    """A digest of the core's source: a snapshot is only trusted by the core that made it."""
    import scheduler_core

    root = os.path.dirname(scheduler_core.__file__)
    digest = hashlib.sha256()
    for name in sorted(f for f in os.listdir(root) if f.endswith(".py")):
        with open(os.path.join(root, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


def save_snapshot(store, run_id: str, index: int, state: State) -> None:
    """Cache ``state`` (after ``index`` steps) so a later load replays only what came after."""
    try:
        blob = pickle.dumps(attrs.evolve(state, graph=None), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # node outputs that cannot be pickled: loads replay the log in full
        return
    try:
        store.save_snapshot(run_id, Snapshot(index=index, version=core_version(), blob=blob))
    except StoreError:  # a cache only: the run goes on, and a load replays more of the log
        pass


def _caps(options: dict) -> list:
    """``[[from step, max_parallel], ...]``: the run's cap, and every change a resume made to it."""
    return [list(c) for c in options.get("caps") or [[0, options.get("max_parallel")]]]


def _resume_options(stored: dict, count: int, *, runner, max_parallel, linger, grace) -> dict:
    """The run's own settings, overridden by the resume's; a new cap holds from the next step on."""
    options = dict(stored)
    for key, value in (("runner", runner), ("linger", linger), ("grace", grace)):
        if value is not None:
            options[key] = value
    if options["runner"] not in backend_names():
        raise RunRefused(f"unknown runner {options['runner']!r}; choose one of {', '.join(backend_names())}")
    caps = _caps(stored)
    if max_parallel and max_parallel != options["max_parallel"]:
        caps = [c for c in caps if c[0] < count] + [[count, max_parallel]]
        options["max_parallel"] = max_parallel
    options["caps"] = caps
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
