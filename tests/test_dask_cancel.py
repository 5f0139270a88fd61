"""The dask runner confirms a cancel only once the attempt stopped: a retry never overlaps the attempt it replaces.

The in-process cluster runs attempts on threads of this process: a cancelled attempt that ignores
its cancellation keeps running, and its retry must wait until it returned or the grace period
(``Engine(grace=...)``) is over, when it counts as abandoned. Bounds are generous.
"""
import logging
import time

import nodes_for_tests as probes
from adapters import Engine
from nodes_for_tests import task


def attempt_times(node: str) -> dict:
    """(what, attempt) -> monotonic time, from the notes of ``timed_sleep``."""
    return {(what, attempt): at for seen, (what, attempt, at) in probes.seen if seen == node}


def test_a_retry_after_a_timeout_waits_for_the_timed_out_attempt_to_return():
    stuck = task("stuck", "timed_sleep", params={"seconds": 1.0}, timeout=0.2, retry={"max_attempts": 2})
    result = Engine(runner="dask", grace=10).run({"nodes": [stuck]})
    times = attempt_times("stuck")
    assert result.record("stuck")["attempts"] == 2
    assert times[("start", 2)] >= times[("end", 1)]  # before: the retry started 0.2 s in, beside attempt 1
    assert result.abandoned == 0


def test_a_retry_after_a_timeout_starts_once_the_grace_period_abandoned_the_attempt():
    stuck = task("stuck", "timed_sleep", params={"seconds": 4.0}, timeout=0.2, retry={"max_attempts": 2})
    result = Engine(runner="dask", grace=0.5).run({"nodes": [stuck]})
    times = attempt_times("stuck")
    assert times[("start", 2)] - times[("start", 1)] >= 0.2 + 0.5 - 0.05  # the timeout, then the grace
    assert times[("start", 2)] < times[("start", 1)] + 3.5  # not held up until attempt 1 returned
    assert result.abandoned == 2  # both attempts ignored their timeout past the grace period


def test_a_cooperative_attempt_on_the_in_process_cluster_sees_its_cancellation():
    slow = task("slow", "patient", params={"seconds": 5}, timeout=0.3)
    result = Engine(runner="dask").run({"nodes": [slow]})
    assert result.record("slow")["error"]["type"] == "timeout"
    assert ("slow", "cancelled") in probes.seen


def test_an_abandoned_attempt_neither_holds_the_run_past_its_grace_nor_is_logged_as_a_warning():
    """The in-process cluster closed its worker waiting for the attempt's thread (up to 30 s), and
    the worker logged the task it gave up on as a WARNING (on stderr, after the run had counted the
    attempt abandoned)."""
    warnings = []
    catch = logging.Handler(logging.WARNING)
    catch.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("distributed.worker.state_machine")  # dask's own handler writes stderr
    logger.addHandler(catch)
    stuck = task("stuck", "sleep", params={"seconds": 5.0}, timeout=0.1)
    began = time.monotonic()
    try:
        result = Engine(runner="dask", grace=0.1).run({"nodes": [stuck]})
    finally:
        logger.removeHandler(catch)
    assert result.abandoned == 1
    assert time.monotonic() - began < 4.0
    assert warnings == []
