"""Workflow files: YAML and JSON load into the same workflow, and a bad one reports every problem at once.

Each problem names where it is (a node, a connection, a line of the file), so a person can fix the
whole file in one pass. Nothing here runs a node.
"""
import json

import attrs
import pytest

from adapters import WorkflowError, load_workflow

ECHO = "nodes_for_tests:echo"

GOOD = {
    "name": "good",
    "settings": {"max_parallel": 3, "on_error": "continue", "pools": {"ai": 1}},
    "nodes": [
        {"id": "draft", "type": "python", "call": ECHO, "pool": "ai", "timeout": 5,
         "retry": {"max_attempts": 2, "delay": 0.5, "backoff": 2}},
        {"id": "check", "type": "if", "condition": "priority == 'high'"},
        {"id": "each", "type": "foreach", "items": "items", "max_parallel": 2},
        {"id": "page", "type": "noop"},
    ],
    "connections": [
        {"from": "draft", "to": "check"},
        {"from": "check", "to": "page", "port": "true", "select": "ticket"},
        {"from": "draft", "to": "each"},
    ],
}

GOOD_YAML = """\
name: good
settings: {max_parallel: 3, on_error: continue, pools: {ai: 1}}
nodes:
  - {id: draft, type: python, call: "nodes_for_tests:echo", pool: ai, timeout: 5,
     retry: {max_attempts: 2, delay: 0.5, backoff: 2}}
  - {id: check, type: if, condition: "priority == 'high'"}
  - {id: each, type: foreach, items: items, max_parallel: 2}
  - {id: page, type: noop}
connections:
  - {from: draft, to: check}
  - {from: check, to: page, port: "true", select: ticket}
  - {from: draft, to: each}
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def problems_of(source) -> list[str]:
    with pytest.raises(WorkflowError) as info:
        load_workflow(source)
    return [str(p) for p in info.value.problems]


def wf(nodes, connections=(), **top):
    return {"nodes": list(nodes), "connections": list(connections), **top}


def the_one(problems, *words):
    """The single problem that mentions every word."""
    found = [p for p in problems if all(w in p for w in words)]
    assert len(found) == 1, (words, problems)
    return found[0]


def test_yaml_and_json_files_load_into_the_same_workflow(tmp_path):
    from_yaml = load_workflow(write(tmp_path, "good.yaml", GOOD_YAML))
    from_json = load_workflow(write(tmp_path, "good.json", json.dumps(GOOD)))
    assert [attrs.asdict(n) for n in from_yaml.nodes] == [attrs.asdict(n) for n in from_json.nodes]
    assert from_yaml.edges == from_json.edges
    assert attrs.asdict(from_yaml.settings) == attrs.asdict(from_json.settings)
    assert from_yaml.settings.pools == {"ai": 1}
    assert from_yaml.nodes[0].retry.max_attempts == 2 and from_yaml.nodes[0].timeout == 5


def test_a_file_without_a_name_is_named_after_the_file(tmp_path):
    text = GOOD_YAML.replace("name: good\n", "")
    assert load_workflow(write(tmp_path, "triage.yaml", text)).name == "triage"


def test_every_problem_is_reported_at_once_each_with_where_it_is():
    bad = wf([{"id": "a", "type": "python", "call": ECHO},
              {"id": "b", "type": "bogus"},
              {"id": "c", "type": "if"},
              {"id": "d", "type": "if", "condition": "foo[["},
              {"id": "e", "type": "python", "call": "no_such_module_for_flowcore:f"},
              {"id": "f", "type": "noop", "colour": "red"},
              {"id": "g", "type": "delay", "seconds": "soon"},
              {"id": "h", "type": "python", "call": ECHO, "timeout": -1}],
             [{"from": "a", "to": "nowhere"},
              {"from": "elsewhere", "to": "a"},
              {"from": "a", "to": "f", "select": "x[["},
              {"from": "a", "to": "h", "colour": 1}],
             extra=1)
    problems = problems_of(bad)
    the_one(problems, "node 'b'", "unknown type 'bogus'")
    the_one(problems, "node 'c'", "missing required field 'condition'")
    the_one(problems, "node 'd'", "not valid JMESPath")
    the_one(problems, "node 'e'", "cannot import module 'no_such_module_for_flowcore'")
    the_one(problems, "node 'f'", "unknown field 'colour'")
    the_one(problems, "node 'g'", "seconds")
    the_one(problems, "node 'h'", "timeout must be a positive number")
    the_one(problems, "connection #1 (a -> nowhere)", "unknown target node 'nowhere'")
    the_one(problems, "connection #2 (elsewhere -> a)", "unknown source node 'elsewhere'")
    the_one(problems, "connection #3 (a -> f)", "select 'x[['", "not valid JMESPath")
    the_one(problems, "connection #4 (a -> h)", "unknown field 'colour'")
    the_one(problems, "extra", "unknown top-level field")


def test_the_error_message_lists_every_problem_with_the_source():
    with pytest.raises(WorkflowError) as info:
        load_workflow(wf([{"id": "a", "type": "bogus"}, {"id": "b", "type": "if"}]))
    text = str(info.value)
    assert text.startswith("workflow: invalid workflow (2 problems)")
    assert "node 'a'" in text and "node 'b'" in text


def test_a_duplicate_id_is_named():
    problems = problems_of(wf([{"id": "a", "type": "noop"}, {"id": "a", "type": "noop"}]))
    assert problems == ["node 'a': duplicate id (ids must be unique)"]


def test_a_cycle_is_reported_with_the_nodes_on_it():
    bad = wf([{"id": n, "type": "noop"} for n in ("start", "x", "y", "z")],
             [{"from": "start", "to": "x"}, {"from": "x", "to": "y"}, {"from": "y", "to": "z"},
              {"from": "z", "to": "x"}])
    cycle = the_one(problems_of(bad), "cycle")
    assert all(n in cycle for n in ("x", "y", "z")) and "start" not in cycle


def test_a_cycle_is_reported_alongside_other_problems():
    bad = wf([{"id": "x", "type": "noop"}, {"id": "y", "type": "noop"}, {"id": "b", "type": "bogus"}],
             [{"from": "x", "to": "y"}, {"from": "y", "to": "x"}, {"from": "x", "to": "nowhere"}])
    problems = problems_of(bad)
    the_one(problems, "cycle", "x", "y")
    the_one(problems, "unknown type 'bogus'")
    the_one(problems, "unknown target node 'nowhere'")


def test_a_cycle_is_reported_even_when_an_id_is_duplicated():
    bad = wf([{"id": "x", "type": "noop"}, {"id": "y", "type": "noop"}, {"id": "d", "type": "noop"},
              {"id": "d", "type": "noop"}],
             [{"from": "x", "to": "y"}, {"from": "y", "to": "x"}])
    problems = problems_of(bad)
    the_one(problems, "duplicate id")
    the_one(problems, "cycle", "x", "y")


def test_missing_and_ill_typed_fields_are_named():
    bad = wf([{"type": "noop"},
              {"id": "t"},
              {"id": "r", "type": "noop", "retry": {"tries": 3}},
              {"id": "p", "type": "noop", "pool": "gpu"},
              {"id": "h", "type": "hil", "choices": ["yes", "yes"]}],
             [{"from": "t"}],
             settings={"on_error": "shrug", "max_parallel": 0, "speed": 11, "runner": "warp"})
    problems = problems_of(bad)
    the_one(problems, "node #1", "missing 'id'")
    the_one(problems, "node 't'", "missing 'type'")
    the_one(problems, "node 'r'", "retry")
    the_one(problems, "node 'p'", "pool 'gpu' is not declared")
    the_one(problems, "node 'h'", "choices must be unique")
    the_one(problems, "connection #1", "'from' and 'to'")
    the_one(problems, "settings.on_error")
    the_one(problems, "settings.max_parallel")
    the_one(problems, "settings.speed", "unknown setting")
    the_one(problems, "settings.runner", "unknown runner 'warp'")


@pytest.mark.parametrize("choices", [[1, 2], 5, ["ok", None]])
def test_bad_hil_choices_are_a_problem_even_with_an_edge_from_an_unknown_port(choices):
    problems = problems_of(wf([{"id": "h", "type": "hil", "choices": choices}, {"id": "n", "type": "noop"}],
                              [{"from": "h", "to": "n", "port": "nope"}]))
    the_one(problems, "node 'h'", "choices must be a non-empty list of port names")


def test_an_edge_from_a_port_the_node_never_produces_is_named():
    bad = wf([{"id": "c", "type": "if", "condition": "x"}, {"id": "n", "type": "noop"}],
             [{"from": "c", "to": "n", "port": "maybe"}])
    the_one(problems_of(bad), "connection #1 (c -> n)", "port 'maybe'")


def test_a_call_naming_a_missing_function_is_named():
    problem = the_one(problems_of(wf([{"id": "a", "type": "python", "call": "nodes_for_tests:no_such_fn"}])),
                      "node 'a'")
    assert "no_such_fn" in problem


@pytest.mark.parametrize("call, params, said", [
    ("nodes_for_tests:reset", {}, "reset(input) (too many positional arguments)"),
    ("nodes_for_tests:add", {"m": 2}, "add(input, m=...) (got an unexpected keyword argument 'm')"),
    ("nodes_for_tests:task", {}, "task(input) (missing a required argument: 'fn')"),
])
def test_a_function_that_cannot_be_called_as_fn_input_params_is_named_at_validation(call, params, said):
    problem = the_one(problems_of(wf([{"id": "a", "type": "python", "call": call, "params": params}])), "node 'a'")
    assert said in problem and "its parameters are (" in problem


def test_functions_callable_as_fn_input_params_pass_with_or_without_ctx():
    load_workflow(wf([{"id": "a", "type": "python", "call": "nodes_for_tests:add", "params": {"n": 2}},
                      {"id": "b", "type": "python", "call": "nodes_for_tests:flaky", "params": {"failures": 0}},
                      {"id": "c", "type": "python", "call": "builtins:len"}]))  # a builtin whose signature is known


def test_yaml_booleans_where_a_name_belongs_are_named_as_the_trap_they_are(tmp_path):
    path = write(tmp_path, "yn.yaml", "name: yn\nnodes:\n  - {id: yes, type: noop}\n"
                 "  - {id: ask, type: hil, choices: [yes, no]}\n  - {id: after, type: noop}\n"
                 "connections:\n  - {from: ask, to: after, port: on}\n")
    problems = problems_of(path)
    for where in ("node #1: id", "node 'ask': choices", "connection #1 (ask -> after): port"):
        assert "read as the boolean" in the_one(problems, where) and "quotes" in the_one(problems, where)
    quoted = write(tmp_path, "quoted.yaml", "name: yn\nnodes:\n  - {id: 'yes', type: noop}\n"
                   "  - {id: ask, type: hil, choices: ['yes', 'no']}\n  - {id: after, type: noop}\n"
                   "connections:\n  - {from: ask, to: after, port: 'yes'}\n")
    assert [n.id for n in load_workflow(quoted).nodes] == ["yes", "ask", "after"]


def test_malformed_yaml_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "broken.yaml", "name: x\nnodes:\n  - {id: a, type: noop\n  - {id: b}\n")
    [problem] = problems_of(path)
    assert problem.startswith("line 4, column") and "not valid YAML" in problem


def test_malformed_json_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "broken.json", '{"nodes": [\n  {"id": "a", "type": "noop"}\n  {"id": "b"}\n]}\n')
    [problem] = problems_of(path)
    assert problem.startswith("line 3, column") and "not valid JSON" in problem


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    [problem] = problems_of(write(tmp_path, "list.yaml", "- 1\n- 2\n"))
    assert "must be a mapping" in problem


def test_a_missing_file_is_reported_with_its_path(tmp_path):
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert str(info.value).startswith(path) and "no such file" in str(info.value)
