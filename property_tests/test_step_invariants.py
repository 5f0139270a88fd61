"""Invariants of ``step`` (DESIGN.md "Testing") on random workflows under random interleavings.

Each test drives ``step`` directly with a schedule hypothesis draws: which completion, failure,
timer, confirmation, late result, answer (in time or late), duplicate, cancel or drain comes next,
and how many arrive in one batch.
"""
from hypothesis import given
from hypothesis import strategies as st

from .invariants import (attempts_never_overlap, children_end_their_subworkflow_instances,
                         every_instance_ends_in_exactly_one_terminal_status, holds,
                         in_flight_never_exceeds_a_cap, late_results_are_kept_and_nothing_is_invented,
                         no_instance_starts_before_its_inputs_resolve,
                         no_ready_instance_waits_while_its_caps_have_room, node_cancels_end_what_had_not_ended,
                         nothing_happens_after_the_run_finished, nothing_starts_while_the_driver_drains,
                         ready_instances_start_in_priority_order, records_summary,
                         replaying_the_batches_rebuilds_the_state,
                         requests_from_people_are_refused_with_a_reason_never_raised,
                         sequence_is_a_linear_extension_of_the_graph, step_never_mutates_the_state_it_is_given)
from .scenarios import ORDER_FREE, scenarios
from .step_driver import DrawnSchedule, FirstSchedule
from .workflows import Vocabulary


@given(scenarios(), st.data())
def test_no_instance_starts_before_its_inputs_resolve(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), no_instance_starts_before_its_inputs_resolve)


@given(scenarios(), st.data())
def test_no_instance_starts_twice_and_attempts_never_overlap(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), attempts_never_overlap)


@given(scenarios(), st.data())
def test_in_flight_never_exceeds_max_parallel_a_pool_or_a_foreach_cap(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), in_flight_never_exceeds_a_cap)


@given(scenarios(), st.data())
def test_no_ready_instance_waits_while_its_caps_have_room(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), no_ready_instance_waits_while_its_caps_have_room)


@given(scenarios(fail_percents=(5, 20)), st.data())
def test_nothing_starts_after_the_run_finished(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), nothing_happens_after_the_run_finished)


@given(scenarios(), st.data())
def test_every_instance_ends_in_exactly_one_terminal_status(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), every_instance_ends_in_exactly_one_terminal_status)


@given(scenarios(), st.data())
def test_sequence_is_a_linear_extension_of_the_graph(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), sequence_is_a_linear_extension_of_the_graph)


@given(scenarios(), st.data())
def test_step_never_mutates_the_state_it_is_given(scenario, data):
    holds(scenario.drive(DrawnSchedule(data), snapshots=True), step_never_mutates_the_state_it_is_given)


@given(scenarios(), st.data())
def test_replaying_the_logged_batches_rebuilds_the_same_state(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), replaying_the_batches_rebuilds_the_state)


@given(scenarios(ORDER_FREE, fail_percents=(0, 20), final_failures=False, cancels=False), st.data())
def test_without_failures_final_records_do_not_depend_on_completion_order(scenario, data):
    reference = scenario.drive(FirstSchedule())
    shuffled = scenario.drive(DrawnSchedule(data))
    assert records_summary(shuffled.final) == records_summary(reference.final), shuffled.reproduction()
    assert (shuffled.final.status, shuffled.final.error) == (reference.final.status, reference.final.error)


@given(scenarios(Vocabulary(timeouts=False, wait_timeouts=False, on_error=("continue",), control_flow=False),
                 fail_percents=(10, 30),
                 cancels=False),
       st.data())
def test_under_on_error_continue_final_records_do_not_depend_on_completion_order(scenario, data):
    reference = scenario.drive(FirstSchedule())
    shuffled = scenario.drive(DrawnSchedule(data))
    assert records_summary(shuffled.final) == records_summary(reference.final), shuffled.reproduction()
    assert shuffled.final.status == reference.final.status


@given(scenarios(), st.data())
def test_ready_instances_start_critical_path_first_then_in_declaration_and_item_order(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), ready_instances_start_in_priority_order)


@given(scenarios(), st.data())
def test_nothing_starts_while_the_driver_drains(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), nothing_starts_while_the_driver_drains)


@given(scenarios(), st.data())
def test_a_node_cancel_ends_what_had_not_ended_and_nothing_it_named_starts_again(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), node_cancels_end_what_had_not_ended,
          every_instance_ends_in_exactly_one_terminal_status)


@given(scenarios(), st.data())
def test_requests_from_people_are_refused_with_a_reason_never_raised(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), requests_from_people_are_refused_with_a_reason_never_raised)


@given(scenarios(), st.data())
def test_a_result_after_its_attempt_was_stopped_is_kept_as_late_and_changes_nothing_else(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), late_results_are_kept_and_nothing_is_invented,
          every_instance_ends_in_exactly_one_terminal_status)


@given(scenarios(fail_percents=(0, 10, 30)), st.data())
def test_subworkflow_instances_end_as_their_child_runs_do_or_cancel_them(scenario, data):
    holds(scenario.drive(DrawnSchedule(data)), children_end_their_subworkflow_instances)
