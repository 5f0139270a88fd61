"""Random scenarios for the step-driven tests: a workflow, what its nodes do, and what else happens to
the run: a cancel (while it runs or still queued), people cancelling nodes, crashes, a driver that
drains.

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
    queued_cancel: bool = False  # the run is cancelled before it starts
    node_cancel_odds: int | None = None  # a batch has a NodeCancelRequested about once in this many
    drain_odds: int | None = None  # the driver starts draining at a step about once in this many (at most twice)

    def drive(self, schedule, snapshots: bool = False) -> Trace:
        return drive(self.definition, load_workflow(self.definition), self.behaviour, schedule,
                     cancel_at=self.cancel_at, crash_odds=self.crash_odds, snapshots=snapshots,
                     queued_cancel=self.queued_cancel, node_cancel_odds=self.node_cancel_odds,
                     drain_odds=self.drain_odds)


@st.composite
def scenarios(draw, vocab: Vocabulary = STEP_VOCABULARY, fail_percents=(0, 2, 5), final_failures=True,
              cancels=True, crashes=True, drains=True, queued=False):
    """A drawn workflow, how its nodes behave, and what happens to the run. A run cancel comes in one
    of 5 runs, while the run is still queued in 1 of 60 of those; ``queued``: always then."""
    definition = draw(workflow_definitions(vocab))
    behaviour = Behaviour(seed=draw(st.integers(0, 2**16)), fail_percent=draw(st.sampled_from(fail_percents)),
                          final_failures=final_failures)
    cancel_at = draw(st.integers(1, 60)) if cancels and draw(st.integers(0, 4)) == 4 else None
    queued_cancel = cancel_at == 1 or queued  # one of the run cancels comes while the run is still queued
    cancel_at = None if queued_cancel else cancel_at
    crash_odds = draw(st.sampled_from(CRASH_ODDS)) if crashes and draw(st.integers(0, 2)) else None
    node_cancel_odds = draw(st.sampled_from(NODE_CANCEL_ODDS)) if cancels and draw(st.integers(0, 2)) else None
    drain_odds = draw(st.sampled_from(DRAIN_ODDS)) if drains and draw(st.booleans()) else None
    return Scenario(definition, behaviour, cancel_at, crash_odds, queued_cancel, node_cancel_odds, drain_odds)


CRASH_ODDS = (2, 4, 10)
NODE_CANCEL_ODDS = (2, 4, 8)
DRAIN_ODDS = (2, 5)


# Without timeouts (which race the clock: an attempt's, or a wait's against its answer) and without
# failures that end a run (a failing select is one; so is a loop that runs out of iterations), every
# interleaving must end in the same records.
# Waits are answered by the behaviour, the same answer whenever it comes.
# Join rules, cancel lists and end nodes decide by which input comes first: they are left out.
ORDER_FREE = Vocabulary(timeouts=False, wait_timeouts=False, selects=("@", "[0]"), loop_failures=False,
                        control_flow=False)


@st.composite
def traces(draw, **options):
    """A scenario driven under a drawn schedule: the trace itself, for properties of the generators."""
    return draw(scenarios(**options)).drive(DrawnSchedule(draw))
