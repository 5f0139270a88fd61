"""An instance's story: every change of one node instance's status, the event that caused it, and
the commands the core issued for it then (``flowcore status RUN --node N [--item I]``).

Told by replaying the run's whole log from its start (never from a snapshot: a snapshot holds
where instances are, not how they got there) with the core's ``trace``, which reports every
transition as ``(key, old status, move, new status, stimulus)``. The stimulus is the id of the
event that caused it, ``"<step>.<position in the batch>"``, or ``"<step>"`` for what the core
decided once all of a step's events were applied (the starts it chose, the run's end); commands
carry the same id. So each step's own events, trace and commands are all that is looked at:
O(the log's length), like any load. The replay is the core's own ``step`` on the log as recovery
reads it (the same cap history), each step checked against the decisions logged beside it.

A chapter is one transition, or an event about the instance that moved nothing (a late result of
an attempt that is no longer current, a confirmed cancel, a resume re-announcing a wait), with
the commands its stimulus issued for the instance. Times are seconds since the run started.
"""
from __future__ import annotations

import attrs

from runners import collector_paused
from scheduler_core import (AwaitInput, CancelConfirmed, CancelNode, CancelRequested, CancelTimer, CapChanged,
                            InputProvided, NodeFailed, NodeSucceeded, ReplayDiverged, StartNode, StartTimer,
                            TimerFired, fingerprint, initial_state, instance_name, step)

from .recovery import RunRefused, first_cap, read_log, with_cap_history
from .report import history
from .workflow_file import compiled

END_OF_STEP = "end_of_step"  # the cause of what the core decided after all of a step's events


class NoSuchInstance(RunRefused):
    """The run has no such node, or the node never had that item."""


@attrs.frozen
class Story:
    run_id: str
    node: str
    item: tuple
    chapters: list  # of dicts, see ``to_dict``
    attempts: list = attrs.field(factory=list)  # the record's history, as ``--json`` has it

    def to_dict(self) -> dict:
        """``{run_id, node, item, story, attempts}``; ``story`` is a list of chapters ``{event, at,
        cause, move, from, to, commands}`` (``move``, ``from`` and ``to`` are null for an event that
        moved nothing; ``cause`` is the event's type and salient fields); ``attempts`` is the
        instance's history (``nodes[*].history`` of ``--json``), each error with its traceback."""
        return {"run_id": self.run_id, "node": self.node, "item": list(self.item) if self.item else None,
                "story": self.chapters, "attempts": self.attempts}


def instance_story(store, run_id: str, node: str, item=()) -> Story:
    """The story of instance ``(node, item)`` of the stored run ``run_id``. ``RunRefused`` for an
    unknown run or one that cannot be replayed; ``NoSuchInstance`` for a node the run does not have
    or an item it never had."""
    item = tuple(item or ())
    info, wf, batches, prints = read_log(store, run_id)
    graph = compiled(wf, max_parallel=first_cap(info.options))
    n = graph.index.get(node)
    if n is None:
        raise NoSuchInstance(f"run {run_id!r} has no node {node!r}")
    depth = graph.depth[n]  # fan-outs the node runs inside of: its item paths have at most this many indices
    if item and not depth:
        raise NoSuchInstance(f"node {node!r} does not run per item: leave out --item")
    if len(item) > depth:
        raise NoSuchInstance(f"node {node!r} runs inside {depth} fan-out(s): its item paths have at most {depth} "
                             f"ind{'ex' if depth == 1 else 'ices'}")
    with collector_paused():  # as a load: the replay builds many long-lived values and runs no node code
        chapters, state = _tell(run_id, graph, (n, item), with_cap_history(info.options, batches, 0), prints)
    if not chapters and (n, item) not in state.records and (item or depth):
        items = sorted(path for m, path in state.records.keys() if m == n)
        had = ", ".join(",".join(map(str, p)) or "(none)" for p in items[:10]) + (" ..." if len(items) > 10 else "")
        raise NoSuchInstance(f"node {node!r} has no item {','.join(map(str, item)) or '(none)'} in run {run_id!r}; "
                             + (f"its items are {had} (use --item)" if items else "it never ran"))
    record = state.records.get((n, item))
    return Story(run_id, node, item, chapters, history(record) if record is not None else [])


def _tell(run_id, graph, key, batches, prints) -> tuple[list, object]:
    node_id, item = graph.ids[key[0]], key[1]
    state = initial_state(graph)
    chapters: list = []
    for s, events in enumerate(batches):
        before, trace = state, []
        state, commands = step(state, events, trace)
        if prints[s] is not None and prints[s] != fingerprint(commands):
            exc = ReplayDiverged(s, prints[s], fingerprint(commands))
            raise RunRefused(f"run {run_id!r}: its story cannot be told here: {exc}. The engine, the node types "
                             f"or the stored definition changed since the run was recorded.")
        moves: dict = {}  # stimulus -> [(old, move, new)]
        for k, old, move, new, stimulus in trace:
            if k == key:
                moves.setdefault(stimulus, []).append((old, move, new))
        issued: dict = {}  # stimulus -> [command dicts]
        for c in commands:
            if _concerns(c, node_id, item, key, before, state):
                issued.setdefault(c.stimulus, []).append(_command(c, state.started_at))
        if not moves and not issued and not any(_names(e, node_id, item, key, before) for e in events):
            continue
        for i, event in enumerate(events):
            stimulus = f"{s}.{i}"
            if stimulus in moves or stimulus in issued or _names(event, node_id, item, key, before):
                chapters += _chapters(stimulus, _cause(event), _since(event.at, state.started_at),
                                      moves.get(stimulus, ()), issued.get(stimulus, []))
        stimulus = str(s)
        if stimulus in moves or stimulus in issued:
            chapters += _chapters(stimulus, {"type": END_OF_STEP}, _since(state.now, state.started_at),
                                  moves.get(stimulus, ()), issued.get(stimulus, []))
    return chapters, state


def _chapters(stimulus, cause, at, moves, commands) -> list:
    """One chapter per transition (the stimulus's commands with the last), or one without a move."""
    moves = list(moves) or [(None, None, None)]
    return [{"event": stimulus, "at": at, "cause": cause,
             "move": move and str(move), "from": old and str(old), "to": new and str(new),
             "commands": commands if j == len(moves) - 1 else []}
            for j, (old, move, new) in enumerate(moves)]


def _since(at, started_at):
    return None if at is None or started_at is None else round(at - started_at, 6)


def _names(event, node_id, item, key, before) -> bool:
    """Is ``event`` about this instance (by node and item, or a timer of its)?"""
    if isinstance(event, TimerFired):
        timer = before.timers.get(event.timer)
        return timer is not None and timer.key == key
    return getattr(event, "node", None) == node_id and tuple(event.item) == item


def _concerns(command, node_id, item, key, before, after) -> bool:
    if isinstance(command, (StartNode, CancelNode, AwaitInput)):
        return command.node == node_id and tuple(command.item) == item
    if isinstance(command, (StartTimer, CancelTimer)):  # a timer started is in the state after, one cancelled before
        timer = after.timers.get(command.timer) or before.timers.get(command.timer)
        return timer is not None and timer.key == key
    return False


def _cause(event) -> dict:
    """The event's type and the fields that tell what happened (not its values: those are in the record)."""
    cause: dict = {"type": type(event).__name__}
    if hasattr(event, "node"):
        cause["node"] = event.node
        cause["item"] = list(event.item) if event.item else None
    if isinstance(event, (NodeSucceeded, NodeFailed, CancelConfirmed)):
        cause["attempt"] = event.attempt
    if isinstance(event, NodeSucceeded):
        cause["ports"] = sorted(event.ports)
    elif isinstance(event, NodeFailed):
        cause["error"] = {"type": event.error_type, "message": event.message}
    elif isinstance(event, TimerFired):
        cause["timer"] = event.timer
    elif isinstance(event, InputProvided):
        cause["port"] = event.port
    elif isinstance(event, CancelRequested):
        cause["reason"] = event.reason
    elif isinstance(event, CancelConfirmed):
        cause["abandoned"] = event.abandoned
    elif isinstance(event, CapChanged):
        cause["max_parallel"] = event.max_parallel
    return cause


def _command(command, started_at) -> dict:
    out: dict = {"type": type(command).__name__}
    if isinstance(command, StartNode):
        out["attempt"] = command.attempt
        if command.redispatch:
            out["redispatch"] = True
    elif isinstance(command, CancelNode):
        out.update(attempt=command.attempt, reason=command.reason)
    elif isinstance(command, StartTimer):
        out.update(timer=command.timer, due=_since(command.due, started_at))
    elif isinstance(command, CancelTimer):
        out["timer"] = command.timer
    elif isinstance(command, AwaitInput):
        out.update(prompt=command.prompt, choices=list(command.choices) if command.choices else None)
    return out


def render_story(story: Story, out) -> None:
    """The story as a table on the rich console ``out``; every string from the run is escaped."""
    from rich.table import Table

    from .terminal import shown as escape  # markup escaped and control characters made visible

    name = instance_name(story.node, story.item)
    table = Table(title=f"story of {escape(name)} in run {escape(story.run_id)}", title_justify="left")
    for col in ("event", "at", "cause", "move", "status", "commands"):
        table.add_column(col, justify="right" if col == "at" else "left")
    for ch in story.chapters:
        status = f"{ch['from']} → {ch['to']}" if ch["move"] else ""
        at = "" if ch["at"] is None else f"+{ch['at']:.3f}s"
        table.add_row(ch["event"], at, escape(_describe_cause(ch["cause"], story.node)), ch["move"] or "(none)",
                      status, "\n".join(escape(_describe_command(c)) for c in ch["commands"]))
    out.print(table)
    if not story.chapters:
        out.print(f"{escape(name)} has not been reached: its status never changed.", highlight=False)
    _render_attempts(story, out, escape)


def _render_attempts(story: Story, out, escape) -> None:
    """Each attempt: its status and times, its error with every frame of its traceback (the node's
    own, from its function on), or what a late result returned."""
    for a in story.attempts:
        took = f" took {a['finished_at'] - a['started_at']:.3f}s" \
            if a["finished_at"] is not None and a["started_at"] is not None else ""
        late = " (late: it came after the attempt was cancelled or timed out, and changed nothing)" if a["late"] else ""
        out.print(f"attempt {a['attempt']}: {a['status']}{took}{late}", highlight=False, markup=False)
        error = a["error"]
        if error:
            out.print(escape(f"  {error['type']}: {error['message']}"), highlight=False)
            frames = (error.get("traceback") or "").splitlines()
            if frames and frames[0].startswith("Traceback"):
                frames = frames[1:]  # the heading: what follows says it
            for line in frames:
                out.print(escape("  " + line), highlight=False)
        elif a["late"] and a["ports"] is not None:
            out.print(escape(f"  ports: {', '.join(a['ports'])}"), highlight=False)


def _describe_cause(cause: dict, node: str) -> str:
    kind = cause["type"]
    if kind == END_OF_STEP:
        return "after the step's events (starts chosen, the run ended)"
    parts = [kind]
    if "node" in cause and cause["node"] != node:  # another instance's event (an upstream end, say)
        parts.append(instance_name(cause["node"], cause["item"] or ()))
    if "attempt" in cause:
        parts.append(f"attempt {cause['attempt']}")
    if "error" in cause:
        parts.append(f"{cause['error']['type']}: {cause['error']['message']}")
    for field in ("timer", "port", "reason", "max_parallel"):
        if cause.get(field) is not None:
            parts.append(f"{field} {cause[field]}")
    if cause.get("ports"):
        parts.append("ports " + ", ".join(cause["ports"]))
    if cause.get("abandoned"):
        parts.append("abandoned")
    return " ".join(parts[:1]) + (" (" + "; ".join(parts[1:]) + ")" if parts[1:] else "")


def _describe_command(command: dict) -> str:
    kind = command["type"]
    if kind == "StartNode":
        return f"StartNode attempt {command['attempt']}" + (" (redispatch)" if command.get("redispatch") else "")
    if kind == "CancelNode":
        return f"CancelNode attempt {command['attempt']}: {command['reason']}"
    if kind == "StartTimer":
        return f"StartTimer {command['timer']} due +{command['due']:.3f}s"
    if kind == "CancelTimer":
        return f"CancelTimer {command['timer']}"
    if kind == "AwaitInput":
        choices = f" [{'|'.join(command['choices'])}]" if command.get("choices") else ""
        return f"AwaitInput{choices}" + (f": {command['prompt']}" if command.get("prompt") else "")
    return kind
