"""The serial, thread, asyncio and simulated runners agree on the final records of random workflows.

Pure node functions (``pure_nodes``), so a record depends only on the workflow and the trigger.
Under ``on_error: continue`` the outcome cannot depend on completion order; under fail-fast,
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
    return out["status"], out["error"], rows


@given(workflow_definitions(VOCABULARY))
def test_serial_thread_asyncio_and_simulated_runners_agree_on_the_final_records(definition):
    reference = records("serial", definition)
    for runner in ("thread", "asyncio", "simulated"):
        assert records(runner, definition) == reference, runner
