"""Section 14: a cancelling join. ``join: any`` with ``cancel_rest`` over many slow branches: how
soon after the winner's result the losers have ended.

The workflow: ``BRANCHES`` python nodes (``bench.joins:branch``) feed one ``noop`` with
``join: any, cancel_rest: true``; all run at once on the thread runner (``max_parallel`` above
the branch count). One branch, the winner, returns after ``WINNER_AFTER`` seconds (every branch
has started by then); the others wait cooperatively (``ctx.wait_cancelled``) for a minute. Each
node notes, on ``time.perf_counter``, when the winner returned and when each loser saw its cancel
and returned. A sample is the last loser's return minus the winner's: the step that takes the
winner's result, decides the cancels, the runner telling each attempt, and the losers' threads
waking. Medians of repeats. Also shown: when the runner had been told of the last cancel
(``ThreadBackend.cancel`` timed by a wrapper), which is the core's and the drive loop's part; the
rest is the losers' threads waking, one after the other, on the machine's cores.

The baseline, measured interleaved in the same run, is the fail-fast path the cancels share: the
same losers beside a python node that raises after ``WINNER_AFTER`` (``bench.joins:failing``) under
``on_error: fail_fast``, from its raise to the last sibling's return.
Every run must end as expected (the join's run succeeded with every loser cancelled; the baseline
failed with every sibling cancelled), else ``RunDidNotSucceed``. A second baseline is the floor
any thread runner stands on: as many bare threads blocked on their own ``threading.Event``, set
one after the other from the measuring thread, from before the first ``set`` to the last thread's
wake-up (``bare_wake_up``).
"""
from __future__ import annotations

import statistics
import threading
import time

from adapters import Engine

from .engine_runs import RunDidNotSucceed
from .table import Check, Section, ratio

BRANCHES, QUICK_BRANCHES = 100, 20
WINNER_AFTER = 0.3  # seconds: long enough for every branch to have started
LOSERS_WAIT = 60.0
TARGET_MS = 5.0

_lock = threading.Lock()
_times: dict[str, list[float]] = {"winner": [], "losers": [], "told": []}


def branch(input=None, win: bool = False, ctx=None):
    """The winner returns after WINNER_AFTER; a loser waits until cancelled (at most LOSERS_WAIT)."""
    if win:
        time.sleep(WINNER_AFTER)
        _note("winner")
        return "won"
    ctx.wait_cancelled(LOSERS_WAIT)
    _note("losers")
    return None


async def branch_async(input=None, win: bool = False):
    """``branch`` as a coroutine, for the asyncio runner: a loser is a task, cancelled for real."""
    import asyncio

    if win:
        await asyncio.sleep(WINNER_AFTER)
        _note("winner")
        return "won"
    try:
        await asyncio.sleep(LOSERS_WAIT)
    finally:  # (cancelled: CancelledError passes through)
        _note("losers")
    return None


def failing(input=None):
    """The baseline's failure: raises after WINNER_AFTER."""
    time.sleep(WINNER_AFTER)
    _note("winner")
    raise RuntimeError("the baseline's failure")


def _note(what: str) -> None:
    now = time.perf_counter()
    with _lock:
        _times[what].append(now)


def bare_wake_up(threads: int) -> float:
    """Seconds from setting the first of ``threads`` events to the last waiting thread having woken."""
    events = [threading.Event() for _ in range(threads)]
    woke: list[float] = []

    def waiter(event: threading.Event) -> None:
        event.wait(LOSERS_WAIT)
        now = time.perf_counter()
        with _lock:
            woke.append(now)

    waiting = [threading.Thread(target=waiter, args=(e,), daemon=True) for e in events]
    for t in waiting:
        t.start()
    time.sleep(WINNER_AFTER)
    start = time.perf_counter()
    for e in events:
        e.set()
    for t in waiting:
        t.join()
    return max(woke) - start


def race_workflow(branches: int, call: str = "bench.joins:branch") -> dict:
    nodes = [{"id": f"b{i}", "type": "python", "call": call, "params": {"win": i == branches // 2}}
             for i in range(branches)]
    return {"name": "race", "settings": {"max_parallel": branches + 8},
            "nodes": [*nodes, {"id": "first", "type": "noop", "join": "any", "cancel_rest": True}],
            "connections": [{"from": f"b{i}", "to": "first"} for i in range(branches)]}


def fail_fast_workflow(branches: int) -> dict:
    nodes = [{"id": f"b{i}", "type": "python", "call": "bench.joins:branch"} for i in range(branches - 1)]
    return {"name": "fail_fast", "settings": {"max_parallel": branches + 8, "on_error": "fail_fast"},
            "nodes": [*nodes, {"id": "boom", "type": "python", "call": "bench.joins:failing"}], "connections": []}


def _telling_cancels(cancel):
    def told(self, cmd):
        _note("told")
        return cancel(self, cmd)
    return told


def losers_end_after(workflow: dict, want: str, branches: int, engine: Engine) -> tuple[float, float]:
    """Seconds from the winner's (or the failure's) return to the last loser's, and to the runner
    being told of the last cancel, in one run."""
    from runners.async_runner import AsyncioBackend
    from runners.thread import ThreadBackend

    with _lock:
        for times in _times.values():
            times.clear()
    backend = AsyncioBackend if engine.runner == "asyncio" else ThreadBackend
    told = [name for name in ("cancel", "cancel_many") if hasattr(backend, name)]
    originals = {name: getattr(backend, name) for name in told}
    for name in told:
        setattr(backend, name, _telling_cancels(originals[name]))
    try:
        result = engine.run(workflow)
    finally:
        for name in told:
            setattr(backend, name, originals[name])
    cancelled = sum(r["status"] == "cancelled" for r in result.to_dict()["nodes"])
    if result.status != want or cancelled != branches - 1 or len(_times["losers"]) != branches - 1:
        raise RunDidNotSucceed(f"{workflow['name']} ended {result.status} with {cancelled} cancelled and "
                               f"{len(_times['losers'])} losers returned, not {want} and {branches - 1}")
    return max(_times["losers"]) - _times["winner"][0], max(_times["told"]) - _times["winner"][0]


def run(cfg) -> Section:
    branches = QUICK_BRANCHES if cfg.quick else BRANCHES
    engine = Engine(runner="thread", max_parallel=branches + 8, grace=LOSERS_WAIT)
    on_asyncio = Engine(runner="asyncio", max_parallel=branches + 8, grace=LOSERS_WAIT)
    race, baseline = race_workflow(branches), fail_fast_workflow(branches)
    race_async = race_workflow(branches, "bench.joins:branch_async")
    samples: dict[str, list[tuple[float, float]]] = {"join any + cancel_rest": [], "fail_fast (baseline)": [],
                                                     "bare threads woken (floor)": [],
                                                     "join any + cancel_rest, asyncio runner": []}
    for _ in range(max(cfg.repeats, 7)):  # interleaved
        samples["join any + cancel_rest"].append(losers_end_after(race, "succeeded", branches, engine))
        samples["join any + cancel_rest, asyncio runner"].append(
            losers_end_after(race_async, "succeeded", branches, on_asyncio))
        samples["fail_fast (baseline)"].append(losers_end_after(baseline, "failed", branches, engine))
        samples["bare threads woken (floor)"].append((bare_wake_up(branches - 1), 0.0))
    medians = {name: statistics.median(ended for ended, _ in values) for name, values in samples.items()}
    join = medians["join any + cancel_rest"]
    rows = [[name, f"{medians[name] * 1e3:.2f}", f"{min(e for e, _ in values) * 1e3:.2f}",
             f"{max(e for e, _ in values) * 1e3:.2f}", f"{statistics.median(t for _, t in values) * 1e3:.2f}"]
            for name, values in samples.items()]
    return Section(
        title=f"joins: a cancelling join over {branches} slow branches, thread and asyncio runners (issue 14)",
        notes=[f"From the winner's return to the last of the {branches - 1} losers' return (each loser waits "
               f"on ctx.wait_cancelled); {len(samples['join any + cancel_rest'])} interleaved runs each, median.",
               f"join/fail-fast ratio: {ratio(join / medians['fail_fast (baseline)'])}; join/bare-threads floor ratio: "
               f"{ratio(join / medians['bare threads woken (floor)'])} (the floor: {branches - 1} threads woken "
               f"by their events, no flowcore; 'told' is the core's and the drive loop's part)"],
        tables=[("after the winner's return (ms): the last loser returned (median, min, max); the runner was told "
                 "of the last cancel (median)", ["path", "median", "min", "max", "told"], rows)],
        checks=[Check(f"the {branches - 1} losers end within {TARGET_MS:g} ms of the winner (thread runner)", join * 1e3,
                      TARGET_MS, unit=" ms"),
                Check(f"the {branches - 1} losers end within {TARGET_MS:g} ms of the winner (asyncio runner, coroutine "
                      f"nodes)", medians["join any + cancel_rest, asyncio runner"] * 1e3, TARGET_MS, unit=" ms")],
    )
