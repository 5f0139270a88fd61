"""The terminal view shows what nodes, workflows and runs supply literally: rich markup is text, and
terminal escape sequences (C0/C1 control characters) are shown as visible escapes, never sent raw.

Each case runs the installed command (what a user runs), then ``status`` of the stored run.
"""
import json

import pytest

from test_cli import flowcore

WORKFLOW = """\
name: {name}
nodes:
  - {{id: {node}, type: python, call: "nodes_for_tests:{fn}"}}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWCORE_DB", str(tmp_path / "flowcore.db"))
    return tmp_path


def _write(workdir, fn, name="terminal", node="n"):
    (workdir / "wf.yaml").write_text(WORKFLOW.format(name=json.dumps(name), node=json.dumps(node), fn=fn))
    return "wf.yaml"


def _no_raw_controls(text):
    return not any(c in text for c in ("\x1b", "\x07", "\x9b"))


def _run_and_status(workdir, fn, *, run_id="r1", **names):
    path = _write(workdir, fn, **names)
    run = flowcore("run", path, "--run-id", run_id, cwd=workdir)
    status = flowcore("status", run_id, cwd=workdir)
    return run, status


@pytest.mark.parametrize("fn, shown", [("markup_close", "[/]"), ("markup_bold", "[bold]x")])
def test_markup_in_a_nodes_output_is_shown_literally(workdir, fn, shown):
    run, status = _run_and_status(workdir, fn)
    for done in (run, status):
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and shown in done.stdout


def test_markup_in_an_error_message_is_shown_literally_and_the_failed_run_exits_1(workdir):
    run, status = _run_and_status(workdir, "fail_markup")
    assert run.returncode == 1 and status.returncode == 0, (run.stderr, status.stderr)
    for done in (run, status):
        assert "Traceback" not in done.stderr
        assert "bad [/] and [red]x[/red] \\x1b[31m" in done.stdout  # the footer's full error line
        assert _no_raw_controls(done.stdout)


def test_markup_in_the_workflow_name_node_id_and_run_id_is_shown_literally(workdir):
    run, status = _run_and_status(workdir, "markup_close", run_id="id[/]", name="wf [/] [bold]", node="n[/]")
    for done in (run, status):
        assert done.returncode == 0, done.stderr
        assert "run id[/] · wf [/] [bold]" in done.stdout and "n[/]" in done.stdout


def test_terminal_escapes_in_output_and_logs_are_shown_escaped_never_raw(workdir):
    run, status = _run_and_status(workdir, "terminal_escapes")
    for done in (run, status):
        assert done.returncode == 0, done.stderr
        assert _no_raw_controls(done.stdout), repr(done.stdout)
        assert "a\\x1b[31mred" in done.stdout  # the output cell
        assert "log a\\x1b[31mred\\x1b]0;title\\x07\\x9bz [/] end" in done.stdout  # the log line, whole


def test_the_json_object_keeps_the_values_exactly(workdir):
    path = _write(workdir, "terminal_escapes")
    done = flowcore("run", path, "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"][0]["output"] == "a\x1b[31mred\x1b]0;title\x07\x9bz"


def test_a_waiting_node_with_markup_in_its_id_and_prompt_is_named_literally(workdir):
    (workdir / "ask.yaml").write_text('name: ask\nnodes:\n  - {id: "ok[/]", type: hil, prompt: "Ship [/] \\e[31m?",'
                                      ' choices: [ship]}\n')
    done = flowcore("run", "ask.yaml", "--run-id", "w[/]", cwd=workdir)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "run w[/] is waiting." in done.stderr
    assert "ok[/] (Ship [/] \\x1b[31m?)" in done.stderr and _no_raw_controls(done.stderr)


def test_the_runs_table_shows_markup_and_escapes_in_run_ids_and_workflow_names_literally(workdir):
    _run_and_status(workdir, "markup_close", run_id="id[/]\x1b[31m", name="wf [/] [bold]")
    done = flowcore("runs", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "id[/]\\x1b[31m" in done.stdout and "wf [/] [bold]" in done.stdout and _no_raw_controls(done.stdout)


def test_the_story_of_a_node_shows_its_error_literally(workdir):
    _run_and_status(workdir, "fail_markup", run_id="s[/]", node="n[/]")
    done = flowcore("status", "s[/]", "--node", "n[/]", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "story of n[/] in run s[/]" in done.stdout
    assert "RuntimeError: bad [/] and" in done.stdout and "[red]x[/red] \\x1b[31m" in done.stdout  # a wrapped cell
    assert _no_raw_controls(done.stdout)


# -- the table fits the terminal and keeps a run's last rows ----------------------------------------

LONG_LOOP = """\
name: contact-campaign-with-a-long-name
nodes:
  - {id: contacts, type: foreach, items: contacts}
  - {id: enrich_contact_record, type: python, call: "nodes_for_tests:echo"}
  - {id: report, type: python, call: "nodes_for_tests:echo"}
connections:
  - {from: contacts, to: enrich_contact_record, port: iteration}
  - {from: enrich_contact_record, to: report}
"""


def _long_run(workdir, monkeypatch, columns, items=70):
    monkeypatch.setenv("COLUMNS", str(columns))
    (workdir / "loop.yaml").write_text(LONG_LOOP)
    run = flowcore("run", "loop.yaml", "--run-id", "long", "--trigger",
                   json.dumps({"contacts": [f"person-{i}@example.com" for i in range(items)]}), cwd=workdir)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_on_an_80_column_terminal_every_column_shows_and_no_line_is_wider(workdir, monkeypatch):
    lines = _long_run(workdir, monkeypatch, 80, items=5)
    header = next(line for line in lines if line.startswith("node"))
    assert header.split() == ["node", "status", "tries", "start", "took", "timeline", "output", "/", "error"]
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "succeeded" in line.split()[1:2]]
    assert len(rows) == 7  # contacts, 5 items, report: every status whole, not 'suc…'
    item = next(line for line in rows if line.startswith("enrich"))
    assert item.split()[0].endswith("[0]") and "…" in item.split()[0]  # the name is cut, its item kept


def test_a_long_run_shows_its_last_rows_and_sums_up_the_middle(workdir, monkeypatch):
    lines = _long_run(workdir, monkeypatch, 120)
    names = [line.split()[0] for line in lines if line.split()[1:2] == ["succeeded"]]
    assert names[0] == "contacts" and names[-1] == "report" and "enrich_contact_record[69]" in names
    assert len(names) < 72 and len(names) <= 60
    (summary,) = [line for line in lines if line.startswith("… ")]
    assert summary.split()[1:3] == [str(72 - len(names)), "more:"] and f"{72 - len(names)} succeeded" in summary
    assert "flowcore status long --json" in lines[-1] and "--node NODE" in lines[-1]


def test_a_wide_terminal_shows_whole_names(workdir, monkeypatch):
    lines = _long_run(workdir, monkeypatch, 160, items=3)
    assert any(line.startswith("enrich_contact_record[2] ") for line in lines)


def test_the_node_column_keeps_its_header_when_every_node_id_is_shorter_than_it():
    import io

    from rich.console import Console

    from adapters import Engine
    from adapters.report import render_table

    result = Engine(runner="serial").run({"nodes": [{"id": "e", "type": "noop"}]})
    out = io.StringIO()
    render_table(result.run_id, result.state, Console(file=out, width=100, color_system=None))
    header = next(line for line in out.getvalue().splitlines() if "status" in line)
    assert header.split()[0] == "node"  # was "…": the column as narrow as its one-letter ids
