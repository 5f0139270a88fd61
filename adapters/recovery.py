"""Recovery: a stored run rebuilt as a state, from its latest usable snapshot and its event log.

A run's state is the core's ``replay`` of its logged batches, each decision checked against the
fingerprint logged beside it. A snapshot (``adapters.snapshots``) saves replaying the steps it
covers; one that is missing, unreadable, or of another format or state shape is ignored and the
log is replayed in full. Nothing here decides anything a replay would not: the only replay is the
core's.

Runs stored before the cap became an event (``CapChanged``) kept the history of ``max_parallel``
in their options (``caps``: ``[[from step, cap], ...]``); their log is read with that history
turned back into the events it stands for.
"""
from __future__ import annotations

import os

import attrs

from runners import collector_paused
from scheduler_core import CapChanged, InvalidEvent, ReplayDiverged, State, replay

from . import snapshots
from .store import RunInfo, Snapshot, StoreError, UnknownRun
from .workflow_file import WorkflowError, compiled, load_workflow

# Events logged after the latest snapshot that make a drive leave a new one at its end: below this a
# full replay is quick, and writing a snapshot is not free. (Events, not steps: a step can hold many.)
SNAPSHOT_EVERY = 20_000
# ... and that make a drive leave one before its end (for a crash). Higher: encoding a large state in
# the middle of a run costs the run that long, a replay is rarer.
SNAPSHOT_DURING = 100_000


class RunRefused(ValueError):
    """A request the engine will not carry out; nothing was changed."""


class RunBusy(RunRefused):
    """Another live process drives the run (it holds the run's lease)."""


@attrs.frozen
class LoadedRun:
    """A stored run as a load found it."""
    info: RunInfo
    workflow: object
    state: State
    steps: int  # batches in the log
    snapshot_at: int  # steps the snapshot used covers (0: none)
    tail: int  # events logged after that snapshot


def load_run(store, run_id: str, use_snapshot: bool = True, cached: tuple | None = None) -> LoadedRun:
    """Rebuild a stored run. ``cached`` is ``(steps, state)`` of this run as a process last drove it:
    used instead of a replay when the log has not grown since. ``RunRefused`` when the run cannot
    be trusted or rebuilt here."""
    with collector_paused():  # a replay builds many long-lived acyclic values, and runs no node code
        return _load(store, run_id, use_snapshot and store.durable, cached)


def _load(store, run_id, use_snapshot, cached) -> LoadedRun:
    since, snapped = _snapshot(store, run_id) if use_snapshot else (0, None)
    info, wf, batches, prints = read_log(store, run_id, since)
    steps, tail = since + len(batches), sum(len(b) for b in batches)
    if cached and cached[0] == steps:
        return LoadedRun(info, wf, cached[1], steps, since, tail)
    graph = compiled(wf, max_parallel=first_cap(info.options))
    start = None if snapped is None else attrs.evolve(snapped, graph=graph)
    try:
        state = replay(graph, with_cap_history(info.options, batches, since), prints, start=start, first=since)
    except ReplayDiverged as exc:
        raise RunRefused(f"run {run_id!r} cannot be continued: {exc}. The engine, the node types or the "
                         f"stored definition changed since the run was recorded; finish it with the "
                         f"version that started it.") from None
    except (InvalidEvent, TypeError, ValueError, KeyError, AttributeError) as exc:  # events of the wrong shape
        raise RunRefused(f"run {run_id!r}: its event log is corrupt ({type(exc).__name__}: {exc}); it was changed "
                         f"by hand or damaged, and cannot be replayed") from None
    return LoadedRun(info, wf, state, steps, since, tail)


def read_log(store, run_id: str, since: int = 0) -> tuple:
    """(info, workflow, batches, fingerprints) of a stored run, its log from step ``since`` on as it
    was logged (replay it through ``with_cap_history``). ``RunRefused`` for an unknown run or one
    whose stored definition cannot be trusted or no longer loads."""
    try:
        info, batches, prints = store.load(run_id, since=since)
    except UnknownRun as exc:
        raise RunRefused(str(exc)) from None
    return info, _workflow(run_id, info), batches, prints


def _workflow(run_id: str, info: RunInfo):
    if not info.definition_intact():
        raise RunRefused(f"run {run_id!r}: its stored workflow definition does not match the hash recorded "
                         f"when it started; the store was changed by hand, so the run cannot be trusted")
    path = info.options.get("path")  # node modules beside the workflow file import as they did at run time
    try:  # the structure, for the replay; the node types are checked when a resume runs them
        return load_workflow(info.definition, node_types=False, base_dir=os.path.dirname(path) if path else None)
    except WorkflowError as exc:
        raise RunRefused(f"run {run_id!r}: its stored workflow no longer loads here:\n{exc}") from None


def _snapshot(store, run_id: str) -> tuple:
    """(steps it covers, its state without a graph) of the run's snapshot, or (0, None) when there is
    none this code can use."""
    snap = store.snapshot(run_id)
    if snap is None or snap.version != snapshots.version():
        return 0, None
    try:
        return snap.index, snapshots.decode_state(snap.data, graph=None)
    except snapshots.SnapshotInvalid:  # a cache only: an unreadable one means a full replay
        return 0, None


def save_snapshot(store, run_id: str, steps: int, state: State) -> None:
    """Cache ``state`` (after ``steps`` steps) so a later load replays only what came after. Skipped
    (the run goes on, a load replays more) when the state holds what the format cannot write or
    the store fails to write it."""
    try:
        with collector_paused():  # it builds a list or dict per value of a large, long-lived state, which
            data = snapshots.encode_state(state)  # the collector would rescan: 100,000 records 2.9 -> 1.0 s
    except snapshots.SnapshotUnsupported:
        return
    try:
        store.save_snapshot(run_id, Snapshot(index=steps, version=snapshots.version(), data=data))
    except StoreError:
        pass


def snapshot_due(tail: int, steps: int, snapshot_at: int, ended: bool) -> bool:
    """Leave a snapshot now? At the end of a drive: once SNAPSHOT_EVERY events came after the latest
    one. During a drive: once SNAPSHOT_DURING events came after the latest one and the log has
    doubled in steps since it, so that in a very long run a crash replays at most about half the
    log, and snapshots cost at most about twice the final state in all."""
    if ended:
        return tail >= SNAPSHOT_EVERY
    return tail >= SNAPSHOT_DURING and steps >= 2 * snapshot_at


def first_cap(options: dict) -> int:
    """The run's ``max_parallel`` when it started (later changes are ``CapChanged`` events)."""
    caps = options.get("caps")
    return caps[0][1] if caps else options["max_parallel"]


def current_cap(state: State) -> int:
    return state.max_parallel or state.graph.max_parallel


def with_cap_history(options: dict, batches: list, since: int) -> list:
    """The batches from step ``since`` on, with the cap changes a run stored before ``CapChanged``
    kept in its options put back as events at the steps they took effect."""
    changes = [(at, cap) for at, cap in options.get("caps") or () if at > 0 and at >= since]
    if not changes:
        return batches
    batches = list(batches)
    for at, cap in changes:
        i = at - since
        if i < len(batches) and batches[i]:
            batches[i] = [CapChanged(at=batches[i][0].at, max_parallel=cap), *batches[i]]
    return batches
