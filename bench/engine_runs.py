"""flowcore as a contender: one ``Engine.run`` per call, refusing to time a run that did not succeed."""
from __future__ import annotations

from adapters import Engine


class RunDidNotSucceed(RuntimeError):
    pass


def run_workflow(workflow, runner: str, trigger=None, db: str | None = None, max_parallel: int = 8,
                 **engine_options):
    """A fresh ``Engine`` (so no run's records outlive its measurement) runs ``workflow`` (a dict, or a
    ``Workflow`` loaded already) once."""
    result = Engine(runner=runner, db=db, max_parallel=max_parallel, **engine_options).run(workflow, trigger=trigger)
    if result.status != "succeeded":
        name = workflow["name"] if isinstance(workflow, dict) else workflow.name  # declared, or loaded already
        raise RunDidNotSucceed(f"{name} on the {runner} runner ended {result.status}: {result.error}")
    return result
