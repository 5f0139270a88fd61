"""The ``flowcore`` command: run, submit, resume, cancel, status, runs, worker, validate, simulate, serve, report.

Exit codes (run and resume): 0 succeeded, 1 failed or cancelled, 2 invalid usage, invalid
workflow or refused request (nothing changed), 3 waiting, 4 the store failed during the run (what
was logged before stands; resume the run once the store works), 5 the dask scheduler of
``--dask-address`` (or of the ``dask_address`` setting) could not be reached (nothing ran or
changed). A ``resume --node`` or ``cancel`` that another live process applies: 0 applied, 2
refused, 3 not applied within ``--wait`` (it stays in the inbox). ``status`` exits 0 for a known
run and 2 for an unknown one. With ``--json``, standard output carries only the result object;
what nodes print goes to standard error. User errors print a message, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time

from rich.console import Console

from runners import backend_names

from .engine import ClusterUnreachable, Engine, RunInterrupted, RunRefused, new_run_id
from .inbox import RequestPending
from .nodes import MAX_NESTING, nesting_problem
from .report import child_run_id, how_it_continues, render_table, waiting_on
from runners import instance_name
from .store import StoreError, is_postgres_url, open_store
from .terminal import shown, visible
from .workflow_file import WorkflowError, dask_address_problem, load_workflow

EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1, "waiting": 3, "running": 3, "queued": 3}
USAGE = 2
NOT_YET = 3  # a request another process drives has not applied yet
STORE_FAILED = 4
CLUSTER_UNREACHABLE = 5


class UserError(Exception):
    """Something the user can fix; printed as a message with exit code 2."""


def _json_arg(text: str, flag: str):
    def not_finite(literal):
        raise UserError(f"{flag} holds {literal}, which is not a finite number: a run keeps its values as JSON, "
                        f"which has no such number; give a number or a string")

    def finite(literal):
        value = float(literal)
        return value if math.isfinite(value) else not_finite(literal)
    try:
        value = json.loads(text, parse_constant=not_finite, parse_float=finite)
    except ValueError as exc:
        raise UserError(f"{flag} must be JSON (for a string, quote it: '\"yes\"'): {exc}") from None
    except RecursionError:  # too deep even for the parser
        problem: str | None = f"nested more than {MAX_NESTING} levels deep"
    else:
        problem = nesting_problem(value)
    if problem:
        raise UserError(f"{flag} is {problem}; a run stores it as JSON, so give flatter data")
    return value


def _check_text_args(args) -> None:
    """A run id or workflow name given is text the store can keep and look up: bytes of the command
    line that are not UTF-8 arrive as lone surrogates, which SQLite refuses (a traceback, before)."""
    for attr, flag in (("run_id", "--run-id" if args.command in ("run", "submit") else "the run id"),
                       ("workflow", "--workflow")):
        value = getattr(args, attr, None)
        try:
            value is not None and value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{flag} {visible(value)} is not valid UTF-8 text") from None


def _item_arg(text: str | None):
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--item must be item indices like 2 or 2,0, not {text!r}") from None


def _db_path(args) -> str:
    return args.db or os.environ.get("FLOWCORE_DB") or "flowcore.db"


def _existing_store(args):
    """The store at the path (or postgresql:// URL) given, opened without creating anything: None
    where there is no file (a database without flowcore's tables reads as having no runs); a file or
    schema that is not a flowcore store is refused and left as it is."""
    path = _db_path(args)
    if not is_postgres_url(path) and not os.path.exists(path):
        return None
    return open_store(path, create=False)


DB_HELP = "the store: a SQLite file or a postgresql:// URL (default: $FLOWCORE_DB or ./flowcore.db)"


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0 or (kind is int and value < 1):  # NaN too: a linger of NaN never ends
            raise argparse.ArgumentTypeError(f"{text!r} is out of range")
        return value
    return parse


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds, 0 or more")
    return value


def _dask_address(text):
    problem = dask_address_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


DASK_ADDRESS_HELP = "the dask scheduler to run nodes on, with --runner dask (default: the workflow's dask_address, " \
                    "else an in-process cluster)"


def _rate(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction from 0 to 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcore", description="Run workflows: every node as soon as its "
                                                                  "inputs resolve, as many at once as the caps allow.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, runner=True):
        p.add_argument("--db", help=DB_HELP)
        p.add_argument("--json", action="store_true", help="print one JSON object on standard output")
        if runner:
            p.add_argument("--runner", choices=backend_names(), help="how nodes execute (default: the run's own)")
            p.add_argument("--max-parallel", type=_positive(int), help="cap on instances running at once")
            p.add_argument("--linger", type=_positive(float), help="seconds to wait for a due timer before "
                                                                   "leaving the run waiting (default 60)")
            p.add_argument("--grace", type=_positive(float), help="seconds cancelled nodes get to stop (default 2)")
            p.add_argument("--dask-address", type=_dask_address, metavar="tcp://HOST:PORT", help=DASK_ADDRESS_HELP)

    p = sub.add_parser("run", help="run a workflow file")
    p.add_argument("file")
    p.add_argument("--trigger", help="the trigger data, as JSON (default: null)")
    p.add_argument("--run-id", help="the id to store the run under (default: generated)")
    common(p)
    p = sub.add_parser("submit", help="store a new run, queued for a worker; nothing runs here")
    p.add_argument("file")
    p.add_argument("--trigger", help="the trigger data, as JSON (default: null)")
    p.add_argument("--run-id", help="the id to store the run under (default: generated)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--json", action="store_true", help="print the run object instead of its id")
    p = sub.add_parser("resume", help="answer a waiting node, or continue an interrupted run")
    p.add_argument("run_id")
    p.add_argument("--node", help="the waiting node to answer")
    p.add_argument("--item", help="the item path of a node waiting per item, e.g. 2 or 2,0")
    p.add_argument("--port", help="the choice, for a hil node with choices")
    p.add_argument("--input", help="the answer, as JSON")
    p.add_argument("--wait", type=_non_negative, default=30.0,
                   help="seconds to wait for another process driving the run to apply the answer (default 30)")
    common(p)
    p = sub.add_parser("cancel", help="cancel a run, or one node (or item) of it, wherever it is")
    p.add_argument("run_id")
    p.add_argument("--node", help="cancel only this node's instances that have not ended")
    p.add_argument("--item", help="only this item of the node, e.g. 2 or 2,0")
    p.add_argument("--reason", help="why (recorded as the error's message)")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--wait", type=_non_negative, default=30.0,
                   help="seconds to wait for another process driving the run to apply it (default 30)")
    p.add_argument("--json", action="store_true", help="print the run object")
    p = sub.add_parser("worker", help="drive every run of the store that needs it, until SIGTERM")
    p.add_argument("--db", help=DB_HELP)
    p.add_argument("--runner", choices=backend_names(), help="how nodes execute (default: each run's own)")
    p.add_argument("--max-parallel", type=_positive(int), help="cap on instances running at once, per run")
    p.add_argument("--max-runs", type=_positive(int), default=8, help="runs driven at once (default 8)")
    p.add_argument("--grace", type=_positive(float), default=2.0,
                   help="on SIGTERM, seconds attempts in flight get to finish (default 2)")
    p.add_argument("--once", action="store_true", help="drive what is due now until each run ends or parks, "
                   "then exit")
    p.add_argument("--dask-address", type=_dask_address, metavar="tcp://HOST:PORT",
                   help="the dask scheduler that runs on the dask runner send their nodes to (default: each run's own)")
    p = sub.add_parser("status", help="show a run, or with --node the story of one of its instances")
    p.add_argument("run_id")
    p.add_argument("--node", help="tell this node's story: each change of its status, the event that caused "
                                  "it and the commands it led to")
    p.add_argument("--item", help="the item path of a node that runs per item, e.g. 2 or 2,0 (with --node)")
    common(p, runner=False)
    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", choices=("queued", "running", "waiting", "succeeded", "failed", "cancelled"))
    p.add_argument("--workflow", help="only runs of the workflow of this name")
    p.add_argument("--limit", type=_positive(int), help="only the newest N")
    common(p, runner=False)
    p = sub.add_parser("validate", help="check a workflow file without running it")
    p.add_argument("file")
    p = sub.add_parser("simulate", help="dry-run a workflow on a virtual clock (nothing is stored)")
    p.add_argument("file")
    p.add_argument("--trigger", help="the trigger data, as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--execute", action="store_true", help="call python nodes (default: pass inputs through)")
    p.add_argument("--fail-rate", type=_rate, default=0.0)
    p.add_argument("--late-rate", type=_rate, default=0.0)
    p.add_argument("--duplicate-rate", type=_rate, default=0.0)
    p.add_argument("--json", action="store_true")
    from .web.commands import add_commands
    add_commands(sub, DB_HELP)  # serve, report
    return parser


class Progress:
    """A live status line on standard error while a run is going (only on a terminal)."""

    TOLD_AT_MOST = 5  # instances told how to answer, one line each (a fan-out may ask thousands)

    def __init__(self, console: Console, run_id: str | None = None):
        self.console = console
        self.run_id = run_id
        self.told = 0
        self.counts = {"done": 0, "failed": 0}
        self.status = console.status("starting…") if console.is_terminal else None
        self.last = 0.0

    def __enter__(self):
        if self.status:
            self.status.__enter__()
        return self

    def __exit__(self, *exc):
        if self.status:
            self.status.__exit__(*exc)

    def __call__(self, events, commands, state):
        for c in commands:
            if type(c).__name__ == "AwaitInput" and self.run_id is not None:
                self._tell_how_to_answer(c)
        for e in events:
            name = type(e).__name__
            if name == "NodeSucceeded":
                self.counts["done"] += 1
            elif name == "NodeFailed":
                self.counts["failed"] += 1
        now = time.monotonic()
        if self.status and now - self.last > 0.1:
            self.last = now
            self.status.update(f"{self.counts['done']} done · {state.running_count} running · "
                               f"{state.ready_count} ready · {len(state.awaiting)} waiting for input · "
                               f"{self.counts['failed']} failed attempts")


    def _tell_how_to_answer(self, c) -> None:
        """Said while the run goes on: an answer from another terminal is applied at once."""
        self.told += 1
        if self.told > self.TOLD_AT_MOST:
            if self.told == self.TOLD_AT_MOST + 1:
                self.console.print(f"(more instances wait for answers: flowcore status {visible(self.run_id)})",
                                   highlight=False, markup=False, soft_wrap=True)
            return
        self.console.print(visible(f"{instance_name(c.node, c.item)} waits for an answer"
                                   f"{f' ({c.prompt})' if c.prompt else ''}: "
                                   f"{resume_command(self.run_id, c.node, c.item, c.choices)}"),
                           highlight=False, markup=False, soft_wrap=True)


def _emit_json(args, obj) -> None:
    args.stdout.write(json.dumps(obj, default=str) + "\n")
    args.stdout.flush()


def _print_result(args, result, out: Console) -> int:
    status = result.status
    if args.json:
        _emit_json(args, result.to_dict())
    else:
        render_table(result.run_id, result.state, out, abandoned=result.abandoned)
    if status == "waiting":
        err = Console(stderr=True, soft_wrap=True)
        err.print(f"run {visible(result.run_id)} is waiting.", highlight=False, markup=False)
        for name, node, item, prompt, choices in waiting_on(result.state):
            ask = f" ({prompt})" if prompt else ""
            err.print(visible(f"  {name}{ask}: {resume_command(result.run_id, node, item, choices)}"),
                      highlight=False, markup=False)
        if len(result.state.timers):
            err.print(f"  timers are pending: `flowcore resume {visible(result.run_id)}` fires those that are due",
                      highlight=False, markup=False)
        for n, item in sorted(result.state.children.keys()):
            node = result.state.graph.ids[n]
            child = child_run_id(result.run_id, node, item)
            err.print(visible(f"  {instance_name(node, item)} waits for its child run {child}: "
                              f"`flowcore status {child}` says what that waits for"), highlight=False, markup=False)
    return EXIT[status]


def resume_command(run_id: str, node: str, item, choices) -> str:
    """The command that answers a waiting instance (pasteable: the first choice, the others named after)."""
    at = f" --item {','.join(map(str, item))}" if item else ""
    port = f" --port {choices[0]}" if choices else ""
    others = f"  (--port is one of: {', '.join(choices)})" if choices and len(choices) > 1 else ""
    return f"flowcore resume {run_id} --node {node}{at}{port} --input JSON{others}"


def _engine(args) -> Engine:
    return Engine(db=_db_path(args))


def cmd_run(args, out: Console) -> int:
    trigger = _json_arg(args.trigger, "--trigger") if args.trigger is not None else None
    workflow = load_workflow(args.file)
    engine = _engine(args)
    run_id = args.run_id or new_run_id(workflow.name)
    with Progress(Console(stderr=True), run_id) as progress:
        result = engine.run(workflow, trigger=trigger, run_id=run_id, runner=args.runner,
                            max_parallel=args.max_parallel, linger=args.linger, grace=args.grace,
                            observer=progress, path=os.path.abspath(args.file), dask_address=args.dask_address)
    return _print_result(args, result, out)


def cmd_submit(args, out: Console) -> int:
    trigger = _json_arg(args.trigger, "--trigger") if args.trigger is not None else None
    workflow = load_workflow(args.file)
    engine = _engine(args)
    run_id = engine.submit(workflow, trigger=trigger, run_id=args.run_id, path=os.path.abspath(args.file))
    if args.json:
        _emit_json(args, engine.status(run_id).to_dict())
    else:
        out.print(run_id, highlight=False, markup=False, soft_wrap=True)
    return 0


def _stored_engine(args) -> Engine:
    store = _existing_store(args)
    if store is None:
        raise UserError(f"no flowcore database at {_db_path(args)} (use --db or FLOWCORE_DB)")
    return Engine(store=store)


def cmd_resume(args, out: Console) -> int:
    value = _json_arg(args.input, "--input") if args.input is not None else None
    if args.node is not None and args.input is None:
        raise UserError("--node needs --input JSON (the answer to give it)")
    engine = _stored_engine(args)
    _warn_if_changed(engine, args.run_id)
    with Progress(Console(stderr=True), args.run_id) as progress:
        result = engine.resume(args.run_id, node=args.node, input=value, port=args.port, item=_item_arg(args.item),
                               runner=args.runner, max_parallel=args.max_parallel, linger=args.linger,
                               grace=args.grace, observer=progress, wait=args.wait, dask_address=args.dask_address)
    if result.applied_by:
        return _print_applied(args, result, f"the answer to {args.node} was applied by {result.applied_by} driving "
                                            f"run {args.run_id}")
    return _print_result(args, result, out)


def cmd_cancel(args, out: Console) -> int:
    if args.item is not None and args.node is None:
        raise UserError("--item names an item of a node: give --node too")
    engine = _stored_engine(args)
    result = engine.cancel(args.run_id, node=args.node, item=_item_arg(args.item), reason=args.reason, wait=args.wait)
    what = f"node {args.node}" + (f" item {args.item}" if args.item else "") if args.node else f"run {args.run_id}"
    if result.applied_by == "queued":
        line = f"{what}: cancelled when run {args.run_id} starts (it is queued; nothing of it has run)"
    elif result.applied_by:
        line = f"{what}: cancelled by {result.applied_by} driving run {args.run_id}"
    else:
        line = f"{what}: cancelled; run {args.run_id} is {result.status}"
    return _print_applied(args, result, line)


def _print_applied(args, result, line: str) -> int:
    """The outcome of a request (exit 0): the run as it is now with --json, else a line."""
    if args.json:
        _emit_json(args, result.to_dict())
    else:
        Console(stderr=True, soft_wrap=True).print(visible(line), highlight=False, markup=False)
    return 0


def cmd_worker(args, out: Console) -> int:
    import signal

    from .worker import Worker

    if args.dask_address is not None and args.runner not in (None, "dask"):
        raise UserError(f"--dask-address is for the dask runner, not --runner {args.runner}")
    err = Console(stderr=True, soft_wrap=True)
    me = f"worker {os.getpid()}"

    def log(line: str) -> None:
        err.print(visible(f"{time.strftime('%H:%M:%S')} {me}: {line}", lines=True), highlight=False, markup=False)

    engine = Engine(db=_db_path(args))
    worker = Worker(engine, runner=args.runner, max_parallel=args.max_parallel, max_runs=args.max_runs,
                    grace=args.grace, log=log, dask_address=args.dask_address)

    def stop(signum, frame):  # a flag only: the handler may interrupt the worker holding its locks
        worker.request_stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.once:
            drives = worker.run_once()
            log(f"done: {drives} drive{'s' if drives != 1 else ''}")
        else:
            log(f"serving {engine.store.path} (up to {args.max_runs} runs at once; stop with SIGTERM or Ctrl-C)")
            worker.run_forever()
            log("stopped; its runs are free for another worker")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _warn_if_changed(engine: Engine, run_id: str) -> None:
    from .engine import definition_hash
    from .workflow_file import read_definition

    try:
        info = engine.store.info(run_id)
    except StoreError:
        return  # resume reports it
    path = info.options.get("path")
    if not path or not os.path.exists(path):
        return
    try:
        current = definition_hash(read_definition(path))
    except WorkflowError:
        current = None
    if info.definition_hash is not None and current != info.definition_hash:
        Console(stderr=True, soft_wrap=True).print(
            f"note: {visible(path)} has changed since run {visible(run_id)} started; the run goes on with the "
            f"definition it started with.", highlight=False, markup=False)


def cmd_status(args, out: Console) -> int:
    store = _existing_store(args)
    if store is None:
        raise UserError(f"no run {args.run_id!r}: there is no flowcore database at {_db_path(args)}")
    if args.node is not None:
        return _status_of_instance(args, store, out)
    if args.item is not None:
        raise UserError("--item needs --node (the node whose item to tell the story of)")
    result = Engine(store=store).status(args.run_id)
    if args.json:
        _emit_json(args, result.to_dict())
    else:
        render_table(result.run_id, result.state, out)
        for line in how_it_continues(result.run_id, result.state, store.driver(args.run_id), time.time(),
                                     store.pending(args.run_id)):
            out.print(visible(line), highlight=False, markup=False, soft_wrap=True)
    return 0


def _status_of_instance(args, store, out: Console) -> int:
    from .story import instance_story, render_story

    story = instance_story(store, args.run_id, args.node, _item_arg(args.item) or ())
    if args.json:
        _emit_json(args, story.to_dict())
    else:
        render_story(story, out)
    return 0


def cmd_runs(args, out: Console) -> int:
    store = _existing_store(args)
    runs = Engine(store=store).runs(status=args.status, workflow=args.workflow, limit=args.limit) \
        if store is not None else []
    if args.json:
        _emit_json(args, runs)
        return 0
    from rich.table import Table

    table = Table(title=f"runs in {shown(store.path if store is not None else _db_path(args))}", title_justify="left")
    for col in ("run_id", "workflow", "status", "started", "took"):
        table.add_column(col)
    for r in runs:
        # a time that is not a number (a store written by hand) is left out, not a traceback
        start, end = (t if type(t) in (int, float) and math.isfinite(t) else None
                      for t in (r["started_at"], r["finished_at"]))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) if start else ""
        took = f"{end - start:.2f}s" if end and start else ""
        table.add_row(shown(r["run_id"]), shown(r["workflow"]), r["status"], started, took)
    out.print(table)
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_validate(args, out: Console) -> int:
    wf = load_workflow(args.file)
    out.print(f"{visible(args.file)}: valid ({_count(len(wf.nodes), 'node')}, {_count(len(wf.edges), 'connection')})",
              highlight=False, markup=False)
    return 0


SIMULATE_VALIDATES_UP_TO = 2_000  # nodes


def cmd_simulate(args, out: Console) -> int:
    trigger = _json_arg(args.trigger, "--trigger") if args.trigger is not None else None
    workflow = load_workflow(args.file)
    options = {"seed": args.seed, "execute": args.execute, "fail_rate": args.fail_rate,
               "late_rate": args.late_rate, "duplicate_rate": args.duplicate_rate,
               # every state checked after every step (O(state) a step: small workflows only)
               "validate": len(workflow.nodes) <= SIMULATE_VALIDATES_UP_TO}
    engine = Engine(runner="simulated", runner_options=options, linger=float("inf"))
    engine.json_only = True  # what a node returns fails it as it would in a stored run (a NaN, a set...)
    result = engine.run(workflow, trigger=trigger, runner="simulated")
    return _print_result(args, result, out)


def cmd_serve(args, out: Console) -> int:
    from .web.commands import cmd_serve as serve
    return serve(args, out, db_path=_db_path, user_error=UserError)


def cmd_report(args, out: Console) -> int:
    from .web.commands import cmd_report as report
    return report(args, out, stored_engine=_stored_engine, user_error=UserError)


COMMANDS = {"serve": cmd_serve, "report": cmd_report, "run": cmd_run, "submit": cmd_submit, "resume": cmd_resume, "cancel": cmd_cancel, "status": cmd_status,
            "runs": cmd_runs, "worker": cmd_worker, "validate": cmd_validate, "simulate": cmd_simulate}


@contextlib.contextmanager
def _json_only_on_stdout(args):
    """With ``--json``, standard output carries the one JSON object (``args.stdout``, written when the
    command is done). Whatever else is written to it meanwhile goes to standard error, at the level
    of the file descriptor: a node's print, an ``os.write(1, ...)``, a child process it starts."""
    args.stdout = sys.stdout
    if not getattr(args, "json", False):
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors to move (an embedding without them): Python-level only
        saved = None
    args.stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        sys.stdout.write(args.stdout.getvalue())
        sys.stdout.flush()


def _columns() -> int:
    """The width of the table when standard output is no terminal: ``COLUMNS`` if set, else 120."""
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else _columns())
    err = Console(stderr=True, soft_wrap=True)
    try:
        with _json_only_on_stdout(args):
            _check_text_args(args)
            code = COMMANDS[args.command](args, out)
    except RunInterrupted as exc:
        err.print(f"flowcore {args.command}: {visible(exc, lines=True)}", highlight=False, markup=False)
        return STORE_FAILED
    except RequestPending as exc:
        err.print(f"flowcore {args.command}: {visible(exc, lines=True)}", highlight=False, markup=False)
        return NOT_YET
    except ClusterUnreachable as exc:
        err.print(f"flowcore {args.command}: {visible(exc, lines=True)}", highlight=False, markup=False)
        return CLUSTER_UNREACHABLE
    except (WorkflowError, RunRefused, StoreError, UserError) as exc:
        err.print(f"flowcore {args.command}: {visible(exc, lines=True)}", highlight=False, markup=False)
        return USAGE
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
