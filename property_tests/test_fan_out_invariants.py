"""Fan-out invariants (issue 3) on random workflows with nested ``foreach``, map chains and gathers."""
from hypothesis import given
from hypothesis import strategies as st

from .invariants import (every_item_instance_runs_exactly_once, gathers_receive_item_results_in_item_order, holds,
                         mapped_instances_start_after_their_own_source_item)
from .scenarios import ORDER_FREE, scenarios
from .step_driver import DrawnSchedule


@given(scenarios(ORDER_FREE, fail_percents=(0,), cancels=False), st.data())
def test_every_item_instance_runs_exactly_once(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), every_item_instance_runs_exactly_once)


@given(scenarios(), st.data())
def test_a_gather_receives_the_item_results_in_item_order(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), gathers_receive_item_results_in_item_order)


@given(scenarios(), st.data())
def test_mapped_instance_i_starts_only_after_instance_i_of_its_source(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), mapped_instances_start_after_their_own_source_item)
