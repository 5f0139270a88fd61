"""The workflow patterns of ``examples/patterns/`` (one per WCP number), each run through the
installed ``flowcore`` command with the thread runner, and its outcome checked: which instances
ran, which were cancelled, what the join took and how the run ended."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PATTERNS = Path(__file__).resolve().parent.parent / "examples" / "patterns"


def run_pattern(name, tmp_path):
    exe = Path(sys.executable).with_name("flowcore")
    command = [str(exe)] if exe.exists() else ["flowcore"]
    done = subprocess.run(command + ["run", str(PATTERNS / name), "--json", "--db", str(tmp_path / "store.db")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=dict(os.environ))
    assert "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout)
    records = {(r["node"] if r["item"] is None else (r["node"], tuple(r["item"]))): r for r in out["nodes"]}
    return done.returncode, out, records


def statuses(records, *names):
    return [records[n]["status"] for n in names]


def test_every_pattern_workflow_has_a_test_and_names_its_pattern():
    """A pattern is tested here (``test_wcpNN_...``) or, for loops and subworkflows, beside the
    other tests of its node type (a test module that names its file)."""
    tested = {name for name in globals() if name.startswith("test_wcp")}
    others = [p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name]
    for path in PATTERNS.glob("*.yaml"):
        number = path.name.split("_")[0]
        assert any(t.startswith(f"test_{number}_") for t in tested) or any(path.name in text for text in others), \
            f"{path.name} has no test"
        assert f"# WCP-{int(number[3:])} " in path.read_text(), f"{path.name} does not name its pattern"


def test_wcp09_structured_discriminator_takes_the_first_answer(tmp_path):
    rc, out, records = run_pattern("wcp09_discriminator.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded"
    assert records["first"]["output"] == "answer from b"  # the fastest, alone (not a list)
    assert statuses(records, "model_a", "model_b", "model_c") == ["succeeded"] * 3
    assert out["sequence"].index("first") < out["sequence"].index("model_a")  # it did not wait for a


def test_wcp19_cancel_task_withdraws_the_named_task(tmp_path):
    rc, out, records = run_pattern("wcp19_cancel_task.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded"
    assert records["recompute"]["status"] == "cancelled"
    assert records["publish"]["output"] == "cached"
    assert out["finished_at"] - out["started_at"] < 15  # not the 30 s recompute


def test_wcp20_cancel_case_by_a_fail_node_under_fail_fast(tmp_path):
    rc, out, records = run_pattern("wcp20_cancel_case.yaml", tmp_path)
    assert rc == 1 and out["status"] == "failed"
    assert out["error"] == {"node": "reject", "type": "fail", "message": "the order is not valid"}
    assert records["reject"]["error"]["type"] == "fail"
    assert statuses(records, "prepare", "ship") == ["cancelled", "cancelled"]


def test_wcp25_cancel_region_withdraws_every_node_of_the_region(tmp_path):
    rc, out, records = run_pattern("wcp25_cancel_region.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded"
    assert statuses(records, "research", "draft", "review") == ["cancelled"] * 3
    assert records["send_what_we_have"]["status"] == "succeeded"


def test_wcp29_cancelling_discriminator_cancels_the_losers(tmp_path):
    rc, out, records = run_pattern("wcp29_cancelling_discriminator.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded"
    assert records["found"]["output"] == "docs"
    assert statuses(records, "search_web", "search_tickets") == ["cancelled", "cancelled"]
    assert out["finished_at"] - out["started_at"] < 15


def test_wcp30_structured_partial_join_runs_on_two_of_three(tmp_path):
    rc, out, records = run_pattern("wcp30_partial_join.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded"
    assert records["decide"]["output"] == "approve (1) + approve (3)"  # the two first, as they came
    assert records["reviewer_2"]["status"] == "succeeded"


def test_wcp34_static_partial_join_for_multiple_instances_takes_two_items_in_item_order(tmp_path):
    rc, out, records = run_pattern("wcp34_partial_join_for_instances.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded"
    assert records["use"]["output"] == "us + asia"
    assert [records[("fetch", (i,))]["status"] for i in range(4)] == ["succeeded"] * 4
    assert out["sequence"].index("use") < out["sequence"].index("fetch[3]")


def test_wcp43_explicit_termination_ends_the_run_succeeded(tmp_path):
    rc, out, records = run_pattern("wcp43_explicit_termination.yaml", tmp_path)
    assert rc == 0 and out["status"] == "succeeded" and out["error"] is None
    assert records["done"]["status"] == "succeeded" and records["done"]["output"] == "result"
    assert statuses(records, "monitor", "report") == ["cancelled", "cancelled"]
    assert out["finished_at"] - out["started_at"] < 15


@pytest.mark.parametrize("path", sorted(PATTERNS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_pattern_workflow_is_valid(path):
    exe = Path(sys.executable).with_name("flowcore")
    done = subprocess.run([str(exe) if exe.exists() else "flowcore", "validate", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
