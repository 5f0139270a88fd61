"""The benchmark's contenders do what its report says they do (on graphs small enough to be quick).

A benchmark that times something other than what it names is a defect: each baseline runs every
node once, after its predecessors; level-by-level really waits for each level; flowcore's runs
succeed with every node; the graphs' critical paths are what they claim.
"""
import threading
import time

import pytest

from adapters import Engine
from adapters.workflow_file import load_workflow
from bench import overhead
from bench.baselines import bare_loop, dask_get, level_by_level
from bench.graphs import layered_dag, random_io_dag, unequal_branches
from bench.measure import interleaved


class Calls:
    """Notes which node ran, in order (called from many threads)."""

    def __init__(self):
        self.order, self.lock = [], threading.Lock()

    def keyed(self, v):
        with self.lock:
            self.order.append(v)


def assert_topological_once(dag, order):
    assert sorted(order) == sorted(dag.preds)  # every node, once
    seen = {v: i for i, v in enumerate(order)}
    assert all(seen[u] < seen[v] for v, us in dag.preds.items() for u in us)


def test_the_bare_loop_runs_every_node_once_after_its_predecessors():
    dag, calls = layered_dag(700), Calls()
    bare_loop(dag, calls.keyed)
    assert_topological_once(dag, calls.order)


def test_dask_runs_every_node_once_after_its_predecessors():
    import dask.threaded

    dag, calls = layered_dag(700), Calls()
    task = {v: (lambda v: lambda *predecessors: calls.keyed(v))(v) for v in dag.preds}  # one function per key
    dask.threaded.get({v: (task[v], *us) for v, us in dag.preds.items()}, dag.sinks(), num_workers=8)
    assert_topological_once(dag, calls.order)
    assert dag.dask_graph(len)["n150"][1:] == tuple(dag.preds["n150"])  # the benchmark's graph: the same edges
    dask_get(dag, lambda *inputs: None)


def test_level_by_level_waits_for_each_whole_level():
    dag = random_io_dag(n=24, width=4, low=0.001, high=0.005)
    started, levels = {}, dag.levels()

    def call(v):
        started[v] = time.perf_counter()
        time.sleep(dag.seconds[v])

    finished = level_by_level(levels, call, workers=8)
    for above, below in zip(levels, levels[1:]):
        assert max(finished[v] for v in above) <= min(started[v] for v in below)


def test_flowcore_contenders_run_every_node_of_a_loaded_workflow():
    dag = layered_dag(500)
    runs = overhead.contenders(dag)
    assert set(runs) == {"bare loop", "dask.threaded.get", "load", "serial", "thread"}
    assert len(runs["load"]().nodes) == 500
    for runner in ("serial", "thread"):
        result = runs[runner]()
        assert [r["status"] for r in result.to_dict()["nodes"]] == ["succeeded"] * 500


def test_a_run_that_does_not_succeed_is_never_timed():
    from bench.engine_runs import RunDidNotSucceed, run_workflow

    broken = {"name": "broken", "nodes": [{"id": "x", "type": "python", "call": "builtins:int"}]}
    for workflow in (broken, load_workflow(broken)):  # declared or loaded
        with pytest.raises(RunDidNotSucceed, match="broken on the serial runner ended failed"):
            run_workflow(workflow, "serial", trigger="not a number")


def test_the_unequal_branches_critical_path_is_one_slow_step_per_chain():
    dag = unequal_branches(short=0.02, long=0.1, branches=4)
    # root, then 5 steps of which one is slow, then the join
    assert dag.critical_path() == pytest.approx(0.02 + 4 * 0.02 + 0.1 + 0.02)
    assert Engine(runner="serial").run(dag.workflow()).status == "succeeded"


def test_interleaved_timing_alternates_contenders_and_takes_the_median(monkeypatch):
    import bench.measure as measure

    clock, ran = [0.0], []

    def takes(name, seconds):
        durations = iter(seconds)

        def fn():
            ran.append(name)
            clock[0] += next(durations)
        return fn

    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    got = interleaved({"a": takes("a", [3, 1, 2]), "b": takes("b", [10, 30, 20])}, 3)
    assert got == {"a": 2, "b": 20}
    assert ran == ["a", "b"] * 3


def test_the_values_section_times_copies_against_runs_that_really_share():
    from bench import values
    from bench.graphs import chain_workflow

    workflow = {**chain_workflow(2), "nodes": [{"id": "n0", "type": "python", "call": "mutating_nodes:fresh_list"},
                                               {"id": "n1", "type": "python", "call": "mutating_nodes:append_to"}]}
    copied = Engine(runner="serial").run(workflow)
    with values.values_shared():
        kept = Engine(runner="serial").run(workflow)
    assert copied.record("n0")["output"] == ["x", {"nested": ["y"]}]
    assert kept.record("n0")["output"] == ["x", {"nested": ["y", "appended"]}, "appended"]
    assert set(values.contenders({"chain": 3, "dag": 10})) == {
        (w, r, m) for w in ("chain", "dag") for r in ("serial", "thread") for m in ("copied", "shared")}
