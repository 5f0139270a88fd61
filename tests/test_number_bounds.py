"""Every number a workflow gives is bounded where it is read: finite, positive where it must be, at
most a year of seconds (``MAX_SECONDS``) or ``MAX_ATTEMPTS`` attempts. Out of bounds, ``validate``
and ``run`` exit 2 with one message naming the field, before anything runs (issue 15: these
validated, then broke the run with OverflowError, or waited forever on a NaN timer)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler_core import MAX_SECONDS, Retry

TESTS = Path(__file__).resolve().parent


def _validate(tmp_path, node: dict):
    wf = {"name": "bounds", "nodes": [{"id": "a", "type": "noop"}, node], "connections": [{"from": "a", "to": node["id"]}]}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))  # json.dumps writes NaN and Infinity, which json.loads reads back
    return subprocess.run([sys.executable, "-m", "adapters.cli", "validate", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


NAN, INF = float("nan"), float("inf")
CASES = [
    ({"id": "t", "type": "noop", "timeout": INF}, "timeout"),
    ({"id": "t", "type": "noop", "timeout": 1e10}, "timeout"),
    ({"id": "t", "type": "noop", "timeout": NAN}, "timeout"),
    ({"id": "d", "type": "delay", "seconds": 1e10}, "seconds"),
    ({"id": "d", "type": "delay", "seconds": NAN}, "seconds"),
    ({"id": "d", "type": "delay", "seconds": INF}, "seconds"),
    ({"id": "w", "type": "wait", "timeout": NAN}, "timeout"),
    ({"id": "h", "type": "hil", "timeout": INF}, "timeout"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": INF}}, "retry"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": NAN}}, "retry"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": 2.5}}, "retry"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": 10**9}}, "retry"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "delay": 1e-300, "backoff": 1e300}}, "retry"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "delay": NAN}}, "retry"),
    ({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "delay": 1e10}}, "retry"),
    ({"id": "e", "type": "noop", "estimate": INF}, "estimate"),
    ({"id": "e", "type": "noop", "estimate": NAN}, "estimate"),
]


@pytest.mark.parametrize("node, field", CASES, ids=[f"{n['type']}-{f}-{i}" for i, (n, f) in enumerate(CASES)])
def test_an_out_of_bounds_number_is_refused_at_validation_with_one_message_naming_the_field(tmp_path, node, field):
    result = _validate(tmp_path, node)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.strip().startswith("- ")]
    assert len(problems) == 1 and field in problems[0] and f"node {node['id']!r}" in problems[0], result.stderr


def test_the_largest_accepted_numbers_run(tmp_path):
    ok = _validate(tmp_path, {"id": "r", "type": "delay", "seconds": MAX_SECONDS,
                              "retry": {"max_attempts": 3, "delay": MAX_SECONDS, "backoff": 1000}})
    assert ok.returncode == 0, ok.stderr


def test_a_retry_wait_never_overflows_and_never_exceeds_the_maximum():
    retry = Retry(max_attempts=1000, delay=MAX_SECONDS, backoff=1000.0)
    assert retry.wait_after(999) == MAX_SECONDS
    assert Retry(max_attempts=3, delay=1e-300, backoff=1e300).wait_after(3) == MAX_SECONDS
