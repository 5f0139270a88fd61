"""Crash recovery with real processes: SIGKILL a ``flowcore run`` mid-run, then ``flowcore resume`` it.

Node functions append their instance name to a marker file as they start, so the tests see what
ran, and what ran again. An instance whose completion was committed before the kill must not run
again; one that was in flight may (at-least-once). ``FLOWCORE_CRASH_POINTS=N`` kills at N random
points instead of the default handful; the seed is printed so a failure can be replayed.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import durable_nodes
from adapters import Engine
from durable_nodes import child_env, comparable, finished_before, flowcore, kill_at_every_step

TRIGGER = "[1, 2, 3, 4, 5, 6]"


def start_run(tmp_path, run_id: str, runner: str) -> subprocess.Popen:
    path = os.path.join(tmp_path, "wf.yaml")
    return subprocess.Popen(flowcore("run", path, "--run-id", run_id, "--trigger", TRIGGER, "--runner", runner),
                            cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_at(child: subprocess.Popen, db: str, run_id: str, batches: int) -> int:
    """SIGKILL ``child`` once ``batches`` steps of ``run_id`` are committed; how many were, at the kill."""
    deadline = time.monotonic() + 30
    while durable_nodes.batch_count(db, run_id) < batches:
        assert child.poll() is None, f"the run ended before step {batches}: {child.stderr.read().decode()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    return durable_nodes.batch_count(db, run_id)


def resume(tmp_path, run_id: str) -> dict:
    done = subprocess.run(flowcore("resume", run_id, "--json"), cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stored_status(tmp_path, run_id: str) -> str:
    done = subprocess.run(flowcore("status", run_id, "--json"), cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["status"]


@pytest.fixture
def workspace(tmp_path):
    marker = str(tmp_path / "marks.txt")
    durable_nodes.write_workflow(tmp_path, durable_nodes.fan_workflow(marker, sleep=0.1))
    return tmp_path, marker, str(tmp_path / "flowcore.db")


def uninterrupted(tmp_path, runner: str) -> tuple[dict, int]:
    done = subprocess.run(flowcore("run", "wf.yaml", "--run-id", "whole", "--trigger", TRIGGER, "--runner", runner,
                                   "--json"), cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), durable_nodes.batch_count(str(tmp_path / "flowcore.db"), "whole")


def test_a_killed_run_resumes_to_success_without_rerunning_finished_instances(workspace):
    tmp_path, marker, db = workspace
    child = start_run(tmp_path, "r1", "thread")
    kill_at(child, db, "r1", 5)
    finished = finished_before(db, "r1")
    ran_before = len(durable_nodes.marks(marker))
    assert "begin" in finished

    result = resume(tmp_path, "r1")

    assert result["status"] == "succeeded"
    ran_after = durable_nodes.marks(marker)[ran_before:]
    assert not finished & set(ran_after), f"finished before the kill, ran again: {finished & set(ran_after)}"
    everything = {"begin", "join", "side"} | {f"work[{i}]" for i in range(6)}
    assert set(durable_nodes.marks(marker)) == everything
    assert len(ran_after) == len(set(ran_after)), "an instance ran twice after the resume"
    keys = dict(zip(durable_nodes.marks(marker), durable_nodes.marks(marker, field=2)))
    assert sorted(keys.items()) == sorted({(n, f"r1/{n}") for n in durable_nodes.marks(marker)})
    assert result["nodes"][-1]["output"] == [210, [1, 2, 3, 4, 5, 6]]


def test_status_of_a_killed_run_shows_it_running(workspace):
    tmp_path, _, db = workspace
    kill_at(start_run(tmp_path, "r1", "serial"), db, "r1", 3)
    assert stored_status(tmp_path, "r1") == "running"


@pytest.mark.parametrize("runner", ["serial", "thread"])
def test_a_run_killed_at_any_step_recovers_to_the_records_of_an_uninterrupted_run(workspace, runner):
    tmp_path, marker, db = workspace
    reference, steps = uninterrupted(tmp_path, runner)
    seed = int(os.environ.get("FLOWCORE_CRASH_SEED", time.time_ns() % 10_000))
    points = int(os.environ.get("FLOWCORE_CRASH_POINTS", 3))
    last = steps - 1 if runner == "serial" else steps // 2  # the thread runner's step count varies
    kill_points = sorted(random.Random(seed).sample(range(1, last), min(points, last - 1)))
    print(f"runner={runner} seed={seed} steps={steps} kill points={kill_points}", file=sys.stderr)
    for n, point in enumerate(kill_points):
        run_id = f"k{n}"
        committed = kill_at(start_run(tmp_path, run_id, runner), db, run_id, point)
        finished = finished_before(db, run_id)
        before = len(durable_nodes.marks(marker))
        if stored_status(tmp_path, run_id) == "succeeded":  # the thread runner may group steps and end sooner
            print(f"step {point}: the run had ended before the kill", file=sys.stderr)
            continue
        result = resume(tmp_path, run_id)
        assert comparable(result) == comparable(reference), f"killed after {committed} steps (seed {seed})"
        again = finished & set(durable_nodes.marks(marker)[before:])
        assert not again, f"killed after {committed} steps (seed {seed}): {again} ran again"


@pytest.mark.parametrize("runner", ["serial", "thread"])
def test_a_run_killed_at_every_step_of_a_reference_run_recovers_to_its_records(tmp_path, runner):
    """For every step k of a reference run, a run killed once k steps are committed (right after the
    commit, and just before the next one) is resumed to the reference run's records, and no instance
    whose completion was logged before the kill runs again."""
    marker = str(tmp_path / "marks.txt")
    definition = durable_nodes.fan_workflow(marker, sleep=0.01)
    definition["nodes"][4]["seconds"] = 0.05  # the side branch's delay
    path = durable_nodes.write_workflow(tmp_path, definition)
    db = str(tmp_path / "flowcore.db")
    trigger = [1, 2, 3]
    reference = Engine(runner=runner, db=db).run(path, trigger=trigger, run_id="whole").to_dict()
    assert reference["status"] == "succeeded"
    steps = durable_nodes.batch_count(db, "whole")
    resumed = kill_at_every_step(tmp_path, path, db, trigger, runner, marker, reference)
    assert resumed >= steps, f"only {resumed} of {2 * steps} kill points left the run to resume"
