"""Workflow files the loader refuses with exit 2 and one clear line, never a traceback or a hang
(issue 15): not UTF-8, nested too deep, a YAML alias bomb, duplicate keys, a type or pool that is a
list or a mapping."""
import json
import subprocess
import sys

import pytest

LOL = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)])

CASES = {
    "latin-1.yaml": ("name: café\nnodes: [{id: a, type: noop}]\n".encode("latin-1"), "UTF-8"),
    "utf-16.yaml": ("name: x\nnodes: [{id: a, type: noop}]\n".encode("utf-16"), "UTF-8"),
    "random.json": (bytes(range(128, 256)) * 4, "UTF-8"),
    "deep.yaml": (("x: " + "[" * 5000 + "]" * 5000 + "\nnodes: [{id: a, type: noop}]\n").encode(), "nested"),
    "deep.json": (("{\"x\": " + "[" * 5000 + "]" * 5000 + ", \"nodes\": []}").encode(), "nested"),
    "bomb.yaml": ((LOL + "\ndescription: *i\nnodes: [{id: a, type: noop}]\n").encode(), "alias"),
    "dup.yaml": (b"name: x\nnodes: [{id: a, type: noop}]\nnodes: [{id: b, type: noop}]\n", "nodes"),
    "dup-node.yaml": (b"nodes:\n  - {id: a, type: noop, id: b}\n", "id"),
    "list-type.yaml": (b"nodes: [{id: a, type: [noop]}]\n", "type"),
    "map-pool.yaml": (b"nodes: [{id: a, type: noop, pool: {x: 1}}]\n", "pool"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_file_is_refused_with_exit_2_and_a_clear_message(tmp_path, name):
    content, says = CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "adapters.cli", "validate", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert says in result.stderr, result.stderr[-2000:]


def test_a_module_that_exits_when_imported_is_a_clear_problem_not_exit_5(tmp_path):
    (tmp_path / "quits.py").write_text("import sys\nsys.exit(5)\ndef f(x):\n    return x\n")
    (tmp_path / "wf.yaml").write_text("nodes: [{id: a, type: python, call: 'quits:f'}]\n")
    result = subprocess.run([sys.executable, "-m", "adapters.cli", "validate", "wf.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "SystemExit" in result.stderr and "quits" in result.stderr


def _cli(tmp_path, *args):
    import os
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_node_output_nested_too_deep_fails_its_node_and_the_run_is_not_left_running(tmp_path):
    (tmp_path / "wf.yaml").write_text("nodes: [{id: deep, type: python, call: 'nodes_for_tests:deeply_nested'}]\n")
    result = _cli(tmp_path, "run", "wf.yaml", "--json")
    assert result.returncode == 1, result.stderr[-2000:]
    run = json.loads(result.stdout)
    assert run["status"] == "failed" and "nested more than" in run["error"]["message"]
    status = _cli(tmp_path, "status", run["run_id"], "--json")
    assert json.loads(status.stdout)["status"] == "failed"


@pytest.mark.parametrize("trigger", ["[" * 990 + "]" * 990, "[" * 60_000])
def test_a_trigger_nested_too_deep_is_refused_with_exit_2(tmp_path, trigger):
    (tmp_path / "wf.yaml").write_text("nodes: [{id: a, type: noop}]\n")
    result = _cli(tmp_path, "run", "wf.yaml", "--trigger", trigger)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--trigger" in result.stderr
    assert _cli(tmp_path, "runs", "--json").stdout.strip() in ("[]", "")


@pytest.mark.parametrize("where", ["condition", "select"])
def test_a_jmespath_expression_nested_too_deep_is_a_problem_not_a_traceback(tmp_path, where):
    expression = "(" * 3000 + "a" + ")" * 3000
    wf = {"nodes": [{"id": "a", "type": "noop"}, {"id": "c", "type": "if", "condition": "x"}],
          "connections": [{"from": "a", "to": "c"}]}
    if where == "condition":
        wf["nodes"][1]["condition"] = expression
    else:
        wf["connections"][0]["select"] = expression
    (tmp_path / "wf.json").write_text(json.dumps(wf))
    result = _cli(tmp_path, "validate", "wf.json")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "nested too deeply" in result.stderr
