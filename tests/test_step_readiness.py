"""step: when a node becomes ready (joins), when it is skipped (all inputs dead), and the sequence."""
from scheduler_core import RunFinished, sequence_keys
from step_helpers import Run, graph, of_type, start_of, starts


def test_a_root_receives_the_trigger():
    run = Run(graph("a -> b"))
    assert start_of(run.start({"q": 1}), "a").input == {"q": 1}


def test_every_root_starts_at_once():
    run = Run(graph("a -> c", "b -> c"))
    assert starts(run.start()) == ["a", "b"]


def test_a_node_starts_as_soon_as_its_own_inputs_resolve_not_a_level_later():
    run = Run(graph("a -> b", "c -> d", "d -> e"))
    run.start()
    assert starts(run.succeed("a", 1)) == ["b"]
    assert run.status("c") == "running"


def test_join_waits_for_the_slower_branch():
    run = Run(graph("a -> c", "b -> c"))
    run.start()
    assert starts(run.succeed("a", 1, at=1)) == []
    assert not run.has_record("c")
    assert starts(run.succeed("b", 2, at=5)) == ["c"]
    assert start_of(run.commands, "c").input == [1, 2]


def test_join_runs_when_one_input_delivered_and_the_other_is_dead():
    run = Run(graph("a.yes -> c", "b -> c"))
    run.start()
    assert starts(run.succeed("b", "from b")) == []
    assert starts(run.succeed("a", ports={"no": 1})) == ["c"]
    assert start_of(run.commands, "c").input == "from b"


def test_a_dead_edge_still_holds_the_join_until_the_other_input_arrives():
    run = Run(graph("a.yes -> c", "b -> c"))
    run.start()
    assert starts(run.succeed("a", ports={})) == []
    assert starts(run.succeed("b", 2)) == ["c"]


def test_a_node_is_skipped_only_when_all_its_inputs_are_dead():
    run = Run(graph("a.yes -> c", "b.yes -> c"))
    run.start()
    run.succeed("a", ports={})
    assert not run.has_record("c")
    run.succeed("b", ports={})
    assert run.status("c") == "skipped"


def test_skips_propagate_down_a_chain():
    run = Run(graph("a.yes -> b", "b -> c", "c -> d"))
    run.start()
    commands = run.succeed("a", ports={"no": 1})
    assert starts(commands) == []
    assert [run.status(n) for n in "bcd"] == ["skipped"] * 3


def test_a_skip_stops_at_a_join_that_a_live_branch_feeds():
    run = Run(graph("a.yes -> b", "b -> j", "x -> j"))
    run.start()
    run.succeed("a", ports={})
    assert run.status("b") == "skipped"
    assert starts(run.succeed("x", "live")) == ["j"]
    assert start_of(run.commands, "j").input == "live"


def test_a_skipped_record_has_a_finish_time_and_no_attempts():
    run = Run(graph("a.yes -> b"))
    run.start(at=0)
    run.succeed("a", ports={}, at=3)
    record = run.record("b")
    assert (record.status, record.attempts, record.started_at, record.finished_at) == ("skipped", 0, None, 3)


def test_a_run_whose_last_branch_was_skipped_succeeds():
    run = Run(graph("a.yes -> b"))
    run.start()
    assert of_type(run.succeed("a", ports={}), RunFinished) == [RunFinished(status="succeeded", error=None)]


def test_the_run_finishes_only_when_every_instance_ended():
    run = Run(graph("a -> b", "c"))
    run.start()
    assert of_type(run.succeed("a", 1), RunFinished) == []
    assert of_type(run.succeed("b", 2), RunFinished) == []
    assert of_type(run.succeed("c", 3, at=7), RunFinished) == [RunFinished(status="succeeded", error=None)]
    assert (run.state.status, run.state.finished_at) == ("succeeded", 7)


def test_the_sequence_lists_succeeded_instances_in_completion_order():
    g = graph("a -> c", "b -> c", "a.yes -> s")
    run = Run(g)
    run.start()
    run.succeed("b", 1)
    run.succeed("a", 2)
    run.succeed("c", 3)
    names = [g.ids[n] for n, _ in sequence_keys(run.state)]
    assert names == ["b", "a", "c"]
    assert run.status("s") == "skipped"


def test_records_carry_start_and_finish_sequence_numbers_in_processing_order():
    run = Run(graph("a -> b"))
    run.start()
    run.succeed("a", 1)
    run.succeed("b", 2)
    a, b = run.record("a"), run.record("b")
    assert a.started_seq < a.finished_seq < b.started_seq < b.finished_seq
