"""Node functions the runner, engine, workflow-file and CLI tests name in their workflows.

Workflows call them as ``nodes_for_tests:<function>`` (``task`` writes such a node). What the nodes observe (how many ran at
once, who saw its cancellation) goes into module-level probes that ``reset`` clears before each
test. The sleeps stand in for slow external calls.
"""
import asyncio
import collections
import sys
import threading
import time

from scheduler_core import Ports

_lock = threading.Lock()
running = collections.Counter()  # label -> instances inside ``counted_sleep`` right now
peak = collections.Counter()  # label -> the most that were ever inside at once
seen: list = []  # (node, what it observed), in the order observed


def task(node_id: str, fn: str, **fields) -> dict:
    """A python node calling ``fn`` of this module; ``fields`` are the node's other fields (params...)."""
    return {"id": node_id, "type": "python", "call": f"nodes_for_tests:{fn}", **fields}


def reset() -> None:
    with _lock:
        running.clear()
        peak.clear()
        seen.clear()
        signals.clear()


def note(node: str, what: str) -> None:
    with _lock:
        seen.append((node, what))


def echo(value):
    return value


def add(value, n=1):
    return value + n


def double(value):
    return value * 2


def split(value):
    """Two ports at once: the value on ``left`` and its double on ``right``."""
    return Ports(left=value, right=value * 2)


def fail(value, message="boom"):
    raise RuntimeError(message)


def fail_on(value, bad=None):
    """Fails for the one input equal to ``bad``; passes the others through."""
    if value == bad:
        raise ValueError(f"bad input {value!r}")
    return value


def fail_after(value, seconds=0.1, message="boom"):
    time.sleep(seconds)
    raise RuntimeError(message)


def sleep(value, seconds=1.0):
    """A slow call that ignores cancellation (Python cannot interrupt it)."""
    time.sleep(seconds)
    return value


def counted_sleep(value, seconds=0.2, label="all"):
    """Sleeps while counted under ``label``: ``peak[label]`` is the most that ran at once."""
    with _lock:
        running[label] += 1
        peak[label] = max(peak[label], running[label])
    try:
        time.sleep(seconds)
    finally:
        with _lock:
            running[label] -= 1
    return value


def patient(value, seconds=5.0, ctx=None):
    """A cooperative slow call: stops early, and says so, once its context is cancelled."""
    if ctx.wait_cancelled(seconds):
        note(ctx.node, "cancelled")
        return "stopped early"
    return value


def fail_or_wait(value, bad=None, seconds=5.0, ctx=None):
    """Fails soon for the input equal to ``bad``; waits cooperatively (like ``patient``) for the others."""
    if value == bad:
        time.sleep(0.2)
        raise ValueError(f"bad input {value!r}")
    return patient(value, seconds, ctx)


def flaky(value, failures=1, ctx=None):
    """Fails its first ``failures`` attempts, then returns its input."""
    if ctx.attempt <= failures:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return value


def noisy(value):
    print("chatter from a node on standard output")
    return value


async def async_echo(value):
    await asyncio.sleep(0)
    return value


async def async_blocking(value, seconds=2.0):
    """A coroutine that blocks its event loop (sync code in an ``async def``): nothing can cancel it."""
    time.sleep(seconds)
    return value


async def async_patient(value, seconds=5.0, ctx=None):
    """A coroutine that notes whether a real cancellation (CancelledError) reached it."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        note(ctx.node, "CancelledError")
        raise
    return value


def thread_name(value):
    """Where the node ran: the name of the thread that called it."""
    return threading.current_thread().name


def ports_named(value, names=()):
    """Its input on each port in ``names``, where a name given as a list becomes a tuple."""
    return Ports({tuple(n) if isinstance(n, list) else n: value for n in names})


def timed_sleep(value, seconds=1.0, ctx=None):
    """Like ``sleep`` (ignores cancellation), and notes when each attempt started and ended (monotonic)."""
    note(ctx.node, ("start", ctx.attempt, time.monotonic()))
    time.sleep(seconds)
    note(ctx.node, ("end", ctx.attempt, time.monotonic()))
    return value


signals: dict = collections.defaultdict(threading.Event)  # name -> an event nodes and tests set and wait for


def rendezvous(value, mine="", wait_for="", seconds=10.0):
    """Sets the signal ``mine``, then waits (up to ``seconds``) for the signal ``wait_for``."""
    signals[mine].set()
    if not signals[wait_for].wait(seconds):
        raise TimeoutError(f"no {wait_for!r} within {seconds} s")
    return value


def writes_to_fd_1(value):
    """Output that bypasses sys.stdout: straight to file descriptor 1, and from a child process."""
    import os
    import subprocess
    import sys

    os.write(1, b"raw bytes on fd 1\n")
    subprocess.run([sys.executable, "-c", "print('a child process printing')"], check=True)
    print("a plain print")
    return value


def deeply_nested(value, depth=1000):
    """A list nested ``depth`` levels deep."""
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


# Strings a terminal view must show literally: rich markup, and terminal escape sequences.
ESCAPES = "a\x1b[31mred\x1b]0;title\x07\x9bz"


def markup_close(value):
    return "[/]"


def markup_bold(value):
    return "[bold]x"


def terminal_escapes(value, ctx=None):
    ctx.logger.info("log %s [/] end", ESCAPES)
    return ESCAPES


def fail_markup(value):
    raise RuntimeError("bad [/] and [red]x[/red] \x1b[31m")


class Unprintable(Exception):
    """An error whose ``str()`` raises (and, with ``repr_too``, whose ``repr()`` raises too)."""

    def __init__(self, repr_too=False):
        super().__init__()
        self.repr_too = repr_too

    def __str__(self):
        raise RuntimeError("str() of this error raises")

    def __repr__(self):
        if self.repr_too:
            raise RuntimeError("repr() of this error raises")
        return "Unprintable(...)"


def _misbehaviour(kind):
    if kind == "exit":
        return SystemExit(0)
    if kind == "interrupt":
        return KeyboardInterrupt()
    if kind == "base":
        return BaseException("x")
    if kind == "unprintable":
        return Unprintable()
    if kind == "unprintable_repr":
        return Unprintable(repr_too=True)
    raise ValueError(kind)


def misbehave(value, kind="exit"):
    """Raises what well-behaved node code never does: ``sys.exit(0)``, KeyboardInterrupt, BaseException..."""
    if kind == "exit":
        sys.exit(0)
    raise _misbehaviour(kind)


async def async_misbehave(value, kind="exit"):
    await asyncio.sleep(0)
    if kind == "exit":
        sys.exit(0)
    raise _misbehaviour(kind)


def mark_then_sleep(value, path="", seconds=30.0):
    """Creates the file ``path`` (a test waits for it to know the node runs), then sleeps."""
    open(path, "w").close()
    time.sleep(seconds)
    return value


def answer_after(input, answer=None, seconds=0.1, ctx=None):
    """Returns ``answer`` after ``seconds``, or None at once if cancelled meanwhile."""
    if ctx.wait_cancelled(seconds):
        return None
    return answer


def answer_after_item(seconds, ctx=None):
    """Its input is how long to wait; returns ``[seconds]``, or None at once if cancelled meanwhile."""
    if ctx.wait_cancelled(seconds):
        return None
    return [seconds]
