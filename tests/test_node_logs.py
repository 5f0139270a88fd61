"""A node's ctx.logger lines are kept with its record, across attempts and across a store reload."""
from adapters import Engine


def chatty(input, ctx):
    ctx.logger.info("attempt %d of %s", ctx.attempt, ctx.node)
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    return input


WF = {"nodes": [{"id": "talk", "type": "python", "call": "test_node_logs:chatty", "retry": {"max_attempts": 2}}],
      "connections": []}


def test_log_lines_of_every_attempt_are_kept_with_the_record(tmp_path):
    engine = Engine(runner="thread", db=str(tmp_path / "runs.db"))
    result = engine.run(WF, trigger=1, run_id="r")
    assert result.status == "succeeded"
    record = result.state.records[(0, ())]
    assert record.logs == ("info: attempt 1 of talk", "info: attempt 2 of talk")
    reloaded = Engine(db=str(tmp_path / "runs.db")).status("r")
    assert reloaded.state.records[(0, ())].logs == record.logs
