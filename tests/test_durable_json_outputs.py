"""A stored run keeps outputs as JSON, so a node returning something else fails, clearly, at once."""
from adapters import Engine

WF = {"nodes": [{"id": "odd", "type": "python", "call": "builtins:set"}], "connections": []}


def test_a_non_json_output_fails_its_node_in_a_stored_run(tmp_path):
    result = Engine(runner="serial", db=str(tmp_path / "runs.db")).run(WF, trigger=[1, 2, 2])
    record = result.record("odd")
    assert result.status == "failed" and record["error"]["type"] == "TypeError"
    assert "not JSON" in record["error"]["message"] and "'odd'" in record["error"]["message"]


def test_an_in_memory_run_passes_any_python_value_on():
    result = Engine(runner="serial").run(WF, trigger=[1, 2, 2])
    assert result.status == "succeeded" and result.record("odd")["output"] == {1, 2}


def test_a_float_json_cannot_hold_fails_its_node_too(tmp_path):
    wf = {"nodes": [{"id": "odd", "type": "python", "call": "builtins:float"}], "connections": []}
    result = Engine(runner="serial", db=str(tmp_path / "runs.db")).run(wf, trigger="nan")
    assert result.status == "failed" and "not JSON" in result.record("odd")["error"]["message"]


def test_plain_outputs_pass_in_a_stored_run(tmp_path):
    wf = {"nodes": [{"id": "s", "type": "python", "call": "builtins:str"},
                    {"id": "f", "type": "python", "call": "builtins:float"},
                    {"id": "l", "type": "python", "call": "builtins:list"}],
          "connections": [{"from": "s", "to": "f"}, {"from": "s", "to": "l"}]}
    result = Engine(runner="serial", db=str(tmp_path / "runs.db")).run(wf, trigger=2.5)
    assert result.status == "succeeded"
    assert [result.record(n)["output"] for n in "sfl"] == ["2.5", 2.5, ["2", ".", "5"]]


def test_a_port_name_json_cannot_hold_fails_its_node_and_the_run_ends(tmp_path):
    from nodes_for_tests import task

    wf = {"nodes": [task("odd", "ports_named", params={"names": [["a", "b"]]})], "connections": []}
    result = Engine(runner="thread", db=str(tmp_path / "runs.db")).run(wf, trigger=1)
    assert result.status == "failed" and "not JSON" in result.record("odd")["error"]["message"]


def test_an_output_json_keeps_in_its_own_terms_goes_on_as_a_resume_would_read_it(tmp_path):
    """A tuple goes on as a list, number keys as strings: the next node sees in the run that
    produced the value what it would see after a resume, which reads the value from the log."""
    wf = {"nodes": [{"id": "pair", "type": "python", "call": "builtins:tuple"},
                    {"id": "seen", "type": "python", "call": "builtins:repr"},
                    {"id": "keyed", "type": "python", "call": "builtins:dict"},
                    {"id": "seen_keys", "type": "python", "call": "builtins:repr"}],
          "connections": [{"from": "pair", "to": "seen"}, {"from": "pair", "to": "keyed", "select": "[[`1`, 'x']]"},
                          {"from": "keyed", "to": "seen_keys"}]}
    db = str(tmp_path / "runs.db")
    result = Engine(runner="serial", db=db).run(wf, trigger=[1, 2])
    assert result.status == "succeeded"
    assert result.record("pair")["output"] == [1, 2] and result.record("seen")["output"] == "[1, 2]"
    assert result.record("seen_keys")["output"] == "{'1': 'x'}"
    assert Engine(db=db).status(result.run_id).to_dict() == result.to_dict()
