"""Snapshots are a cache of a replay: used when they match this code's format and state shape, ignored otherwise."""
import sqlite3

import pytest

from adapters import Engine, recovery, snapshots
from adapters.report import run_dict

WF = {"nodes": [{"id": "each", "type": "foreach"}, {"id": "x", "type": "noop"},
                {"id": "ask", "type": "hil", "choices": ["go", "stop"]}, {"id": "all", "type": "merge"}],
      "connections": [{"from": "each", "to": "x", "port": "iteration"}, {"from": "x", "to": "all"},
                      {"from": "ask", "to": "all", "port": "go"}]}


@pytest.fixture
def snapshot_every_drive(monkeypatch):
    monkeypatch.setattr(recovery, "SNAPSHOT_EVERY", 1)


def records(state):
    return [{k: v for k, v in r.items() if k not in ("started_at", "finished_at")}
            for r in run_dict("r", state)["nodes"]]


def snapshot_row(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT idx, version FROM snapshots WHERE run_id = 'r'").fetchone()


def test_a_waiting_run_leaves_a_snapshot_that_loads_to_the_replayed_state(tmp_path, snapshot_every_drive):
    db = str(tmp_path / "runs.db")
    assert Engine(runner="serial", db=db).run(WF, trigger=[1, 2, 3], run_id="r").status == "waiting"
    index, version = snapshot_row(db)
    assert index > 0 and version == snapshots.version()
    _, _, from_snapshot = Engine(db=db).load("r")
    _, _, replayed = Engine(db=db).load("r", use_snapshot=False)
    assert records(from_snapshot) == records(replayed)


def test_a_resume_from_a_snapshot_replays_only_the_tail_and_finishes(tmp_path, snapshot_every_drive):
    db = str(tmp_path / "runs.db")
    Engine(runner="serial", db=db).run(WF, trigger=[1, 2, 3], run_id="r")
    result = Engine(runner="serial", db=db).resume("r", node="ask", port="go", input="ok")
    assert result.status == "succeeded"
    assert result.record("all")["output"] == [[1, 2, 3], "ok"]
    _, _, replayed = Engine(db=db).load("r", use_snapshot=False)
    assert records(Engine(db=db).load("r")[2]) == records(replayed)


@pytest.mark.parametrize("damage", ["UPDATE snapshots SET version = 'another core'",
                                    "UPDATE snapshots SET data = x'00ff'",
                                    "UPDATE snapshots SET data = substr(data, 1, length(data) / 2)"])
def test_a_snapshot_of_another_shape_or_unreadable_is_ignored(tmp_path, snapshot_every_drive, damage):
    db = str(tmp_path / "runs.db")
    Engine(runner="serial", db=db).run(WF, trigger=[1, 2], run_id="r")
    with sqlite3.connect(db) as conn:
        conn.execute(damage)
    result = Engine(runner="serial", db=db).resume("r", node="ask", port="stop", input=None)
    assert result.status == "succeeded"
    assert result.record("all")["output"] == [[1, 2]]


def test_short_runs_leave_no_snapshot(tmp_path):
    db = str(tmp_path / "runs.db")
    Engine(runner="serial", db=db).run(WF, trigger=[1], run_id="r")
    assert snapshot_row(db) is None


CHAIN = {"nodes": [{"id": f"n{i}", "type": "noop"} for i in range(40)],
         "connections": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(39)]}


class Crash(Exception):
    pass


def crash_at(step_count):
    steps = []

    def observer(events, commands, state):
        steps.append(1)
        if len(steps) == step_count:
            raise Crash  # the drive stops here, after logging this step, as if the process died

    return observer


def test_a_long_drive_leaves_snapshots_as_it_goes_so_a_crash_replays_only_the_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(recovery, "SNAPSHOT_EVERY", 5)
    monkeypatch.setattr(recovery, "SNAPSHOT_DURING", 5)
    db = str(tmp_path / "runs.db")
    with pytest.raises(Crash):
        Engine(runner="serial", db=db).run(CHAIN, run_id="r", observer=crash_at(33))
    index, _ = snapshot_row(db)
    # every 5 events once the log doubled: after steps 5, 10, 20; step 40 never came
    assert index == 20
    _, _, from_snapshot = Engine(db=db).load("r")
    _, _, replayed = Engine(db=db).load("r", use_snapshot=False)
    assert records(from_snapshot) == records(replayed)
    result = Engine(runner="serial", db=db).resume("r")
    assert result.status == "succeeded" and snapshot_row(db)[0] > 33  # the end of a drive leaves one too


def test_a_snapshot_the_store_fails_to_write_does_not_fail_the_run(tmp_path, monkeypatch, snapshot_every_drive):
    from adapters.store import SqliteStore, StoreError

    def full_disk(self, run_id, snapshot):
        raise StoreError("disk full")

    monkeypatch.setattr(SqliteStore, "save_snapshot", full_disk)
    db = str(tmp_path / "runs.db")
    assert Engine(runner="serial", db=db).run(CHAIN, run_id="r").status == "succeeded"
    assert snapshot_row(db) is None and Engine(db=db).status("r").status == "succeeded"
