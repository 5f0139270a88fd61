"""The simulated runner: virtual time from the run's first event on, seeded and repeatable."""
import json
import time

from adapters import Engine
from adapters.store import encode_event


def delays(n):
    return {"nodes": [{"id": f"d{i}", "type": "delay", "seconds": 5 + i % 3} for i in range(n)]
            + [{"id": "end", "type": "merge"}],
            "connections": [{"from": f"d{i}", "to": "end"} for i in range(n)]}


def test_a_delay_finishes_on_the_virtual_clock_without_lingering():
    result = Engine(runner="simulated").run(delays(3))
    out = result.to_dict()
    assert result.status == "succeeded"
    assert out["started_at"] == 0.0 and out["finished_at"] >= 7.0


def event_log(seed):
    engine = Engine(runner="simulated", runner_options={"seed": seed, "fail_rate": 0.2, "duplicate_rate": 0.2})
    wf = {"settings": {"on_error": "continue"},
          "nodes": [{"id": "each", "type": "foreach"}, {"id": "x", "type": "noop", "retry": {"max_attempts": 2}},
                    {"id": "all", "type": "merge"}],
          "connections": [{"from": "each", "to": "x", "port": "iteration"}, {"from": "x", "to": "all"}]}
    result = engine.run(wf, trigger=list(range(30)), run_id="r")
    _, batches, _ = engine.store.load("r")
    return result, json.dumps([[encode_event(e) for e in b] for b in batches])


def test_the_same_seed_gives_the_same_event_log_byte_for_byte():
    (_, first), (_, again), (_, other) = event_log(7), event_log(7), event_log(8)
    assert first == again
    assert first != other


ASK = {"nodes": [{"id": "first", "type": "delay", "seconds": 2},
                 {"id": "ask", "type": "hil", "choices": ["yes", "no"], "timeout": 3600},
                 {"id": "after", "type": "noop"}],
       "connections": [{"from": "first", "to": "ask"}, {"from": "ask", "to": "after", "port": "yes"}]}


def test_a_resumed_simulated_run_goes_on_from_its_own_time_never_back_before_it():
    engine = Engine(runner="simulated")
    parked = engine.run(ASK, run_id="r")
    assert parked.status == "waiting"
    answered = engine.resume("r", node="ask", port="yes", input="ok").to_dict()
    assert answered["status"] == "succeeded"
    for record in answered["nodes"]:
        assert record["finished_at"] >= record["started_at"] >= answered["started_at"], record


def test_a_simulated_run_in_a_stored_database_keeps_unix_times_that_a_worker_can_wait_for(tmp_path):
    from adapters import Worker

    before = time.time()
    engine = Engine(runner="simulated", db=str(tmp_path / "sim.db"))
    assert engine.run(ASK, run_id="r").status == "waiting"
    stored = engine.status("r").to_dict()
    assert stored["started_at"] >= before  # Unix seconds, as status, runs and workers read them
    assert Worker(engine).run_once() == 0  # the hour-long wait is not due: nothing to drive (it drove forever)
    assert engine.resume("r", runner="serial").status == "waiting"  # and another runner does not time it out
