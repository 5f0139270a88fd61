"""Node functions the benchmark workflows call (``call: bench.nodes:...``) and the baselines run too."""
from __future__ import annotations

import os
import time


def nothing(*inputs, **params):
    """The no-op node (and dask task): the work is nil, so a run costs what scheduling costs."""
    return None


def sleep(input=None, seconds: float = 0.05):
    """An I/O-bound node: waits ``seconds`` and returns nothing."""
    time.sleep(seconds)


def sleep_item(item, seconds: float = 0.05, slow_item: int = 0, slow_seconds: float = 0.5):
    """One per-item step: sleeps ``slow_seconds`` for the slow item, ``seconds`` otherwise; passes the item on."""
    time.sleep(slow_seconds if item == slow_item else seconds)
    return item


def pass_on(value):
    """A node that hands its input on unchanged: a chain of them carries one payload from end to end."""
    return value


def hold(input=None, path: str = "", seconds: float = 120.0):
    """Runs until the file ``path`` exists (looking every 20 ms), at most ``seconds``: keeps a run's
    drive busy, so its driver keeps it, until the benchmark lets it go."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def crunch(item=None, rounds: int = 1_000_000):
    """A CPU-bound node: pure-Python arithmetic, holding the interpreter lock all along. Returns its
    item, the CPU seconds its own thread spent, and the process it ran in."""
    start = time.thread_time()
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return {"item": item, "cpu": time.thread_time() - start, "pid": os.getpid()}


def count_up(value):
    """The input plus one: a loop of these counts its iterations, a chain its nodes."""
    return value + 1
