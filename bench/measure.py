"""Timing and memory: interleaved repeats with medians, and peak RSS in a fresh subprocess.

Contenders are timed in turn within each repeat (A, B, C, A, B, C, ...), so noise from other
processes on this shared machine falls on all of them alike; figures are medians of the repeats.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds one call of ``fn`` takes (garbage from earlier calls collected first).

    What ``fn`` returns is freed after the clock stops: a load is timed until its caller holds the
    loaded run, not until a 100,000-instance state has been taken apart again."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each contender over ``repeats`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def median_of(values) -> float:
    return statistics.median(values)


def peak_rss(*args: str) -> dict:
    """Run ``python -m bench.peak ARGS`` in a fresh interpreter; its JSON: peak RSS (MB) and more."""
    out = subprocess.run([sys.executable, "-m", "bench.peak", *args], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
