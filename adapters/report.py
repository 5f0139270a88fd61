"""Reports: a run's state as the public ``--json`` object, and as a table a person reads.

``run_dict`` is the contract in DESIGN.md ("--json prints one JSON object"): change it only with
the contract. Nothing here decides anything about the run.
"""
from __future__ import annotations

import os
import re
import time

from scheduler_core import PARKS, Kind, Record, RunStatus, State, Status, TimerKind, attempts_of, heap, sequence_keys
from scheduler_core.state import entry_key

from runners import instance_name

from .terminal import shown, visible


def run_status(state: State) -> str:
    """succeeded, failed or cancelled once ended; queued before it started; waiting when only parked
    work is left; else running."""
    if state.finished:
        return state.status
    if state.status == RunStatus.PENDING:
        return "queued"
    if state.status == RunStatus.RUNNING and state.idle and (len(state.awaiting) or len(state.timers)
                                                             or len(state.children)):
        return "waiting"
    return "running"


def record_dict(record) -> dict:
    ports = dict(record.ports) if record.ports is not None else None
    return {
        "node": record.node,
        "item": list(record.item) if record.item else None,
        "status": str(record.status),
        "attempts": record.attempts,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "ports": ports,
        "output": ports.get("result") if ports else None,
        "error": record.error.as_dict(with_node=False) if record.error else None,
        "history": history(record),
    }


def history(record) -> list[dict]:
    """The record's attempts, numbered from 1 (``scheduler_core.attempts_of``): an earlier attempt's
    error, the current one, and a result that came after its attempt was cancelled (``late``)."""
    return [{"attempt": a.attempt, "status": str(a.status), "started_at": a.started_at, "finished_at": a.finished_at,
             "error": a.error.as_dict(with_node=False) if a.error else None,
             "ports": dict(a.ports) if a.ports is not None else None, "late": a.late}
            for a in attempts_of(record)]


def ordered_records(state: State) -> list:
    """Records in node declaration order, then item order. An instance that is ready but has not
    started (the core makes its record when it starts) is ``pending``; so is a node the run has not
    reached yet (it waits behind an unanswered approval, say), as one record with item null."""
    ids = state.graph.ids
    records = dict(state.records.items())
    for h in state.ready.values():
        for n, path in map(entry_key, heap.entries(h)):
            records[(n, path)] = Record(node=ids[n], item=path)
    reached = {n for n, _ in records}
    records.update({(n, ()): Record(node=ids[n], item=()) for n in range(len(ids)) if n not in reached})
    return [records[k] for k in sorted(records)]


def run_dict(run_id: str, state: State) -> dict:
    return {
        "run_id": run_id,
        "status": run_status(state),
        "error": state.error.as_dict(with_node=True) if state.error else None,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "nodes": _with_child_runs(run_id, state, [record_dict(r) for r in ordered_records(state)]),
        "sequence": [instance_name(state.graph.ids[n], path) for n, path in sequence_keys(state)],
    }


NO_CHILD_ERRORS = frozenset({"max_depth", "subworkflow_input"})  # a subworkflow that failed so made no child run


def child_run_id(parent_run_id: str, node: str, item) -> str:
    """The run id of the child run of instance ``node[item]`` of a run: ``PARENT/node`` or ``PARENT/node[2]``."""
    return f"{parent_run_id}/{instance_name(node, tuple(item or ()))}"


def _with_child_runs(run_id: str, state: State, records: list[dict]) -> list[dict]:
    """Records of subworkflow nodes get ``child_run``: their child's run id, or null while (or
    because) they have none."""
    g = state.graph
    for r in records:
        b = g.nodes[g.index[r["node"]]].behaviour
        if b is not None and b.kind is Kind.PARK_CHILD:
            made = r["started_at"] is not None and (r["error"] is None or r["error"]["type"] not in NO_CHILD_ERRORS)
            r["child_run"] = child_run_id(run_id, r["node"], r["item"]) if made else None
    return records


def parked_timers(state: State) -> list[tuple[float, str]]:
    """(due, timer id) of the timers a run that no process drives waits for, soonest first: every
    timer but the attempts' timeouts (nothing runs; an attempt in flight starts again, with a new one)."""
    return sorted((t.due, tid) for tid, t in state.timers.items() if t.kind != TimerKind.TIMEOUT)


def waiting_on(state: State) -> list[tuple]:
    """(instance name, node id, item path, prompt, choices) for every instance parked for input."""
    out = []
    for n, path in sorted(state.awaiting.keys()):
        node = state.graph.nodes[n]
        b = node.behaviour
        out.append((instance_name(node.id, path), node.id, path, b.prompt, list(b.choices) if b.choices else None))
    return out


def _when(t: float, now: float) -> str:
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    delta = t - now
    if abs(delta) < 1:
        return f"{clock} (now)"
    span = f"{abs(delta):.0f} s" if abs(delta) < 120 else f"{abs(delta) / 60:.0f} min"
    return f"{clock} (in {span})" if delta > 0 else f"{clock} (overdue by {span})"


def how_it_continues(run_id: str, state: State, driver, now: float, pending=()) -> list[str]:
    """For a run that has not ended: who drives it, or, when no live process does, what moves it on
    next (``pending``: the requests in its inbox) and which command (or a worker) carries that out."""
    if state.finished:
        return []
    if driver is not None:
        return [f"driven by process {driver.pid} on {driver.host}"]
    if state.status == RunStatus.PENDING:
        return ["queued: no process drives it; a worker (flowcore worker) starts it, or "
                f"flowcore resume {run_id}"]
    lines = ["no live process drives this run"]
    due = parked_timers(state)
    if due:
        lines.append(f"  next timer due {_when(due[0][0], now)}" + (f" ({len(due)} timers in all)" if len(due) > 1 else ""))
    answered = {(r.body.get("node"), tuple(r.body.get("item") or ())) for r in pending if r.kind == "answer"}
    for name, node, path, prompt, _ in waiting_on(state):
        lines.append(f"  {name} awaits an answer" + (f" ({prompt})" if prompt else "")
                     + ("; an answer to it is in the run's inbox" if (node, tuple(path)) in answered else ""))
    for r in pending:
        if r.kind == "cancel":
            lines.append("  a cancel of the run is in the run's inbox")
        elif r.kind == "cancel_node":
            item = r.body.get("item")
            what = instance_name(r.body.get("node"), tuple(item)) if item is not None else r.body.get("node")
            lines.append(f"  a cancel of {what} is in the run's inbox")
    for n, path in sorted(state.children.keys()):
        node = state.graph.ids[n]
        lines.append(f"  {instance_name(node, path)} awaits its child run {child_run_id(run_id, node, path)}")
    if state.running_count:
        lines.append(f"  {state.running_count} instance(s) were running when their process stopped: they start again")
    lines.append(f"  it continues when a worker (flowcore worker) or `flowcore resume {run_id}` drives it")
    return lines


def _short(value, width: int = 40) -> str:
    text = visible(repr(value) if not isinstance(value, str) else value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _detail(record) -> str:
    """The cell's text, made visible (its markup is escaped where it is put in the table)."""
    late = [a for a in record.history if a.late]
    if late and record.status == Status.CANCELLED:  # what it did after all, though nothing used it
        a = late[-1]
        if a.error:
            return visible(f"late {a.error.type}: {a.error.message}")
        return "late: " + (_short(a.ports["result"]) if a.ports and "result" in a.ports
                           else "→ " + visible(", ".join(a.ports or ())))
    if record.error:
        return visible(f"{record.error.type}: {record.error.message}")
    if not record.ports:
        return ""
    if "result" in record.ports:
        return _short(record.ports["result"])
    return "→ " + visible(", ".join(record.ports))  # routed: name the ports it produced


def _bar(record, t0: float, span: float, width: int = 20) -> str:
    """The instance's run time as a bar on the run's timeline."""
    if record.started_at is None or span <= 0:
        return ""
    end = record.finished_at if record.finished_at is not None else t0 + span
    a = min(int((record.started_at - t0) / span * width), width - 1)
    b = max(a + 1, int(round((end - t0) / span * width)))
    return " " * a + "█" * (min(b, width) - a)


def _fit(name: str, width: int) -> str:
    """An instance's name cut to ``width`` before its ``[item]``, which stays whole where it can."""
    if len(name) <= width:
        return name
    bracket = name.rfind("[")
    tail = len(name) - bracket if bracket > 0 and len(name) - bracket <= width - 4 else width // 3
    return name[: width - tail - 1] + "…" + name[len(name) - tail:]


# The columns of the run table, and how wide the fixed ones are (their longest content).
_STATUS, _TRIES, _TIME = len("cancelled"), len("tries"), len("999.99s")
_GAP = 2  # between columns


def _widths(total: int, longest_name: int) -> tuple[int, int, int]:
    """(node, timeline, output) widths so that the table's seven columns fit ``total`` columns: on a
    terminal of 80, every column shows, the node keeps at least 12 characters and the output 10."""
    free = total - (_STATUS + _TRIES + 2 * _TIME) - 6 * _GAP
    timeline = max(8, min(20, free // 5))
    free -= timeline
    node = max(min(12, longest_name), min(longest_name, free // 2))
    return node, timeline, max(10, min(40, free - node))


def _rows_shown(records: list, max_rows: int) -> tuple[list, list, list]:
    """(first, hidden, last): every row when they fit in ``max_rows``; else the first ones and the last
    third of them, the middle summarised (the last rows of a run, its final nodes, always show)."""
    if len(records) <= max_rows:
        return records, [], []
    tail = max_rows // 3
    head = max_rows - tail - 1
    return records[:head], records[head:len(records) - tail], records[len(records) - tail:]


def _summary(records: list) -> str:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return f"… {len(records)} more: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def render_table(run_id: str, state: State, console, *, max_rows: int = 60, abandoned: int = 0) -> None:
    """Print the run's records as a table (rich) that fits the console's width, with a timeline and
    timings relative to the run's start; a long run shows its first and last rows and sums up the
    middle, and says where every row is (``--json``) and each node's whole story (``--node``)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    t0 = state.started_at or 0.0
    records = ordered_records(state)
    ends = [r.finished_at for r in records if r.finished_at is not None]
    span = (state.finished_at or max(ends, default=t0)) - t0
    names = [visible(instance_name(r.node, r.item)) for r in records]
    node_w, bar_w, out_w = _widths(console.width, max([len("node"), *(len(n) for n in names)]))  # its header too
    table = Table(title=f"run {shown(run_id)} · {shown(state.graph.name)}", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, _GAP // 2), collapse_padding=True)
    table.add_column("node", no_wrap=True, min_width=min(4, node_w), max_width=node_w)
    table.add_column("status", no_wrap=True, min_width=_STATUS)
    table.add_column("tries", justify="right", no_wrap=True, min_width=_TRIES)
    table.add_column("start", justify="right", no_wrap=True, min_width=_TIME)
    table.add_column("took", justify="right", no_wrap=True, min_width=_TIME)
    table.add_column("timeline", no_wrap=True, min_width=bar_w, max_width=bar_w)
    table.add_column("output / error", no_wrap=True, overflow="ellipsis", max_width=out_w)
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "skipped": "dim", "waiting": "cyan",
              "running": "blue", "pending": "dim"}
    first, hidden, last = _rows_shown(list(zip(records, names)), max_rows)

    def add(r, name):
        start = f"{r.started_at - t0:.2f}s" if r.started_at is not None else ""
        took = f"{r.finished_at - r.started_at:.2f}s" if r.finished_at is not None and r.started_at is not None \
            else ""
        table.add_row(escape(_fit(name, node_w)), f"[{colour.get(r.status, '')}]{r.status}[/]", str(r.attempts),
                      start, took, f"[{colour.get(r.status, '')}]{_bar(r, t0, span, bar_w)}[/]",
                      escape(_detail(r)))
    for r, name in first:
        add(r, name)
    if hidden:
        table.add_row(f"[dim]{escape(_summary([r for r, _ in hidden]))}[/]")
    for r, name in last:
        add(r, name)
    console.print(table)
    _print_logs([r for r, _ in first + last], console)
    console.print(_footer(state, records, abandoned, console.width), highlight=False)
    if hidden:
        console.print(f"[dim]the full view: flowcore report {shown(run_id)} (one HTML page), or flowcore serve[/]",
                      highlight=False)
        console.print(f"[dim]every instance: flowcore status {shown(run_id)} --json; one node's story: "
                      f"flowcore status {shown(run_id)} --node NODE[/]", highlight=False)


def _print_logs(records, console, per_instance: int = 5) -> None:
    """What nodes logged through ``ctx.logger``, kept with their records."""
    for r in records:
        if r.logs:
            console.print(f"[bold]{shown(instance_name(r.node, r.item))}[/] logged:", highlight=False)
            for line in r.logs[-per_instance:]:
                console.print(f"  {visible(line)}", highlight=False, markup=False)


def _footer(state, records, abandoned: int, width: int = 80) -> str:
    """The closing lines (rich markup): the outcome, and every failed instance (see ``failures``);
    every string from the run in them is shown literally."""
    status = run_status(state)
    line = f"[bold]{status}[/]"
    if state.finished_at is not None and state.started_at is not None:  # (a run cancelled while queued never started)
        wall = state.finished_at - state.started_at
        waits = {r.node for r in records if _parks(state.graph.nodes[state.graph.index[r.node]])}
        loops = {r.node for r in records if state.graph.nodes[state.graph.index[r.node]].behaviour.kind is Kind.LOOP}
        busy = sum(r.finished_at - r.started_at for r in records  # (a loop's time is its body's, counted there)
                   if r.finished_at is not None and r.started_at is not None and r.node not in waits | loops)
        line += f" in {wall:.2f}s wall time"
        if waits:  # a person or a timer held the run up: its wall time says nothing of running at once
            line += f", waits ({shown(', '.join(sorted(waits)))}) included"
        line += f"; the same nodes one after the other: {busy:.2f}s"
        if wall > 0 and busy > wall * 1.05 and not waits:
            line += f" ({busy / wall:.1f}× from running at once)"
    failed = [r for r in records if r.status == Status.FAILED]
    if state.error and (state.error.node is None or not failed):  # the run was cancelled, not failed by a node
        line += "\n" + shown(_cut(f"{state.error.node or 'run'}: {state.error.type}: {state.error.message}", width))
    if failed:
        line += "\n" + "\n".join(shown(text) for text in failures(failed, width))
        raised = next((r for r in failed if r.error and r.error.traceback), None)
        if raised is not None:
            name = instance_name(raised.node, raised.item)
            item = f" --item {','.join(map(str, raised.item))}" if raised.item else ""
            line += "\n" + shown(_cut(f"where {name} raised (every frame: status --json, or --node {raised.node}"
                                       f"{item}):", width))
            line += "".join("\n" + shown(_cut("  " + text, width)) for text in last_frames(raised.error.traceback))
    if abandoned:
        line += f"\n{abandoned} abandoned thread{'s' if abandoned != 1 else ''} (ignored cancellation)"
    return line


FAILURES_LISTED = 5  # failed instances named one a line; the rest are named together


def failures(failed: list, width: int = 80) -> list[str]:
    """One line per failed instance, ``work[2]: KeyError: 'x' (work.py:12 in work)``, each cut to
    ``width``; past ``FAILURES_LISTED`` of them, the rest are named on one line."""
    lines = []
    for r in failed[:FAILURES_LISTED]:
        error = r.error
        where = raised_at(error.traceback) if error and error.traceback else None
        suffix = f" ({where})" if where else ""
        text = f"{instance_name(r.node, r.item)}: " + (f"{error.type}: {error.message}" if error else "failed")
        text = " ".join(text.split())
        if len(text) + len(suffix) > width:
            suffix = suffix if len(suffix) <= width // 3 else ""
            text = _cut(text, width - len(suffix))
        lines.append(text + suffix)
    rest = failed[FAILURES_LISTED:]
    if rest:
        lines.append(_cut(f"… {len(rest)} more failed: " + ", ".join(instance_name(r.node, r.item) for r in rest),
                          width))
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


_FRAME = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+), in (?P<fn>.*)$')


def _short_path(path: str) -> str:
    """A frame's file as people read it: relative to the working directory when it is below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith("..") else relative


def raised_at(traceback: str) -> str | None:
    """``file.py:12 in fn``: where the last frame of a traceback (the raise) is, or None."""
    frames = [m for m in map(_FRAME.match, traceback.splitlines()) if m]
    if not frames:
        return None
    last = frames[-1]
    return f"{os.path.basename(last['file'])}:{last['line']} in {last['fn']}"


def last_frames(traceback: str, frames: int = 3) -> list[str]:
    """The end of a traceback, readable: its last ``frames`` frames (``file:line in fn`` and the
    line of code) and the error, without Python's heading; paths relative to here where they can be."""
    lines = traceback.rstrip("\n").splitlines()
    starts = [i for i, text in enumerate(lines) if _FRAME.match(text)]
    if not starts:
        return lines[-3:]
    out = []
    for i in starts[-frames:]:
        m = _FRAME.match(lines[i])
        out.append(f"{_short_path(m['file'])}:{m['line']} in {m['fn']}")
        if i + 1 < len(lines) and lines[i + 1].startswith("    "):
            out.append("  " + lines[i + 1].strip())
    tail = lines[starts[-1] + 1:]
    out += [text for text in tail if not text.startswith(" ")][-3:]  # the error, after the code lines
    return out


def _parks(node) -> bool:
    """A node that waits for a timer, a person or its child run: its time is not work (here)."""
    return node.behaviour.kind in PARKS
