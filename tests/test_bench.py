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


def test_the_deep_join_dag_has_50_layers_each_node_joining_2_or_3_of_the_layer_above():
    from bench.graphs import deep_join_dag

    dag = deep_join_dag(1_000)
    levels = dag.levels()
    assert len(dag) == 1_000 and [len(level) for level in levels] == [20] * 50
    depth = {v: d for d, level in enumerate(levels) for v in level}
    for v, us in dag.preds.items():
        if depth[v]:
            assert 2 <= len(us) <= 3 and {depth[u] for u in us} == {depth[v] - 1}


def test_the_deep_join_contenders_run_every_node_as_a_noop_on_the_serial_runner():
    import gc

    from bench import scaling
    from bench.graphs import deep_join_dag, noop_node

    runs = scaling.deep_contenders(500)
    assert set(runs) == {"serial", "serial, collector off"}
    for name, run in runs.items():
        nodes = run().to_dict()["nodes"]
        assert [r["status"] for r in nodes] == ["succeeded"] * 500
        assert gc.isenabled()  # the collector-off contender turns it back on
    assert {n.type for n in load_workflow(deep_join_dag(500).workflow(node=noop_node)).nodes} == {"noop"}


def most_in_flight_per_outer_item(trace, node):
    """The most instances of ``node`` in flight at once under one outer item, over ``trace``."""
    running, most = {}, 0
    for what, name, item in trace:
        if name == node:
            running[item[0]] = running.get(item[0], 0) + (1 if what == "start" else -1)
            most = max(most, running[item[0]])
    return most


def test_nested_fan_outs_driven_through_step_complete_every_instance_and_keep_the_inner_cap():
    from bench import scaling
    from bench.step_runs import drive_step

    outer, inner = 20, scaling.INNER_ITEMS
    graphs, trace, steps = scaling.nested_graphs(), {}, {}
    for name, g in graphs.items():
        trace[name] = []
        steps[name] = drive_step(g, scaling.nested_trigger(outer), trace=trace[name])
        done = [(node, item) for what, node, item in trace[name] if what == "done"]
        assert sorted(done) == sorted([("outer", ())] + [("inner", (i,)) for i in range(outer)]
                                      + [("each", (i, j)) for i in range(outer) for j in range(inner)])
    assert steps["capped"] == steps["uncapped"] == 2 + outer + outer * inner  # the start, then one completion a step
    assert most_in_flight_per_outer_item(trace["capped"], "each") == scaling.INNER_CAP
    assert most_in_flight_per_outer_item(trace["uncapped"], "each") == inner  # uncapped, an outer item's items run at once
    recorded = {}
    scaling.nested_contenders(outer, recorded)["capped"]()
    assert recorded == {("capped", outer): steps["capped"]}


def test_driving_step_refuses_a_node_type_it_would_have_to_fake():
    from bench.step_runs import drive_step
    from scheduler_core import compile_workflow

    python = compile_workflow(load_workflow({"name": "p", "nodes": [{"id": "x", "type": "python", "call": "builtins:len"}]}))
    with pytest.raises(ValueError, match="not 'python'"):
        drive_step(python)
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


def test_the_dask_section_runs_every_node_of_every_contender_as_one_task_on_two_single_threaded_workers():
    """Every node of the overhead DAG is one task on the cluster's workers, for distributed and for flowcore
    alike, and flowcore's runs succeed with every node."""
    pytest.importorskip("distributed")
    import os

    from distributed import Client

    from bench import dask as section

    def executed(client) -> int:
        return sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())

    with section.two_worker_cluster() as address, Client(address, set_as_default=False) as client:
        pids = client.run(os.getpid)
        assert sorted(client.nthreads().values()) == [1, 1]
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        contenders = section.overhead_contenders(address, client, 200)
        assert set(contenders) == {"distributed client.get", "distributed submit", "flowcore dask",
                                   "flowcore dask, cap 8"}
        for name, contender in contenders.items():
            before = executed(client)
            result = contender()
            assert executed(client) - before == 200, name
            if name.startswith("flowcore"):
                assert [r["status"] for r in result.to_dict()["nodes"]] == ["succeeded"] * 200


def test_the_loop_section_times_a_loop_and_a_chain_that_run_the_node_as_often():
    from bench import loop

    runs = loop.contenders(20)
    assert set(runs) == {f"{kind}, {runner}" for kind in ("loop", "chain") for runner in loop.RUNNERS}
    for name, run in runs.items():
        nodes = run().to_dict()["nodes"]
        if name.startswith("loop"):
            steps = [r for r in nodes if r["node"] == "count.step"]
            assert [r["item"] for r in steps] == [[i] for i in range(20)] and steps[-1]["output"] == 20
            assert nodes[0]["node"] == "count" and nodes[0]["output"] == 20
        else:
            assert len(nodes) == 20 and nodes[-1]["output"] == 20


def test_the_subworkflow_chain_nests_one_child_run_per_level(tmp_path):
    from bench import subworkflow

    leaf, top = subworkflow.write_chain(str(tmp_path), levels=4)
    engine = Engine()
    result = engine.run(top, trigger={})
    assert result.status == "succeeded"
    runs = engine.runs()
    assert [r["workflow"] for r in runs] == ["level_4", "level_3", "level_2", "level_1", "level_0"]
    assert runs[-1]["run_id"] == result.run_id + "/down" * 4  # each a child of the one before
    assert engine.status(runs[-1]["run_id"]).record("work")["status"] == "succeeded"
    assert set(subworkflow.contenders(str(tmp_path))) == {(store, kind) for store in subworkflow.STORES
                                                         for kind in ("leaf", "loaded", "chain")}


def test_the_joins_section_times_every_loser_of_a_cancelling_join_and_of_its_fail_fast_baseline():
    from adapters import Engine
    from bench import joins

    engine = Engine(runner="thread", max_parallel=16, grace=joins.LOSERS_WAIT)
    ended, told = joins.losers_end_after(joins.race_workflow(6), "succeeded", 6, engine)
    assert 0 < told <= ended < joins.LOSERS_WAIT / 2  # the losers stopped on their cancel, not at their minute
    assert len(joins._times["losers"]) == 5 and len(joins._times["told"]) == 5
    ended, told = joins.losers_end_after(joins.fail_fast_workflow(6), "failed", 6, engine)
    assert 0 < told <= ended < joins.LOSERS_WAIT / 2
    on_asyncio = Engine(runner="asyncio", max_parallel=16, grace=joins.LOSERS_WAIT)  # coroutine losers, cancelled as tasks
    ended, told = joins.losers_end_after(joins.race_workflow(6, "bench.joins:branch_async"), "succeeded", 6, on_asyncio)
    assert 0 < told <= ended < joins.LOSERS_WAIT / 2


def test_the_joins_section_refuses_a_run_whose_losers_were_not_all_cancelled():
    from adapters import Engine
    from bench import joins
    from bench.engine_runs import RunDidNotSucceed

    no_rest = joins.race_workflow(4)
    no_rest["nodes"][-1]["cancel_rest"] = False
    no_rest["nodes"][0]["params"]["win"] = True  # every loser would wait its minute: make them all winners
    for n in no_rest["nodes"][:-1]:
        n["params"]["win"] = True
    with pytest.raises(RunDidNotSucceed, match="0 cancelled"):
        joins.losers_end_after(no_rest, "succeeded", 4, Engine(runner="thread", max_parallel=8))
