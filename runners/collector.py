"""The cyclic garbage collector during flowcore's own work: tuned while it runs, left as it was found.

A run allocates many small, acyclic, long-lived values (records, map nodes), and loading a
workflow or replaying a log builds many more while no node code runs. With the default settings
the collector rescans them so often that a 100,000-node run costs 1.5x per node what a
10,000-node run does, and a fifth of loading a 100,000-node workflow is collection. So:
- ``fewer_gc_passes`` (driving a run) raises the collection thresholds;
- ``collector_paused`` (bounded work of flowcore's own: parsing, replaying) turns the collector off.

The collector's settings belong to the whole process, and several runs may overlap in threads
(two engines, a server). Each change is therefore reference counted under one lock: its first
holder saves the setting and changes it, later holders only count, and its last holder puts back
what was saved (unless the application changed that setting itself meanwhile: then it stays).
Whatever the overlap, the process is left as it was found.
"""
from __future__ import annotations

import contextlib
import gc
import threading

FEWER_PASSES = (50_000, 20, 20)

_lock = threading.Lock()
_holders = {"fewer": 0, "paused": 0}  # how many hold each change now, across all threads
_threshold_before: tuple | None = None  # the thresholds flowcore replaced, while it holds FEWER_PASSES
_disabled_it = False  # flowcore turned the collector off, and holds it off


@contextlib.contextmanager
def fewer_gc_passes():
    """Collect less often while driving a run (see the module's docstring)."""
    with _held("fewer", _raise_thresholds, _restore_thresholds):
        yield


@contextlib.contextmanager
def collector_paused():
    """No cyclic collection during bounded work of flowcore's own that runs no node code."""
    with _held("paused", _pause, _resume):
        yield


@contextlib.contextmanager
def _held(change: str, first_in, last_out):
    """Hold ``change``: the first holder makes it (``first_in``), the last one undoes it (``last_out``)."""
    with _lock:
        _holders[change] += 1
        if _holders[change] == 1:
            first_in()
    try:
        yield
    finally:
        with _lock:
            _holders[change] -= 1
            if _holders[change] == 0:
                last_out()


def _raise_thresholds() -> None:
    global _threshold_before
    if gc.get_threshold() != FEWER_PASSES:
        _threshold_before = gc.get_threshold()
        gc.set_threshold(*FEWER_PASSES)


def _restore_thresholds() -> None:
    global _threshold_before
    if _threshold_before is not None and gc.get_threshold() == FEWER_PASSES:  # else the application set its own
        gc.set_threshold(*_threshold_before)
    _threshold_before = None


def _pause() -> None:
    global _disabled_it
    if gc.isenabled():
        gc.disable()
        _disabled_it = True


def _resume() -> None:
    global _disabled_it
    if _disabled_it and not gc.isenabled():  # else the application turned it on itself meanwhile
        _settle_young_objects()
        gc.enable()
    _disabled_it = False


def _settle_young_objects() -> None:
    """What the paused work built would all be young, and the first collection after it would scan
    it all (as long as the work took). Move every tracked object to the oldest generation instead
    (freeze, then unfreeze: two list splices), where full collections see it; not where the
    application froze objects itself (before forking, say): unfreezing would undo that."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
