"""Node functions for the subworkflow tests (tests/test_subworkflow.py), importable in child processes."""
from __future__ import annotations

import os
import time


def add(input, plus=0):
    return input["n"] + input.get("by", 0) + plus


def tag(input, name):
    return f"{name}:{input['n']}"


def boom(input):
    raise ValueError(f"child says no to {input['n']}")


def wait_until_cancelled(input, ctx, marker=None, seconds=30.0):
    """Marks its start (a line in ``marker``), then waits up to ``seconds`` for a cancel."""
    if marker:
        with open(marker, "a", encoding="utf-8") as f:
            f.write(f"{ctx.node} {os.getpid()}\n")
    ctx.wait_cancelled(seconds)
    return "finished"


def slow_mark(input, marker, seconds=0.5):
    """Marks its start, sleeps, passes its input on."""
    with open(marker, "a", encoding="utf-8") as f:
        f.write(f"start {os.getpid()}\n")
    time.sleep(seconds)
    return input


def countdown(input):
    return {"n": input["n"] - 1}


def passthrough(input):
    return input
