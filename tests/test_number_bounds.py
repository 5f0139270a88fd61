"""Every number a workflow gives is bounded where it is read: finite, positive where it must be, at
most a year of seconds (``MAX_SECONDS``) or ``MAX_ATTEMPTS`` attempts. Out of bounds, ``validate``
and ``run`` exit 2 with one message naming the field, before anything runs (issue 15: these
validated, then broke the run with OverflowError, or waited forever on a NaN timer).

The numbers refused are cases of the bad-input corpus (``test_bad_inputs_corpus.py``, ``bounds-*``);
here, the largest accepted ones, and the retry wait's own bound."""
import json
import subprocess
import sys
from pathlib import Path

from scheduler_core import MAX_SECONDS, Retry

TESTS = Path(__file__).resolve().parent


def _validate(tmp_path, node: dict):
    wf = {"name": "bounds", "nodes": [{"id": "a", "type": "noop"}, node], "connections": [{"from": "a", "to": node["id"]}]}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))  # json.dumps writes NaN and Infinity, which json.loads reads back
    return subprocess.run([sys.executable, "-m", "adapters.cli", "validate", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_the_largest_accepted_numbers_run(tmp_path):
    ok = _validate(tmp_path, {"id": "d", "type": "delay", "seconds": MAX_SECONDS})
    assert ok.returncode == 0, ok.stderr
    ok = _validate(tmp_path, {"id": "r", "type": "noop", "timeout": MAX_SECONDS,  # (a delay has no retry)
                              "retry": {"max_attempts": 1000, "delay": MAX_SECONDS, "backoff": 1000}})
    assert ok.returncode == 0, ok.stderr


def test_a_retry_wait_never_overflows_and_never_exceeds_the_maximum():
    retry = Retry(max_attempts=1000, delay=MAX_SECONDS, backoff=1000.0)
    assert retry.wait_after(999) == MAX_SECONDS
    assert Retry(max_attempts=3, delay=1e-300, backoff=1e300).wait_after(3) == MAX_SECONDS
