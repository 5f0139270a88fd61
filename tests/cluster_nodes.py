"""Node functions for the tests that run workflows on a real dask cluster (``tests/test_dask_cluster.py``).

They run in the workers' processes, so they report through what they return and through files
(``trace``: one line per thing they did), never through this process's memory.
"""
import os
import time


def trace(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def whereami(value, seconds=0.0):
    """Which process ran it (after ``seconds`` of sleep): ``{"pid": ..., "value": value}``."""
    time.sleep(seconds)
    return {"pid": os.getpid(), "value": value}


def patient(value, path="", seconds=20.0, ctx=None):
    """Cooperative: traces its start, and stops early, tracing it, once its attempt is cancelled."""
    trace(path, f"start {ctx.node}{ctx.item or ''} {ctx.attempt}")
    if ctx.wait_cancelled(seconds):
        trace(path, f"cancelled {ctx.node}{ctx.item or ''} {ctx.attempt}")
        return "stopped early"
    return value


def stubborn(value, path="", seconds=3.0, ctx=None):
    """Ignores its cancellation: traces its start and end (``start|end ATTEMPT TIME``), sleeping between."""
    trace(path, f"start {ctx.attempt} {time.time()}")
    time.sleep(seconds)
    trace(path, f"end {ctx.attempt} {time.time()}")
    return value


def hangs_on_first_attempt(value, path="", ctx=None):
    """Traces ``attempt pid``; the first attempt then hangs (for a test to kill its process), a later
    one returns its pid."""
    trace(path, f"{ctx.attempt} {os.getpid()}")
    if ctx.attempt == 1:
        time.sleep(60)
    return os.getpid()
