"""The Engine facade: waiting nodes (delay, wait, hil), answering them with resume, refusals, runner choice.

A delay or a wait timeout that falls due within the linger time finishes the run on its own; a
hil (or a timer beyond the linger time) leaves the run ``waiting`` until ``Engine.resume`` in the
same process continues it. A refused request raises ``RunRefused`` and changes nothing.
"""
import time

import pytest

from adapters import Engine, RunRefused
from nodes_for_tests import task

RUNNERS = ["serial", "thread", "asyncio"]


def statuses(result) -> dict:
    return {(r["node"], tuple(r["item"] or ())): r["status"] for r in result.to_dict()["nodes"]}


def not_started(result, node) -> bool:
    """No record yet, or a pending one: the instance has not run."""
    return statuses(result).get((node, ()), "pending") == "pending"


APPROVAL = {
    "name": "approval",
    "nodes": [task("draft", "echo"),
              {"id": "approve", "type": "hil", "prompt": "Publish?", "choices": ["publish", "reject"]},
              task("publish", "echo"),
              {"id": "discard", "type": "noop"},
              task("archive", "sleep", params={"seconds": 0.2})],
    "connections": [{"from": "draft", "to": "approve"},
                    {"from": "approve", "to": "publish", "port": "publish"},
                    {"from": "approve", "to": "discard", "port": "reject"},
                    {"from": "draft", "to": "archive"}],
}


def waiting_approval(runner="thread"):
    engine = Engine(runner=runner)
    return engine, engine.run(APPROVAL, trigger="draft text")


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_delay_within_the_linger_time_finishes_the_run_on_its_own(runner):
    workflow = {"nodes": [{"id": "pause", "type": "delay", "seconds": 0.3}, task("after", "echo")],
                "connections": [{"from": "pause", "to": "after"}]}
    result = Engine(runner=runner).run(workflow, trigger={"n": 1})
    assert result.status == "succeeded"
    assert result.record("after")["output"] == {"n": 1}
    pause = result.record("pause")
    assert pause["finished_at"] - pause["started_at"] >= 0.29


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_wait_whose_timeout_passes_sends_its_input_out_on_the_timeout_port(runner):
    workflow = {"nodes": [{"id": "answer", "type": "wait", "timeout": 0.5},
                          task("on_timeout", "echo"), task("on_answer", "echo")],
                "connections": [{"from": "answer", "to": "on_timeout", "port": "timeout"},
                                {"from": "answer", "to": "on_answer", "port": "completed"}]}
    result = Engine(runner=runner).run(workflow, trigger="ping")
    assert result.status == "succeeded"
    assert result.record("answer")["ports"] == {"timeout": "ping"}
    assert result.record("on_timeout")["output"] == "ping"
    assert result.record("on_answer")["status"] == "skipped"


def test_a_wait_answered_before_its_timeout_sends_the_answer_out_on_completed():
    workflow = {"nodes": [{"id": "answer", "type": "wait", "timeout": 3600}, task("on_answer", "echo")],
                "connections": [{"from": "answer", "to": "on_answer", "port": "completed"}]}
    engine = Engine()
    first = engine.run(workflow, trigger="ping")
    assert first.status == "waiting"
    result = engine.resume(first.run_id, node="answer", input={"ok": True})
    assert result.status == "succeeded"
    assert result.record("answer")["ports"] == {"completed": {"ok": True}, "result": {"ok": True}}
    assert result.record("on_answer")["output"] == {"ok": True}


def test_a_timer_beyond_the_linger_time_leaves_the_run_waiting_until_resumed():
    workflow = {"nodes": [{"id": "pause", "type": "delay", "seconds": 0.5}, task("after", "echo")],
                "connections": [{"from": "pause", "to": "after"}]}
    engine = Engine(linger=0.05)
    first = engine.run(workflow, trigger=3)
    assert first.status == "waiting"
    assert not_started(first, "after")
    time.sleep(0.6)
    result = engine.resume(first.run_id)
    assert result.status == "succeeded" and result.record("after")["output"] == 3


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_hil_parks_only_itself_and_leaves_the_run_waiting(runner):
    _, result = waiting_approval(runner)
    assert result.status == "waiting"
    assert result.to_dict()["status"] == "waiting"
    assert result.record("approve")["status"] == "waiting"
    assert result.record("archive")["status"] == "succeeded"
    assert not_started(result, "publish")


def test_resume_answers_a_hil_on_the_chosen_port():
    engine, first = waiting_approval()
    result = engine.resume(first.run_id, node="approve", port="publish", input="looks good")
    assert result.status == "succeeded"
    assert result.record("approve")["ports"] == {"publish": "looks good", "result": "looks good"}
    assert result.record("publish")["output"] == "looks good"
    assert result.record("discard")["status"] == "skipped"


def test_a_hil_answer_naming_a_choice_not_offered_is_refused_and_changes_nothing():
    engine, first = waiting_approval()
    before = engine.status(first.run_id).to_dict()
    with pytest.raises(RunRefused, match="publish, reject"):
        engine.resume(first.run_id, node="approve", port="maybe", input="hmm")
    assert engine.status(first.run_id).to_dict() == before
    result = engine.resume(first.run_id, node="approve", port="reject", input="no")
    assert result.status == "succeeded" and result.record("discard")["output"] == "no"


def test_a_hil_with_choices_needs_a_port():
    engine, first = waiting_approval()
    with pytest.raises(RunRefused, match="choices"):
        engine.resume(first.run_id, node="approve", input="no port")
    assert engine.status(first.run_id).status == "waiting"


def test_a_hil_without_choices_answers_on_result_and_refuses_a_port():
    workflow = {"nodes": [{"id": "ask", "type": "hil", "prompt": "Name?"}, task("greet", "echo")],
                "connections": [{"from": "ask", "to": "greet"}]}
    engine = Engine()
    first = engine.run(workflow)
    with pytest.raises(RunRefused, match="no choices"):
        engine.resume(first.run_id, node="ask", port="yes", input="Ada")
    result = engine.resume(first.run_id, node="ask", input="Ada")
    assert result.record("ask")["ports"] == {"result": "Ada"}
    assert result.record("greet")["output"] == "Ada"


def test_a_hil_whose_timeout_passes_goes_out_on_the_timeout_port():
    workflow = {"nodes": [{"id": "ask", "type": "hil", "choices": ["yes"], "timeout": 0.3},
                          {"id": "escalate", "type": "noop"}],
                "connections": [{"from": "ask", "to": "escalate", "port": "timeout"}]}
    result = Engine().run(workflow, trigger="ticket")
    assert result.status == "succeeded"
    assert result.record("escalate")["output"] == "ticket"


def test_a_per_item_hil_is_answered_by_its_item_path():
    workflow = {"nodes": [{"id": "each", "type": "foreach"}, {"id": "ok", "type": "hil"}, task("done", "echo")],
                "connections": [{"from": "each", "to": "ok", "port": "iteration"},
                                {"from": "ok", "to": "done"}]}
    engine = Engine()
    first = engine.run(workflow, trigger=["a", "b"])
    assert statuses(first)[("ok", (0,))] == statuses(first)[("ok", (1,))] == "waiting"
    second = engine.resume(first.run_id, node="ok", item=[1], input="B")
    assert second.status == "waiting"
    assert statuses(second)[("ok", (0,))] == "waiting"
    assert not_started(second, "done")
    result = engine.resume(first.run_id, node="ok", item=[0], input="A")
    assert result.status == "succeeded" and result.record("done")["output"] == ["A", "B"]


def test_resuming_a_finished_run_is_refused():
    engine = Engine()
    first = engine.run({"nodes": [{"id": "n", "type": "noop"}]})
    with pytest.raises(RunRefused, match="finished"):
        engine.resume(first.run_id)


def test_answering_a_node_that_is_not_waiting_is_refused():
    engine, first = waiting_approval()
    before = engine.status(first.run_id).to_dict()
    with pytest.raises(RunRefused, match="not waiting"):
        engine.resume(first.run_id, node="archive", input=1)
    with pytest.raises(RunRefused, match="no node 'ghost'"):
        engine.resume(first.run_id, node="ghost", input=1)
    assert engine.status(first.run_id).to_dict() == before


def test_an_unknown_run_is_refused():
    engine = Engine()
    with pytest.raises(RunRefused):
        engine.resume("no-such-run")
    with pytest.raises(RunRefused):
        engine.status("no-such-run")


def test_a_run_id_already_used_is_refused():
    engine = Engine()
    engine.run({"nodes": [{"id": "n", "type": "noop"}]}, run_id="once")
    with pytest.raises(RunRefused, match="once"):
        engine.run({"nodes": [{"id": "n", "type": "noop"}]}, run_id="once")


WHERE = {"nodes": [task("where", "thread_name")]}


def test_the_workflow_setting_chooses_the_runner_over_the_engine_default():
    result = Engine(runner="serial").run({**WHERE, "settings": {"runner": "thread"}})
    assert result.record("where")["output"].startswith("flowcore-worker")


def test_the_run_argument_chooses_the_runner_over_the_workflow_setting():
    result = Engine(runner="thread").run({**WHERE, "settings": {"runner": "thread"}}, runner="serial")
    assert result.record("where")["output"] == "MainThread"


def test_the_engine_default_runner_is_used_when_nothing_else_chooses():
    assert Engine(runner="asyncio").run(WHERE).record("where")["output"].startswith("flowcore-sync")


def test_a_run_in_sqlite_reads_back_the_same_from_a_new_engine(tmp_path):
    db = str(tmp_path / "runs.db")
    result = Engine(db=db).run(APPROVAL, trigger="draft text", run_id="kept")
    again = Engine(db=db).status("kept")
    assert again.to_dict() == result.to_dict()
    assert Engine(db=db).resume("kept", node="approve", port="publish", input="yes").status == "succeeded"


def test_a_workflow_built_in_code_gets_its_node_types_checked_before_it_runs():
    from scheduler_core.model import Node, Workflow

    from adapters.workflow_file import WorkflowError

    wf = Workflow(name="coded", nodes=(Node("a", "python", {"call": "no_such_module_here:f"}),), edges=())
    with pytest.raises(WorkflowError, match="cannot import module 'no_such_module_here'"):
        Engine(runner="serial").run(wf)
    ok = Workflow(name="coded", nodes=(Node("a", "python", {"call": "builtins:len"}),), edges=())
    assert Engine(runner="serial").run(ok, trigger=[1, 2]).record("a")["output"] == 2


def test_a_workflow_built_in_code_with_an_unknown_type_or_a_missing_field_is_refused_with_every_problem():
    from scheduler_core.model import Node, Workflow

    from adapters.workflow_file import WorkflowError

    wf = Workflow(name="coded", nodes=(Node("a", "python", {}), Node("b", "no_such_type", {})), edges=())
    with pytest.raises(WorkflowError) as caught:
        Engine(runner="serial").run(wf)
    message = str(caught.value)
    assert "node 'a': missing required field 'call'" in message and "node 'b': unknown type 'no_such_type'" in message


def test_what_running_a_workflow_compiled_is_freed_with_the_workflow(tmp_path):
    """The graph and node implementations cached per workflow must not keep the workflow alive: a
    service that loads a workflow per run would otherwise keep every one it ever ran."""
    import gc
    import weakref

    from adapters import load_workflow

    wf = load_workflow(APPROVAL)
    engine = Engine(runner="serial", db=str(tmp_path / "runs.db"))
    engine.run(wf, trigger="draft text")
    engine.resume(engine.runs()[0]["run_id"], node="approve", port="reject", input="no")
    gone = weakref.ref(wf)
    del wf
    gc.collect()
    assert gone() is None


def test_an_engine_keeps_the_final_state_of_only_its_latest_runs():
    from adapters.engine import CACHED_RUNS

    engine = Engine(runner="serial")
    ids = [engine.run(APPROVAL, trigger="draft").run_id for _ in range(CACHED_RUNS + 3)]
    assert list(engine._cache) == ids[-CACHED_RUNS:]
    first = engine.resume(ids[0], node="approve", port="publish", input="yes")  # replayed from the store
    assert first.status == "succeeded" and list(engine._cache)[-1] == ids[0] and len(engine._cache) == CACHED_RUNS
