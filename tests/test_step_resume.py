"""step: ``Resumed`` (a new process took over) re-dispatches running instances and re-announces timers and waits."""
from scheduler_core import AwaitInput, Retry, StartNode, StartTimer
from step_helpers import Run, graph, node, of_type, start_of, starts, timers


def test_resumed_redispatches_every_running_instance_with_the_same_attempt_and_input():
    run = Run(graph("a", "b -> c", max_parallel=2))
    run.start("t", at=0)
    commands = run.resume(at=50)
    assert [(c.node, c.attempt, c.input, c.redispatch) for c in of_type(commands, StartNode)] == \
        [("a", 1, "t", True), ("b", 1, "t", True)]
    assert run.record("a").attempts == 1


def test_resumed_never_exceeds_the_cap_nor_starts_queued_instances_twice():
    run = Run(graph("a", "b", "c", max_parallel=2))
    run.start()
    assert starts(run.resume(at=5)) == ["a", "b"]
    assert run.in_flight == 2
    assert starts(run.succeed("a")) == ["c"]


def test_the_result_of_a_redispatched_instance_is_accepted():
    run = Run(graph("a -> b"))
    run.start()
    run.resume(at=5)
    assert starts(run.succeed("a", "done")) == ["b"]


def test_a_redispatched_instance_gets_a_fresh_deadline():
    run = Run(graph("a", nodes=[node("a", timeout=10.0)]))
    (old,) = timers(run.start(at=0))
    commands = run.resume(at=100)
    (fresh,) = timers(commands)
    assert start_of(commands, "a").deadline == fresh.due == 110
    assert fresh.timer != old.timer
    assert run.fire(old.timer, at=100) == ()
    assert run.status("a") == "running"


def test_resumed_reannounces_delay_retry_and_wait_timers_with_their_ids_and_due_times():
    nodes = [node("d", "delay", config={"seconds": 30}), node("w", "wait", config={"timeout": 60}),
             node("r", retry=Retry(max_attempts=2, delay=20))]
    run = Run(graph(nodes=nodes))
    before = timers(run.start(at=0)) + timers(run.fail("r", at=1))
    assert sorted(timers(run.resume(at=10)), key=lambda t: t.timer) == sorted(before, key=lambda t: t.timer)
    assert len(before) == 3


def test_resumed_reannounces_every_wait():
    nodes = [node("h", "hil", config={"prompt": "ok?", "choices": ["yes"]}), node("w", "wait")]
    run = Run(graph(nodes=nodes))
    announced = of_type(run.start(), AwaitInput)
    assert of_type(run.resume(at=9), AwaitInput) == announced
    assert len(announced) == 2


def test_a_retry_held_for_a_stopping_attempt_starts_on_resume_since_the_old_process_is_gone():
    run = Run(graph("a", nodes=[node("a", timeout=5.0, retry=Retry(max_attempts=2, delay=1.0))]))
    (timeout,) = timers(run.start(at=0))
    (retry,) = timers(run.fire(timeout.timer, at=5))
    assert starts(run.fire(retry.timer, at=6)) == []
    commands = run.resume(at=7)
    assert [(c.node, c.attempt, c.redispatch) for c in of_type(commands, StartNode)] == [("a", 2, False)]


def test_after_resume_a_parked_instance_still_completes_from_its_timer():
    run = Run(graph("d -> b", nodes=[node("d", "delay", config={"seconds": 30})]))
    (delay,) = timers(run.start(at=0))
    run.resume(at=10)
    assert starts(run.fire(delay.timer, at=30)) == ["b"]


def test_resuming_a_run_with_nothing_in_flight_starts_nothing_new():
    run = Run(graph("w", nodes=[node("w", "wait")]))
    run.start()
    commands = run.resume(at=3)
    assert of_type(commands, StartNode) == [] and of_type(commands, StartTimer) == []
    assert run.state.status == "running"


def test_resumed_announces_timers_by_due_time_and_instances_by_declaration_order():
    nodes = [node("late", "delay", config={"seconds": 60}), node("soon", "delay", config={"seconds": 5}),
             node("mid", retry=Retry(max_attempts=2, delay=20)), node("y"), node("x")]
    run = Run(graph(nodes=nodes))
    run.start(at=0)
    run.fail("mid", at=0)
    commands = run.resume(at=1)
    assert [t.due for t in timers(commands)] == [5, 20, 60]
    assert starts(commands) == ["y", "x"]
