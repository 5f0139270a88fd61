"""Node functions and helpers for the durable-run tests, which run them in real child processes.

Every node appends ``<instance> <attempt> <idempotency key>`` to a marker file as it starts, so a
test can see what ran and what ran twice across a crash. ``write_workflow`` writes the workflows
those tests run, ``flowcore``/``child_env`` start the command, ``snapshot`` reads back everything
a store holds; ``drive_many`` is what each child process of the concurrency test executes, and
``run_killing_itself`` what each child of ``kill_at_every_step``, the crash sweep, does.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def flowcore(*args) -> list:
    """The command line of ``flowcore ARGS`` in a child process."""
    return [sys.executable, "-m", "adapters.cli", *args]


def child_env() -> dict:
    """The environment of a child process: this module and the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, os.path.dirname(HERE), env.get("PYTHONPATH", "")])
    return env


def snapshot(db) -> dict:
    """Everything the store holds, table by table."""
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("runs", "definitions", "batches", "leases")}
    finally:
        conn.close()


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _mark(ctx, marker: str) -> None:
    name = ctx.node + "".join(f"[{i}]" for i in ctx.item or ())
    with open(marker, "a", encoding="utf-8") as f:
        f.write(f"{name} {ctx.attempt} {ctx.idempotency_key}\n")


def passed_on(input, ctx, marker, sleep=0.0):
    """Marks, sleeps, and passes its input on."""
    _mark(ctx, marker)
    time.sleep(sleep)
    return input


def tenfold(input, ctx, marker, sleep=0.0):
    _mark(ctx, marker)
    time.sleep(sleep)
    return input * 10


def total(input, ctx, marker, sleep=0.0):
    _mark(ctx, marker)
    time.sleep(sleep)
    return sum(input)


def marks(marker: str, field: int = 0) -> list[str]:
    """The instances that started, in order (field 1: their attempts, field 2: their idempotency keys)."""
    if not os.path.exists(marker):
        return []
    with open(marker, encoding="utf-8") as f:
        return [line.split()[field] for line in f.read().splitlines()]


def sees_its_start_logged(input, ctx, db):
    """Reads the log from outside the driving process's connection: what had been committed when this ran."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("SELECT events, fingerprint FROM batches WHERE run_id = ?", (ctx.run_id,)).fetchall()
    finally:
        conn.close()
    succeeded = {e["node"] for events, _ in rows for e in json.loads(events) if e["type"] == "NodeSucceeded"}
    started = any(f"StartNode:{ctx.node}" in fingerprint.split("|") for _, fingerprint in rows)
    return {"start_logged": started, "inputs_logged": set(ctx.inputs) <= succeeded}


def fan_workflow(marker: str, sleep: float = 0.05, name: str = "fan") -> dict:
    """begin -> foreach -> tenfold per item -> total; a side branch with a delay; merged at the end."""
    def py(node_id, fn):
        return {"id": node_id, "type": "python", "call": f"durable_nodes:{fn}",
                "params": {"marker": marker, "sleep": sleep}}
    return {
        "name": name,
        "settings": {"max_parallel": 2},
        "nodes": [py("begin", "passed_on"), {"id": "fan", "type": "foreach"}, py("work", "tenfold"),
                  py("join", "total"), {"id": "pause", "type": "delay", "seconds": 0.2}, py("side", "passed_on"),
                  {"id": "end", "type": "merge"}],
        "connections": [{"from": "begin", "to": "fan"}, {"from": "fan", "to": "work", "port": "iteration"},
                        {"from": "work", "to": "join"}, {"from": "begin", "to": "pause"},
                        {"from": "pause", "to": "side"}, {"from": "join", "to": "end"},
                        {"from": "side", "to": "end"}],
    }


def write_workflow(directory, definition: dict, filename: str = "wf.yaml") -> str:
    path = os.path.join(str(directory), filename)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(definition, f, sort_keys=False)
    return path


def batch_count(db: str, run_id: str) -> int:
    """How many step batches of ``run_id`` are committed (0 while the database does not exist yet)."""
    if not os.path.exists(db):
        return 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM batches WHERE run_id = ?", (run_id,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # the tables are being created
    finally:
        conn.close()


def logged_events(db: str, run_id: str) -> list[dict]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("SELECT events FROM batches WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
    finally:
        conn.close()
    return [e for (events,) in rows for e in json.loads(events)]


def drive_many(db: str, prefix: str, count: int) -> None:
    """Drive ``count`` runs of a small fan-out at once (one thread each) in one process; print their statuses."""
    from concurrent.futures import ThreadPoolExecutor

    from adapters import Engine

    marker = os.path.join(os.path.dirname(os.path.abspath(db)), f"{prefix}.marks")
    definition = fan_workflow(marker, sleep=0.0, name="many")
    definition["nodes"][4]["seconds"] = 0.01
    engine = Engine(runner="serial", db=db)

    def one(i):
        return engine.run(definition, trigger=[i, i + 1, i + 2], run_id=f"{prefix}-{i}")

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    print(json.dumps({r.run_id: r.status for r in results}))


def run_killing_itself(cwd: str, argv: list, batches: int, before: bool) -> None:
    """What a child process of the crash sweep executes: ``flowcore ARGV`` in ``cwd``, which SIGKILLs
    its own process once ``batches`` steps of the run are committed: right after that commit (none
    of that step's commands carried out), or, with ``before``, just before the next commit (that
    step's commands carried out, the completions they brought not logged). Exits as the command
    would if the run ends first."""
    import signal

    from adapters.cli import main
    from adapters.store import SqliteStore

    committed = 0

    def counted(write):
        def written(self, *args, **kwargs):
            nonlocal committed
            if before and committed == batches:
                os.kill(os.getpid(), signal.SIGKILL)
            write(self, *args, **kwargs)
            committed += 1
            if not before and committed == batches:
                os.kill(os.getpid(), signal.SIGKILL)
        return written

    SqliteStore.create_run = counted(SqliteStore.create_run)
    SqliteStore.append = counted(SqliteStore.append)
    os.chdir(cwd)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os._exit(main(argv))


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    drive_many(sys.argv[1], sys.argv[2], int(sys.argv[3]))


def comparable(result: dict) -> dict:
    """The final records minus times, which differ from run to run."""
    nodes = sorted((r["node"], r["item"] or [], r["status"], r["attempts"], json.dumps(r["ports"]), str(r["error"]))
                   for r in result["nodes"])
    return {"status": result["status"], "nodes": nodes, "sequence": sorted(result["sequence"])}


def finished_before(db: str, run_id: str) -> set:
    """Instances whose success was committed to the log."""
    done = set()
    for e in logged_events(db, run_id):
        if e["type"] == "NodeSucceeded":
            done.add(e["node"] + "".join(f"[{i}]" for i in e["item"]))
    return done


def forked():
    """Child processes forked from a server that has flowcore imported: milliseconds each, where a
    new interpreter takes half a second (and forking this process, which may have threads, is unsafe)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["adapters.cli", "durable_nodes"])
    return context


def kill_at_every_step(directory, path: str, db: str, trigger, runner: str, marker: str, reference: dict) -> int:
    """The crash sweep. ``reference`` is the ``--json`` object of run ``whole`` of ``path`` in ``db``;
    for every step k of it, a run of the same workflow is SIGKILLed once k steps are committed (right
    after that commit, and just before the next one: ``run_killing_itself``), then resumed (or, if it
    ended before the kill point, read back). Each must end with the reference's records, and no
    instance whose completion was logged before the kill may run again (the marker file tells).
    Returns how many of the kill points left a run to resume."""
    from adapters import Engine

    steps = batch_count(db, "whole")
    context = forked()
    resumed = 0
    for k in range(1, steps + 1):
        for before in (False, True):
            run_id = f"k{k}{'-before-next' if before else ''}"
            child = context.Process(target=run_killing_itself, args=(
                str(directory), ["run", path, "--run-id", run_id, "--trigger", json.dumps(trigger), "--runner",
                                 runner, "--db", db], k, before))
            child.start()
            child.join(60)
            if child.exitcode is None:
                child.kill()
                raise AssertionError(f"{run_id}: the run neither ended nor was killed within 60 s")
            where = f"{runner} runner, killed {'before the commit after' if before else 'after'} step {k} of {steps}"
            finished = finished_before(db, run_id)
            ran = len(marks(marker))
            engine = Engine(db=db)
            if engine.store.info(run_id).status == "running":
                assert child.exitcode == -signal.SIGKILL, where
                result = engine.resume(run_id).to_dict()
                resumed += 1
            else:  # the run ended before the kill point (the thread runner may need fewer steps), or at it
                result = engine.status(run_id).to_dict()
            assert comparable(result) == comparable(reference), where
            again = finished & set(marks(marker)[ran:])
            assert not again, f"{where}: {again} ran again"
    print(f"{runner} runner: {steps} steps, {resumed} of {2 * steps} kill points left a run to resume", file=sys.stderr)
    return resumed
