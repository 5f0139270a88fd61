"""step: ports and routing (absent port = dead edge, None = a value, `if`), select, and how inputs are built."""
import pytest

from adapters.node_types.branch import IfNode
from adapters.node_types.merge import MergeNode
from scheduler_core import Ports, as_ports
from step_helpers import Run, edge, graph, node, start_of, starts


def test_a_plain_return_value_goes_on_port_result_and_ports_name_several():
    assert as_ports(None) == {"result": None}
    assert as_ports([1]) == {"result": [1]}
    assert as_ports(Ports(a=1, b=None)) == {"a": 1, "b": None}


def test_an_edge_reads_the_port_it_names():
    run = Run(graph("a.x -> b", "a.y -> c", "a -> d"))
    run.start()
    commands = run.succeed("a", ports={"x": 1, "y": 2, "result": 3})
    assert [start_of(commands, n).input for n in "bcd"] == [1, 2, 3]


def test_an_absent_port_is_a_dead_edge():
    run = Run(graph("a.x -> b", "a.y -> c"))
    run.start()
    assert starts(run.succeed("a", ports={"x": 1})) == ["b"]
    assert run.status("c") == "skipped"


def test_none_on_a_port_is_a_value_not_a_dead_edge():
    run = Run(graph("a.x -> b"))
    run.start()
    assert starts(run.succeed("a", ports={"x": None})) == ["b"]
    assert start_of(run.commands, "b").input is None


def test_a_none_result_is_delivered():
    run = Run(graph("a -> b"))
    run.start()
    assert start_of(run.succeed("a", None), "b").input is None


@pytest.mark.parametrize("value, branch", [
    (0, "yes"), (0.0, "yes"), ("x", "yes"), ([0], "yes"), ({"k": None}, "yes"), (True, "yes"),
    (False, "no"), (None, "no"), ("", "no"), ([], "no"), ({}, "no"),
])
def test_if_routes_by_jmespath_truth(value, branch):
    """0 is true and an empty list is false; the untaken branch is skipped."""
    run = Run(graph("cond.true -> yes", "cond.false -> no", nodes=[node("cond", "if", config={"condition": "v"})]))
    cmd = start_of(run.start({"v": value}), "cond")
    ports = IfNode("cond", {"condition": "v"}).call(cmd, None)
    assert "result" not in ports
    assert starts(run.step(run.succeeded("cond", ports=ports))) == [branch]
    assert start_of(run.commands, branch).input == {"v": value}
    assert run.status({"yes": "no", "no": "yes"}[branch]) == "skipped"


def test_several_inputs_are_a_list_in_edge_declaration_order_not_arrival_order():
    run = Run(graph("b -> m", "c -> m", "a -> m", "a", "b", "c"))
    run.start()
    run.succeed("a", "A")
    run.succeed("c", "C")
    cmd = start_of(run.succeed("b", "B"), "m")
    assert cmd.input == ["B", "C", "A"]
    assert cmd.values == ("B", "C", "A")


def test_the_input_list_leaves_out_dead_edges_and_keeps_declaration_order():
    run = Run(graph("a -> m", "b.x -> m", "c -> m"))
    run.start()
    run.succeed("c", "C")
    run.succeed("b", ports={})
    assert start_of(run.succeed("a", "A"), "m").input == ["A", "C"]


def test_inputs_are_also_offered_keyed_by_source_node():
    run = Run(graph("b -> m", "a -> m"))
    run.start()
    run.succeed("a", 1)
    assert start_of(run.succeed("b", 2), "m").inputs == {"a": 1, "b": 2}


def test_two_edges_from_one_source_give_that_source_a_list_in_edge_order():
    run = Run(graph("a.x -> m", "a.y -> m"))
    run.start()
    cmd = start_of(run.succeed("a", ports={"y": "Y", "x": "X"}), "m")
    assert (cmd.input, cmd.inputs) == (["X", "Y"], {"a": ["X", "Y"]})


def test_a_root_has_no_inputs_by_source():
    run = Run(graph("a -> b"))
    assert start_of(run.start(5), "a").inputs == {}


def test_merge_receives_every_delivered_value_in_edge_order():
    run = Run(graph("b -> m", "a -> m", nodes=[node("m", "merge")]))
    run.start()
    run.succeed("a", "A")
    cmd = start_of(run.succeed("b", "B"), "m")
    assert MergeNode("m", {}).call(cmd, None) == {"result": ["B", "A"]}


def test_select_applies_to_the_value_an_edge_delivers():
    run = Run(graph(edge("a -> b", select="user.name"), "a -> c"))
    run.start()
    commands = run.succeed("a", {"user": {"name": "ada"}})
    assert start_of(commands, "b").input == "ada"
    assert start_of(commands, "c").input == {"user": {"name": "ada"}}


def test_select_that_yields_null_still_delivers_a_value():
    run = Run(graph(edge("a -> b", select="missing")))
    run.start()
    assert start_of(run.succeed("a", {}), "b").input is None


def test_a_select_that_fails_fails_the_node_it_feeds_with_error_type_select():
    run = Run(graph(edge("a -> b", select="abs(@)"), on_error="continue"))
    run.start()
    assert starts(run.succeed("a", "not a number")) == []
    record = run.record("b")
    assert (record.status, record.error.type) == ("failed", "select")
    assert "abs(@)" in record.error.message
    assert run.state.status == "failed"
