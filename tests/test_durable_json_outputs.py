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
