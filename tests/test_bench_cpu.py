"""The cpu section does what its report says (``bench/cpu.py``, small sizes).

The thread runner is the baseline and runs every item in this process; the process runner runs them
in other processes, more than one at a time, and the dask runner in the two worker processes of its
cluster; every run is checked to have run each item once; the
calibrated work takes about the time asked for; the report has a row per contender, a speed-up
target for each contender but the baseline, and what the machine gave CPU-bound processes meanwhile.
"""
import os

import pytest

from bench import cpu
from bench.__main__ import Config
from bench.engine_runs import RunDidNotSucceed
from bench.measure import timed


def test_the_calibrated_work_takes_about_the_time_asked_for():
    rounds = cpu.calibrated_rounds(0.1)
    assert 0.03 < timed(lambda: cpu.crunch(rounds=rounds)) < 0.5  # generous: the machine is shared


def test_the_baseline_runs_every_item_here_and_the_process_runner_and_the_dask_cluster_in_worker_processes():
    contenders = [cpu.BASELINE, *cpu.CONTENDERS]
    assert cpu.BASELINE.name == "thread runner" and "process runner" in [c.name for c in cpu.CONTENDERS]
    times, seen = cpu.measured(contenders, cpu.workflow(50_000), items=4, repeats=3)
    assert set(times) == set(seen) == {c.name for c in contenders}
    assert all(len(runs) == 3 for runs in seen.values())  # each timed run was checked
    assert all(work.pids == {os.getpid()} for work in seen["thread runner"])
    for work in seen["process runner"]:
        assert os.getpid() not in work.pids and 2 <= len(work.pids) <= cpu.WORKERS
        assert work.cpu > 0
    for work in seen["dask runner, two-worker cluster"]:
        assert os.getpid() not in work.pids and len(work.pids) == 2  # each of the cluster's two workers
        assert work.cpu > 0


class _Result:
    def __init__(self, output):
        self.output = output

    def record(self, node):
        return {"output": self.output}


def test_a_run_that_did_not_run_each_item_once_is_refused():
    report = {"cpu": 0.1, "pid": 1}
    assert cpu.work_of(_Result([{"item": i, **report} for i in range(3)]), 3).cpu == pytest.approx(0.3)
    with pytest.raises(RunDidNotSucceed, match="got items"):
        cpu.work_of(_Result([{"item": i, **report} for i in (0, 2)]), 3)


def test_the_report_has_a_row_per_contender_and_a_speed_up_target_for_each_but_the_baseline(monkeypatch):
    monkeypatch.setattr(cpu, "QUICK_ITEM_SECONDS", 0.02)
    monkeypatch.setattr(cpu, "QUICK_SPIN_COUNT", 400_000)
    section = cpu.run(Config(quick=True, repeats=3))
    (_, header, rows), = section.tables
    assert [row[0] for row in rows] == [c.name for c in [cpu.BASELINE, *cpu.CONTENDERS]]
    assert rows[0][header.index("speed-up")] == "1.00"
    assert [check.target.split(":")[0] for check in section.checks] == [c.name for c in cpu.CONTENDERS]
    assert all(check.limit == cpu.SPEED_UP and check.op == ">=" for check in section.checks)
    assert "(400,000; CPU spin)" in section.notes[0]  # the machine's ceiling, measured in the same rounds
