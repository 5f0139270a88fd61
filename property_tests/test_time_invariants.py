"""Time invariants (issue 3): delays, node timeouts and retries, waits answered or timed out, with
timers fired in random interleavings."""
from hypothesis import given
from hypothesis import strategies as st

from .invariants import (a_timed_out_attempt_never_succeeds, attempts_never_overlap, holds,
                         nothing_completes_before_its_delay, waits_end_answered_or_timed_out)
from .scenarios import scenarios
from .step_driver import DrawnSchedule
from .workflows import Vocabulary

# Timeouts and retries on most task nodes, and runs that go on after a failure.
TIMED = Vocabulary(timeout_odds=2, retry_odds=2, on_error=("continue", "fail_fast"))


@given(scenarios(), st.data())
def test_nothing_completes_before_its_delay(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), nothing_completes_before_its_delay)


@given(scenarios(TIMED), st.data())
def test_a_timed_out_attempt_never_succeeds(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), a_timed_out_attempt_never_succeeds)


@given(scenarios(TIMED), st.data())
def test_a_retry_after_a_timeout_starts_only_once_the_attempt_is_confirmed_stopped(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), attempts_never_overlap)


@given(scenarios(), st.data())
def test_a_wait_or_hil_ends_with_its_answer_or_once_its_timeout_passed(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), waits_end_answered_or_timed_out)
