"""``flowcore status RUN --node N [--item I]``: one instance's story, through the real command.

Each chapter names the event that moved the instance by its id (``"<step>.<i>"``, or ``"<step>"``
for the starts chosen after a step's events), so the tests check ids against the log: step 0 is
``RunStarted``, and each later step is the batch of what the runner reported.
"""
import json

from test_cli import cli, cli_json, flowcore, workdir  # noqa: F401 (workdir is a fixture)

FLAKY = """\
name: flaky
nodes:
  - {id: first, type: noop}
  - {id: shaky, type: python, call: "nodes_for_tests:flaky", retry: {max_attempts: 3, delay: 0.05}}
connections:
  - {from: first, to: shaky}
"""
FAN = """\
name: fan
nodes:
  - {id: each, type: foreach}
  - {id: double, type: python, call: "nodes_for_tests:double"}
connections:
  - {from: each, to: double, port: iteration}
"""


def moves(story):
    return [(ch["event"], ch["move"]) for ch in story if ch["move"]]


def test_a_retried_node_tells_start_retry_later_retry_due_start_succeed(workdir, capsys):
    (workdir / "flaky.yaml").write_text(FLAKY)
    assert cli(capsys, "run", "flaky.yaml", "--run-id", "f")[0] == 0
    code, told, _ = cli_json(capsys, "status", "f", "--node", "shaky")
    assert code == 0 and told["run_id"] == "f" and told["node"] == "shaky" and told["item"] is None
    story = told["story"]
    # step 0 starts `first`, step 1 hears it succeeded (and starts shaky once its events are applied),
    # step 2 hears attempt 1 failed, step 3 the retry timer, step 4 attempt 2's success
    assert moves(story) == [("1", "start"), ("2.0", "retry_later"), ("3.0", "retry_due"), ("3", "start"),
                            ("4.0", "succeed")]
    assert [(ch["from"], ch["to"]) for ch in story][1] == ("running", "waiting")
    failed = story[1]["cause"]
    assert failed["type"] == "NodeFailed" and failed["attempt"] == 1
    assert failed["error"] == {"type": "RuntimeError", "message": "attempt 1 fails"}
    assert story[0]["commands"] == [{"type": "StartNode", "attempt": 1}]
    timer = story[1]["commands"][0]
    assert timer["type"] == "StartTimer" and timer["due"] >= 0.05
    assert story[2]["cause"] == {"type": "TimerFired", "timer": timer["timer"]}
    assert story[3]["commands"] == [{"type": "StartNode", "attempt": 2}]
    assert story[4]["cause"]["type"] == "NodeSucceeded" and story[4]["cause"]["attempt"] == 2
    assert all(ch["at"] >= 0 for ch in story) and story[2]["at"] >= 0.05  # seconds since the run started


def test_the_story_as_a_table_names_each_event_and_the_failure(workdir, capsys):
    (workdir / "flaky.yaml").write_text(FLAKY)
    cli(capsys, "run", "flaky.yaml", "--run-id", "f")
    code, out, _ = cli(capsys, "status", "f", "--node", "shaky")
    assert code == 0
    for text in ("retry_later", "retry_due", "attempt 1 fails", "StartNode attempt 2", "running → waiting"):
        assert text in out


def test_a_hil_answered_by_resume_tells_park_then_succeed_by_the_input(workdir, capsys):
    cli(capsys, "run", "approval.yaml", "--run-id", "ask")
    cli(capsys, "resume", "ask", "--node", "approve", "--port", "ship", "--input", '"yes"')
    _, told, _ = cli_json(capsys, "status", "ask", "--node", "approve")
    story = told["story"]
    assert moves(story) == [("0.0", "park"), ("1.0", "succeed")]  # step 1 is the resume: the answer, Resumed
    assert story[0]["cause"]["type"] == "RunStarted"
    assert story[0]["commands"] == [{"type": "AwaitInput", "prompt": "Ship it?", "choices": ["ship", "hold"]}]
    answered = next(ch for ch in story if ch["move"] == "succeed")
    assert answered["cause"] == {"type": "InputProvided", "node": "approve", "item": None, "port": "ship"}
    assert (answered["from"], answered["to"]) == ("waiting", "succeeded")


def test_an_item_of_a_node_that_runs_per_item(workdir, capsys):
    (workdir / "fan.yaml").write_text(FAN)
    cli(capsys, "run", "fan.yaml", "--run-id", "fan", "--trigger", "[1, 2, 3]")
    _, told, _ = cli_json(capsys, "status", "fan", "--node", "double", "--item", "2")
    assert told["item"] == [2] and [ch["move"] for ch in told["story"]] == ["start", "succeed"]
    code, _, err = cli(capsys, "status", "fan", "--node", "double", "--item", "7")
    assert code == 2 and "no item 7" in err and "0, 1, 2" in err
    code, _, err = cli(capsys, "status", "fan", "--node", "double")
    assert code == 2 and "use --item" in err


def test_an_unknown_node_or_an_item_of_a_node_without_items_exits_2_with_one_line(workdir):
    assert flowcore("run", "failing.yaml", "--run-id", "x", cwd=workdir).returncode == 1
    done = flowcore("status", "x", "--node", "nope", cwd=workdir)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "flowcore status: run 'x' has no node 'nope'"
    done = flowcore("status", "x", "--node", "broken", "--item", "1", cwd=workdir)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_json_is_one_value_on_stdout(workdir):
    flowcore("run", "noisy.yaml", "--run-id", "n", "--trigger", '{"items": [1]}', cwd=workdir)
    done = flowcore("status", "n", "--node", "talk", "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout)  # the whole of stdout is one value
    assert set(told) == {"run_id", "node", "item", "story", "attempts"} and told["story"][-1]["to"] == "succeeded"


def test_status_without_node_is_unchanged_and_item_needs_node(workdir, capsys):
    cli(capsys, "run", "failing.yaml", "--run-id", "x")
    code, result, _ = cli_json(capsys, "status", "x")
    assert code == 0 and result["run_id"] == "x" and "nodes" in result
    code, _, err = cli(capsys, "status", "x", "--item", "1")
    assert code == 2 and "--item needs --node" in err


def test_the_table_shows_each_command_on_a_line_of_its_own_not_a_literal_newline(workdir, capsys):
    (workdir / "ask.yaml").write_text("nodes: [{id: ask, type: hil, prompt: 'Ship it?', timeout: 60}]\n")
    cli(capsys, "run", "ask.yaml", "--run-id", "a", "--linger", "0")
    code, out, _ = cli(capsys, "status", "a", "--node", "ask")
    assert code == 0 and "AwaitInput" in out and "StartTimer" in out
    assert "\\n" not in out  # (the terminal view shows a newline inside one value as \n; not between commands)
