"""``python -m bench.peak {dag|fanout} N [RUNNER]``: one run in a fresh interpreter, peak memory as JSON.

Peak RSS is the kernel's high-water mark of this process's memory (``VmHWM`` in
``/proc/self/status``: interpreter, imports, the graph and the run). Not ``getrusage``'s
``ru_maxrss``: that survives ``exec`` and so would report the benchmark parent's size.
``before_run_mb`` is the RSS once the workflow is built, just before ``Engine.run``.
"""
from __future__ import annotations

import json
import sys

from adapters import Engine

from .graphs import fan_out_workflow, layered_dag


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def main(kind: str, n: int, runner: str = "serial") -> dict:
    if kind == "dag":
        workflow, trigger = layered_dag(n).workflow(), None
    else:
        workflow, trigger = fan_out_workflow(), list(range(n))
    before = status_mb("VmRSS")
    result = Engine(runner=runner, db=None, max_parallel=8).run(workflow, trigger=trigger)
    peak = status_mb("VmHWM")
    return {"kind": kind, "n": n, "runner": runner, "status": result.status,
            "before_run_mb": round(before, 1), "peak_rss_mb": round(peak, 1)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])))
