"""The simulated runner: virtual time from the run's first event on, seeded and repeatable."""
import json

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
