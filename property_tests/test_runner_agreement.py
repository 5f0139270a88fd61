"""The serial, thread, asyncio and simulated runners agree on the final records of random workflows.

Pure node functions (``pure_nodes``), so a record depends only on the workflow and the trigger.
Under ``on_error: continue`` the records cannot depend on completion order (the run's error names
the first failure in time, so only its being one of the failed nodes is compared); under fail-fast,
which siblings finished before the first failure legitimately can, so that mode is left to the
step-level properties.
"""
import attrs
from hypothesis import given

from adapters import Engine

from .workflows import RUNNER_VOCABULARY, workflow_definitions

VOCABULARY = attrs.evolve(RUNNER_VOCABULARY, on_error=("continue",))


def records(runner: str, definition: dict) -> tuple:
    out = Engine(runner=runner).run(definition, trigger=7).to_dict()
    rows = sorted((r["node"], r["item"] or [], r["status"], r["attempts"], r["ports"], r["error"])
                  for r in out["nodes"])
    if out["error"] is not None:  # the first failure in time, which may differ: it must be one of them
        assert out["error"]["node"] in {r["node"] for r in out["nodes"] if r["status"] == "failed"}, runner
    return out["status"], rows


@given(workflow_definitions(VOCABULARY))
def test_serial_thread_asyncio_and_simulated_runners_agree_on_the_final_records(definition):
    reference = records("serial", definition)
    for runner in ("thread", "asyncio", "simulated"):
        assert records(runner, definition) == reference, runner
