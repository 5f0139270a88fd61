"""step: timeouts, retries with backoff, attempts that never overlap, and delay / wait / hil parking.

Time is only what events say: the core asks for timers and a test fires them with ``TimerFired``.
"""
import pytest

from scheduler_core import (AwaitInput, Error, CancelNode, InputProvided, Refused, Retry, RunFinished, StartNode,
                            StartTimer, input_problem)
from step_helpers import Run, cancelled_timers, cancels, edge, graph, node, of_type, start_of, starts, timers


def timer_of(commands) -> StartTimer:
    (timer,) = timers(commands)
    return timer


def timed(timeout=5.0, retry=Retry(), **settings):
    return Run(graph("a -> b", nodes=[node("a", timeout=timeout, retry=retry)], **settings))


# -- timeouts ---------------------------------------------------------------------------------------

def test_a_start_carries_a_deadline_and_asks_for_a_timer_due_then():
    run = timed(timeout=5.0)
    commands = run.start(at=2.0)
    assert start_of(commands, "a").deadline == 7.0
    assert timer_of(commands).due == 7.0


def test_a_node_without_timeout_has_no_deadline_and_no_timer():
    run = Run(graph("a"))
    commands = run.start()
    assert start_of(commands, "a").deadline is None and timers(commands) == []


def test_a_timeout_fails_the_attempt_with_error_type_timeout_and_a_message_naming_the_limit():
    run = timed(timeout=5.0, on_error="continue")
    timer = timer_of(run.start(at=0))
    commands = run.fire(timer.timer, at=5.0)
    assert [(c.node, c.attempt, c.reason) for c in of_type(commands, CancelNode)] == [("a", 1, "timeout")]
    error_type, message, _, traceback = run.record("a").error
    assert (run.status("a"), error_type, traceback) == ("failed", "timeout", None)
    assert "5 s" in message and "'a'" in message
    assert run.status("b") == "skipped"
    assert run.state.error == Error("timeout", message, node="a")


def test_under_fail_fast_a_timeout_fails_the_run_with_one_cancel_of_the_attempt():
    run = timed(timeout=5.0)
    timer = timer_of(run.start(at=0))
    commands = run.fire(timer.timer, at=5.0)
    assert cancels(commands) == ["a"]
    assert of_type(commands, RunFinished)[0].error.type == "timeout"


def test_a_result_before_the_deadline_cancels_the_timer():
    run = timed(timeout=5.0)
    timer = timer_of(run.start(at=0))
    commands = run.succeed("a", 1, at=3.0)
    assert cancelled_timers(commands) == [timer.timer]
    assert run.fire(timer.timer, at=5.0) == ()
    assert run.status("a") == "succeeded"


def test_a_timed_out_attempt_never_succeeds_its_late_result_is_ignored():
    run = timed(timeout=5.0, on_error="continue")
    timer = timer_of(run.start(at=0))
    run.fire(timer.timer, at=5.0)
    assert run.step(run.succeeded("a", "late", at=6.0)) == ()
    assert run.status("a") == "failed"


def test_a_timer_firing_twice_changes_nothing_the_second_time():
    run = Run(graph("d -> b", nodes=[node("d", "delay", config={"seconds": 1})]))
    timer = timer_of(run.start(at=0))
    run.fire(timer.timer, at=1)
    state = run.state
    assert run.fire(timer.timer, at=1) == ()
    assert run.state.records == state.records


# -- retries ----------------------------------------------------------------------------------------

def test_retry_backoff_is_a_timer_due_at_delay_times_backoff_to_the_attempt_before():
    run = timed(timeout=None, retry=Retry(max_attempts=4, delay=2.0, backoff=3.0))
    run.start(at=0)
    dues = []
    for at in (1.0, 20.0, 100.0):
        timer = timer_of(run.fail("a", at=at))
        dues.append(timer.due)
        assert run.status("a") == "waiting"
        assert starts(run.fire(timer.timer, at=timer.due)) == ["a"]
    assert dues == [1.0 + 2.0, 20.0 + 6.0, 100.0 + 18.0]
    assert start_of(run.commands, "a").attempt == 4


def test_the_record_counts_attempts_and_a_success_after_retries_clears_the_error():
    run = timed(timeout=None, retry=Retry(max_attempts=3))
    run.start()
    run.fire(timer_of(run.fail("a")).timer)
    run.succeed("a", "ok")
    record = run.record("a")
    assert (record.status, record.attempts, record.error) == ("succeeded", 2, None)


def test_when_retries_are_used_up_the_instance_fails_with_the_last_error():
    run = timed(timeout=None, retry=Retry(max_attempts=2), on_error="continue")
    run.start()
    run.fire(timer_of(run.fail("a", message="first")).timer)
    commands = run.fail("a", message="second")
    assert timers(commands) == []
    record = run.record("a")
    assert (record.status, record.attempts, record.error) == ("failed", 2, Error("ValueError", "second"))


def test_under_fail_fast_a_failed_attempt_with_retries_left_does_not_fail_the_run():
    run = Run(graph("a", "b", nodes=[node("a", retry=Retry(max_attempts=2, delay=5))]))
    run.start()
    commands = run.fail("a", at=1)
    assert of_type(commands, RunFinished) == [] and cancels(commands) == []
    assert (run.state.status, run.status("b")) == ("running", "running")


def test_a_retry_waiting_for_its_backoff_holds_no_slot_and_blocks_nobody():
    run = Run(graph("a", "b", nodes=[node("a", retry=Retry(max_attempts=2, delay=30))], max_parallel=1))
    assert starts(run.start()) == ["a"]
    assert starts(run.fail("a", at=1)) == ["b"]
    assert run.in_flight == 1


def test_a_retry_after_a_timeout_waits_for_cancel_confirmed_so_attempts_never_overlap():
    run = timed(timeout=5.0, retry=Retry(max_attempts=2, delay=1.0))
    timeout = timer_of(run.start(at=0))
    retry = timer_of(run.fire(timeout.timer, at=5.0))
    assert retry.due == 6.0
    assert starts(run.fire(retry.timer, at=6.0)) == []
    assert run.status("a") == "waiting"
    commands = run.confirm("a", attempt=1, at=9.0)
    assert [(c.node, c.attempt, c.deadline) for c in of_type(commands, StartNode)] == [("a", 2, 14.0)]


def test_a_retry_after_a_confirmed_timeout_starts_when_its_backoff_ends():
    run = timed(timeout=5.0, retry=Retry(max_attempts=2, delay=1.0))
    timeout = timer_of(run.start(at=0))
    retry = timer_of(run.fire(timeout.timer, at=5.0))
    assert starts(run.confirm("a", attempt=1, at=5.5)) == []
    assert starts(run.fire(retry.timer, at=6.0)) == ["a"]


def test_a_confirmation_of_an_attempt_that_was_not_stopped_changes_nothing():
    run = timed(timeout=5.0, retry=Retry(max_attempts=2))
    run.start(at=0)
    assert run.confirm("a", attempt=1, at=1) == ()
    assert run.status("a") == "running"


def test_the_late_result_of_a_timed_out_attempt_does_not_count_for_its_retry():
    run = timed(timeout=5.0, retry=Retry(max_attempts=2, delay=1.0))
    timeout = timer_of(run.start(at=0))
    run.fire(timeout.timer, at=5.0)
    assert run.step(run.succeeded("a", "late", at=5.5, attempt=1)) == ()
    assert run.status("a") == "waiting"


# -- delay ------------------------------------------------------------------------------------------

def test_a_delay_parks_then_passes_its_input_on_after_its_seconds():
    run = Run(graph("a -> d", "d -> b", nodes=[node("d", "delay", config={"seconds": 5})]))
    run.start(at=0)
    commands = run.succeed("a", "payload", at=2)
    assert starts(commands) == [] and timer_of(commands).due == 7
    assert run.status("d") == "waiting"
    assert start_of(run.fire(timer_of(commands).timer, at=7), "b").input == "payload"
    assert (run.status("d"), run.record("d").ports) == ("succeeded", {"result": "payload"})


# -- wait and hil -----------------------------------------------------------------------------------

def wait_with_timeout(seconds):
    return Run(graph("w.result -> r", "w.completed -> c", "w.timeout -> t",
                     nodes=[node("w", "wait", config={"timeout": seconds})]))


def test_a_wait_parks_only_itself_and_asks_for_input():
    run = Run(graph("w -> after", "x", nodes=[node("w", "wait")]))
    commands = run.start({"q": 1})
    assert of_type(commands, AwaitInput) == [AwaitInput(node="w", item=(), type="wait", prompt=None, choices=None)]
    assert starts(commands) == ["x"]
    assert run.status("w") == "waiting"
    run.succeed("x")
    assert run.state.status == "running" and run.state.idle


def test_input_to_a_wait_goes_out_on_completed_and_result_and_cancels_its_timeout():
    run = wait_with_timeout(10)
    timer = timer_of(run.start("in", at=0))
    commands = run.provide("w", "answer", at=3)
    assert cancelled_timers(commands) == [timer.timer]
    assert sorted(starts(commands)) == ["c", "r"]
    assert start_of(commands, "c").input == "answer"
    assert run.status("t") == "skipped"


def test_a_wait_whose_timeout_passes_succeeds_with_its_input_on_port_timeout():
    run = wait_with_timeout(10)
    timer = timer_of(run.start("in", at=0))
    assert timer.due == 10
    commands = run.fire(timer.timer, at=10)
    assert starts(commands) == ["t"] and start_of(commands, "t").input == "in"
    assert (run.status("w"), run.record("w").ports) == ("succeeded", {"timeout": "in"})


def test_a_hil_answer_goes_out_on_the_chosen_port_and_on_result():
    run = Run(graph("h.approve -> yes", "h.reject -> no", "h -> log",
                    nodes=[node("h", "hil", config={"prompt": "ok?", "choices": ["approve", "reject"]})]))
    (wait,) = of_type(run.start(), AwaitInput)
    assert (wait.prompt, wait.choices) == ("ok?", ("approve", "reject"))
    commands = run.provide("h", "fine", port="approve")
    assert sorted(starts(commands)) == ["log", "yes"]
    assert run.status("no") == "skipped"
    assert run.record("h").ports == {"approve": "fine", "result": "fine"}


def test_a_hil_without_choices_answers_on_result_only():
    run = Run(graph("h -> next", nodes=[node("h", "hil")]))
    run.start()
    run.provide("h", "text")
    assert run.record("h").ports == {"result": "text"}


@pytest.mark.parametrize("target, port, expected", [
    ("h", "maybe", "needs one of the choices approve, reject"),
    ("h", None, "needs one of the choices approve, reject (none was given)"),  # was "(got None)"
    ("w", "approve", "offers no choices"),
    ("x", None, "is not waiting for input"),
    ("ghost", None, "there is no node 'ghost'"),
])
def test_input_that_does_not_fit_is_refused_with_the_reason_and_changes_no_record(target, port, expected):
    nodes = [node("h", "hil", config={"choices": ["approve", "reject"]}), node("w", "wait")]
    run = Run(graph("x", nodes=nodes))
    run.start()
    assert expected in input_problem(run.state, target, (), port)
    state = run.state
    commands = run.step(InputProvided(node=target, value=1, port=port, at=1))
    assert commands == (Refused(reason=input_problem(state, target, (), port), stimulus="1.0"),)
    assert expected in commands[0].reason
    assert run.state.records == state.records and [run.status(n) for n in "hw"] == ["waiting", "waiting"]


def test_input_for_one_item_completes_only_that_items_wait():
    run = Run(graph("f.iteration -> w", edge("w -> after", map=True), nodes=[node("f", "foreach"), node("w", "wait")]))
    run.start()
    commands = run.succeed("f", ports={"result": [1, 2], "iteration": [1, 2]})
    assert sorted((c.node, c.item) for c in of_type(commands, AwaitInput)) == [("w", (0,)), ("w", (1,))]
    assert starts(run.provide("w", "go", item=(1,))) == [("after", (1,))]
    assert run.status("w", (0,)) == "waiting"


def test_input_for_an_item_that_is_not_waiting_is_refused():
    run = Run(graph("f.iteration -> w", nodes=[node("f", "foreach"), node("w", "wait")]))
    run.start()
    run.succeed("f", ports={"result": [1], "iteration": [1]})
    assert input_problem(run.state, "w", (0,), None) is None
    assert "w[3] is not waiting" in input_problem(run.state, "w", (3,), None)


def test_input_to_a_finished_run_is_refused():
    run = Run(graph("a"))
    run.start()
    run.succeed("a")
    assert input_problem(run.state, "a") == "the run has already finished"


# -- an answer against its wait's timeout: decided by the event times ----------------------------------

def hil_with_timeout(seconds=10):
    return Run(graph("h.approve -> yes", "h.timeout -> late", "x",
                     nodes=[node("h", "hil", config={"choices": ["approve"], "timeout": seconds})]))


def test_an_answer_after_the_timeout_was_due_loses_the_timeout_fires_first_and_the_answer_is_refused():
    run = hil_with_timeout(10)
    timer = timer_of(run.start("in", at=0))
    commands = run.provide("h", "yes", port="approve", at=25)
    assert cancelled_timers(commands) == [timer.timer]  # fired here: the runner need not fire it
    assert starts(commands) == ["late"] and start_of(commands, "late").input == "in"
    (refused,) = of_type(commands, Refused)
    assert refused == Refused(reason="node h timed out at 1970-01-01T00:00:10Z (Unix time 10): its timeout of "
                                     "10 s passed before the answer came; the answer was not applied",
                              stimulus="1.0")
    assert (run.status("h"), run.record("h").ports, run.record("h").finished_at) == ("succeeded", {"timeout": "in"}, 10)
    assert run.status("yes") == "skipped" and run.state.now == 25
    assert run.fire(timer.timer, at=25) == ()  # the runner's own firing of it, should it come


def test_an_answer_at_the_very_time_the_timeout_is_due_loses_too():
    run = hil_with_timeout(10)
    run.start("in", at=0)
    commands = run.provide("h", "yes", port="approve", at=10)
    assert "timed out" in of_type(commands, Refused)[0].reason and run.record("h").ports == {"timeout": "in"}


def test_an_answer_before_the_timeout_is_due_is_applied():
    run = hil_with_timeout(10)
    timer = timer_of(run.start("in", at=0))
    commands = run.provide("h", "yes", port="approve", at=9.5)
    assert of_type(commands, Refused) == [] and cancelled_timers(commands) == [timer.timer]
    assert run.record("h").ports == {"approve": "yes", "result": "yes"} and starts(commands) == ["yes"]


def test_a_late_answer_to_one_item_fires_only_that_items_timeout():
    run = Run(graph("f.iteration -> w", nodes=[node("f", "foreach"), node("w", "wait", config={"timeout": 5})]))
    run.start(at=0)
    run.succeed("f", ports={"result": [1, 2], "iteration": [1, 2]}, at=1)
    commands = run.provide("w", "v", item=(1,), at=7)
    assert "node w[1] timed out at 1970-01-01T00:00:06Z" in of_type(commands, Refused)[0].reason
    assert (run.status("w", (0,)), run.status("w", (1,))) == ("waiting", "succeeded")


def test_the_time_in_a_refusal_reads_as_a_utc_date():
    from datetime import datetime, timezone

    from scheduler_core.step import _when
    for t in (0.0, 59.0, 951782400.0, 1712345678.5, 4102444799.0, -86400.0):
        expected = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert _when(t).startswith(expected + " (Unix time "), t
    assert _when(1712345678.5).endswith("(Unix time 1712345678.5)")



def test_an_answer_after_a_driver_already_fired_the_timeout_is_refused_saying_it_timed_out():
    """The timeout fired in an earlier step (a live driver's timer): the late answer's refusal says
    when the node timed out, not only that it is not waiting."""
    run = hil_with_timeout(10)
    timer = timer_of(run.start("in", at=0))
    run.fire(timer.timer, at=10)
    (refused,) = of_type(run.provide("h", "yes", port="approve", at=12), Refused)
    assert refused.reason.startswith("node h timed out at 1970-01-01T00:00:10Z")
    assert run.record("h").ports == {"timeout": "in"}
