"""Node functions for the process runner's tests (``process_nodes:<function>``).

They run in worker processes, whose module state the tests cannot see: what they observe goes into
a trace file the test names (one line per event: node, attempt, process id, what, monotonic time)
or into what they return.
"""
import os
import signal
import threading
import time


def trace(path, ctx, what: str) -> None:
    if path:
        with open(path, "a") as f:
            f.write(f"{ctx.node} {ctx.attempt} {os.getpid()} {what} {time.monotonic()}\n")


def read_trace(path) -> list:
    """(node, attempt, pid, what, monotonic time) per line of a trace file."""
    with open(path) as f:
        return [(node, int(attempt), int(pid), what, float(at))
                for node, attempt, pid, what, at in (line.split() for line in f)]


def spin(value, seconds=30.0, trace_to=None, ctx=None):
    """Pure-Python busy loop for ``seconds`` (it never looks at its context); notes its start, and its
    ``finally`` with whether the context says cancelled."""
    trace(trace_to, ctx, "start")
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    finally:
        trace(trace_to, ctx, f"finally-cancelled={ctx.cancelled}")
    return value


def stubborn(value, seconds=30.0, trace_to=None, ctx=None):
    """Busy loop that swallows whatever is raised in it: only SIGKILL ends it."""
    trace(trace_to, ctx, "start")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            while time.monotonic() < end:
                pass
        except BaseException:  # noqa: B036 - the point: it ignores the cancellation
            trace(trace_to, ctx, "ignored")
    return value


def die_first(value, ctx=None):
    """Its first attempt kills its own process (as the OOM killer or a crash in C code would)."""
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def burn(value, rounds=2_000_000):
    """Pure-Python arithmetic; where and when it ran."""
    start = time.time()
    total = 0
    for i in range(rounds):
        total += i * i
    return {"pid": os.getpid(), "start": start, "end": time.time()}


def pid(value):
    return os.getpid()


def what_ctx_says(value, ctx=None):
    ctx.logger.info("seen %s", value)
    return {"run_id": ctx.run_id, "node": ctx.node, "item": ctx.item, "attempt": ctx.attempt, "inputs": ctx.inputs,
            "idempotency_key": ctx.idempotency_key, "has_deadline": ctx.deadline is not None,
            "cancelled": ctx.cancelled}


def lock(value):
    """A value that does not pickle."""
    return threading.Lock()
