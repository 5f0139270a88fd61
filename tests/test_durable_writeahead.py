"""Write-ahead: a step's events are committed, in one transaction, before its commands are carried out."""
import pytest

import durable_nodes
from adapters import Engine, MemoryStore, StoreError


def chain(call: str, params: dict, length: int = 3) -> dict:
    ids = [f"n{i}" for i in range(length)]
    return {"name": "chain", "nodes": [{"id": i, "type": "python", "call": call, "params": params} for i in ids],
            "connections": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]}


@pytest.mark.parametrize("runner", ["serial", "thread", "asyncio"])
def test_a_node_runs_only_after_the_step_that_started_it_is_committed(tmp_path, runner):
    db = str(tmp_path / "flowcore.db")
    definition = chain("durable_nodes:sees_its_start_logged", {"db": db})
    result = Engine(runner=runner, db=db).run(definition, run_id="w1")
    assert result.status == "succeeded"
    for node in ("n0", "n1", "n2"):
        assert result.record(node)["output"] == {"start_logged": True, "inputs_logged": True}, node


def test_each_step_is_one_batch_holding_every_event_it_consumed(tmp_path):
    db = str(tmp_path / "flowcore.db")
    steps = []
    definition = durable_nodes.fan_workflow(str(tmp_path / "marks.txt"), sleep=0.01)
    engine = Engine(runner="thread", db=db)
    engine.run(definition, trigger=[1, 2, 3, 4], run_id="g1", observer=lambda events, commands, state:
               steps.append(list(events)))
    _, batches, _ = engine.store.load("g1")
    assert [list(b) for b in batches] == steps


class FailingStore(MemoryStore):
    """A store whose log write fails once, at one step."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.fail_at = fail_at

    def append(self, run_id, index, events, fingerprint, summary, done=(), lease=None):
        if index == self.fail_at:
            self.fail_at = None
            raise StoreError("disk full")
        super().append(run_id, index, events, fingerprint, summary, done, lease)


def test_a_step_whose_log_write_fails_carries_out_none_of_its_commands(tmp_path):
    marker = str(tmp_path / "marks.txt")
    store = FailingStore(fail_at=1)  # step 1 logs n0's success and would start n1
    engine = Engine(runner="serial", store=store)
    with pytest.raises(StoreError, match="disk full"):
        engine.run(chain("durable_nodes:passed_on", {"marker": marker}), run_id="f1")
    assert durable_nodes.marks(marker) == ["n0"]
    assert store.info("f1").status == "running"
    assert store.leases == {}

    result = engine.resume("f1")  # at-least-once: n0's success was never logged, so it runs again
    assert result.status == "succeeded"
    assert durable_nodes.marks(marker) == ["n0", "n0", "n1", "n2"]
