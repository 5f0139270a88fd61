"""Where a python node's ``call`` comes from: beside its workflow first, never hiding the standard library.

A file beside a workflow must not hide a standard-library module from flowcore (or from anyone
else in the process), and two workflows in different folders must never silently run each
other's code. Some tests run the installed command in a fresh process, where nothing of the
standard library is imported yet (what a user runs).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import Engine, WorkflowError, load_workflow

CYCLE = """\
nodes:
  - {id: a, type: python, call: "tasks_beside:hello"}
  - {id: b, type: noop}
connections: [{from: a, to: b}, {from: b, to: a}]
"""
HELLO = """\
nodes:
  - {id: hello, type: python, call: "tasks_beside:hello"}
"""


def flowcore(*args, cwd):
    """Run the installed ``flowcore`` command in a fresh process, with nothing added to its path."""
    exe = Path(sys.executable).with_name("flowcore")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FLOWCORE_DB"] = str(Path(cwd) / "flowcore.db")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def beside_email(tmp_path):
    """A workflow folder holding a user's ``email.py`` next to the module its workflow calls."""
    (tmp_path / "email.py").write_text("def send(value):\n    return 'sent by the user'\n")
    (tmp_path / "tasks_beside.py").write_text("def hello(value):\n    return 'hello from beside'\n")
    (tmp_path / "cycle.yaml").write_text(CYCLE)
    (tmp_path / "hello.yaml").write_text(HELLO)
    return tmp_path


@pytest.fixture
def forget_modules():
    """Modules the test loads from its temporary folders are dropped from this process after it."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_an_email_module_beside_a_workflow_with_a_cycle_does_not_break_validation(beside_email):
    done = flowcore("validate", "cycle.yaml", cwd=beside_email)
    assert done.returncode == 2, done.stderr
    assert "cycle" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "is not a package" not in done.stderr


def test_an_email_module_beside_a_workflow_does_not_break_the_dask_runner(beside_email):
    done = flowcore("run", "hello.yaml", "--runner", "dask", "--json", cwd=beside_email)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"][0]["output"] == "hello from beside"


def test_a_call_naming_a_module_beside_the_workflow_that_shadows_the_standard_library_is_refused(
        beside_email, forget_modules):
    (beside_email / "mail.yaml").write_text("nodes: [{id: mail, type: python, call: 'email:send'}]\n")
    with pytest.raises(WorkflowError) as info:
        load_workflow(str(beside_email / "mail.yaml"))
    message = str(info.value)
    assert "standard-library module 'email'" in message and "rename" in message
    import email
    assert not email.__file__.startswith(str(beside_email))


def two_folders(tmp_path, module="same_name_tasks"):
    for folder, word in (("first", "one"), ("second", "two")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{module}.py").write_text(f"def hello(value):\n    return {word!r}\n")
        (tmp_path / folder / "wf.yaml").write_text(f"nodes: [{{id: hello, type: python, call: '{module}:hello'}}]\n")
    return tmp_path / "first" / "wf.yaml", tmp_path / "second" / "wf.yaml"


def test_two_workflows_whose_folders_hold_different_modules_of_one_name_never_run_each_others_code(
        tmp_path, forget_modules):
    first, second = two_folders(tmp_path)
    assert Engine(runner="serial").run(str(first)).record("hello")["output"] == "one"
    with pytest.raises(WorkflowError) as info:  # refused, not silently the first folder's function
        load_workflow(str(second))
    message = " ".join(str(info.value).split())
    assert "clashes" in message and str(tmp_path / "first") in message and str(tmp_path / "second") in message
    assert Engine(runner="serial").run(str(first)).record("hello")["output"] == "one"


def test_a_workflow_module_imports_its_own_siblings_without_them_on_the_path(tmp_path, forget_modules):
    (tmp_path / "sibling_user.py").write_text("import sibling_helper\n\ndef hello(value):\n"
                                              "    return sibling_helper.WORD\n")
    (tmp_path / "sibling_helper.py").write_text("WORD = 'from the sibling'\n")
    (tmp_path / "wf.yaml").write_text("nodes: [{id: hello, type: python, call: 'sibling_user:hello'}]\n")
    assert str(tmp_path) not in sys.path
    assert Engine(runner="serial").run(str(tmp_path / "wf.yaml")).record("hello")["output"] == "from the sibling"
    assert str(tmp_path) not in sys.path


def test_functions_of_a_workflow_folder_module_reach_the_in_process_dask_workers(tmp_path, forget_modules):
    (tmp_path / "dask_beside.py").write_text("def hello(value):\n    return 'ran on a dask worker'\n")
    (tmp_path / "wf.yaml").write_text("nodes: [{id: hello, type: python, call: 'dask_beside:hello'}]\n")
    result = Engine(runner="dask").run(str(tmp_path / "wf.yaml"))
    assert result.record("hello")["output"] == "ran on a dask worker"


def test_a_resume_from_another_folder_finds_the_modules_beside_the_workflow(tmp_path):
    flows, elsewhere = tmp_path / "flows", tmp_path / "elsewhere"
    flows.mkdir()
    elsewhere.mkdir()
    (flows / "resumed_tasks.py").write_text("def hello(value):\n    return f'hello {value}'\n")
    (flows / "wf.yaml").write_text("nodes:\n  - {id: ask, type: hil}\n"
                                   "  - {id: hello, type: python, call: 'resumed_tasks:hello'}\n"
                                   "connections: [{from: ask, to: hello}]\n")
    assert flowcore("run", str(flows / "wf.yaml"), "--run-id", "r1", cwd=elsewhere).returncode == 3
    done = flowcore("resume", "r1", "--node", "ask", "--input", '"you"', "--json", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert {r["node"]: r["output"] for r in json.loads(done.stdout)["nodes"]}["hello"] == "hello you"
