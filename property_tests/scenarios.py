"""Random scenarios for the step-driven tests: a workflow, what its nodes do, and whether the run is cancelled.

The interleaving is not part of a scenario: each test draws it while driving (``DrawnSchedule``),
so hypothesis shrinks a failure to the simplest workflow and the fewest odd choices.
"""
from __future__ import annotations

import attrs
from hypothesis import strategies as st

from .step_driver import Behaviour, DrawnSchedule, Trace, drive
from adapters import load_workflow

from .workflows import STEP_VOCABULARY, Vocabulary, workflow_definitions


@attrs.frozen
class Scenario:
    definition: dict
    behaviour: Behaviour
    cancel_at: int | None = None  # the step at which a CancelRequested arrives, if any
    crash_odds: int | None = None  # the driving process dies at a step about once in this many (at most twice)

    def drive(self, schedule, snapshots: bool = False) -> Trace:
        return drive(self.definition, load_workflow(self.definition), self.behaviour, schedule,
                     cancel_at=self.cancel_at, crash_odds=self.crash_odds, snapshots=snapshots)


@st.composite
def scenarios(draw, vocab: Vocabulary = STEP_VOCABULARY, fail_percents=(0, 2, 5), final_failures=True,
              cancels=True, crashes=True):
    definition = draw(workflow_definitions(vocab))
    behaviour = Behaviour(seed=draw(st.integers(0, 2**16)), fail_percent=draw(st.sampled_from(fail_percents)),
                          final_failures=final_failures)
    cancel_at = draw(st.integers(2, 60)) if cancels and draw(st.integers(0, 4)) == 4 else None
    crash_odds = draw(st.sampled_from(CRASH_ODDS)) if crashes and draw(st.integers(0, 2)) else None
    return Scenario(definition, behaviour, cancel_at, crash_odds)


CRASH_ODDS = (2, 4, 10)


# Without timeouts (which race the clock: an attempt's, or a wait's against its answer) and without
# failures that end a run (a failing select is one), every interleaving must end in the same records.
# Waits are answered by the behaviour, the same answer whenever it comes.
ORDER_FREE = Vocabulary(timeouts=False, wait_timeouts=False, selects=("@", "[0]"))


@st.composite
def traces(draw, **options):
    """A scenario driven under a drawn schedule: the trace itself, for properties of the generators."""
    return draw(scenarios(**options)).drive(DrawnSchedule(draw))
