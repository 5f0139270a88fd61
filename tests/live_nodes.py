"""Node functions and helpers for the live-run tests (tests/test_live_cli.py, tests/test_live_soak.py),
which run them in real ``flowcore`` processes: workers, ``run``, ``resume``, ``cancel``.

Every python node here appends ``run_id node attempt pid`` to a marker file when its attempt is
done (the side effect of the attempt), and ``run_id node attempt pid`` to ``<marker>.start`` as it
starts, so a test sees which process ran what, what was in flight, and what ran again.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)


# -- node functions ------------------------------------------------------------------------------

def _line(ctx) -> str:
    name = ctx.node + "".join(f"[{i}]" for i in ctx.item or ())
    return f"{ctx.run_id} {name} {ctx.attempt} {os.getpid()}\n"


def _append(path: str, line: str) -> None:
    # one write of one short line in append mode: lines of several processes never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def work(input, ctx, marker, sleep=0.0, fail_attempts=0):
    """Marks its start, sleeps ``sleep`` seconds (waking early if cancelled), marks that it is done
    and passes its input on; its first ``fail_attempts`` attempts fail instead (after marking)."""
    _append(marker + ".start", _line(ctx))
    if sleep and ctx.wait_cancelled(sleep):
        _append(marker + ".cancelled", _line(ctx))
        raise RuntimeError("cancelled")
    _append(marker, _line(ctx))
    if ctx.attempt <= fail_attempts:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return input


def stubborn(input, ctx, marker, sleep=0.0):
    """Like ``work`` but sleeps through a cancellation (a node that ignores it)."""
    _append(marker + ".start", _line(ctx))
    time.sleep(sleep)
    _append(marker, _line(ctx))
    return input


# -- markers -----------------------------------------------------------------------------------

def marks(path: str) -> list[tuple[str, str, int, int]]:
    """(run_id, node, attempt, pid) of each line of a marker file."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            run_id, node, attempt, pid = line.split()
            out.append((run_id, node, int(attempt), int(pid)))
    return out


# -- workflows and processes -----------------------------------------------------------------

def py(node_id: str, marker: str, fn: str = "work", **params) -> dict:
    return {"id": node_id, "type": "python", "call": f"live_nodes:{fn}", "params": {"marker": marker, **params}}


def write_workflow(directory, definition: dict, filename: str | None = None) -> str:
    path = os.path.join(str(directory), filename or f"{definition['name']}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(definition, f, sort_keys=False)
    return path


def child_env() -> dict:
    """A child process's environment: this folder (for ``live_nodes:...`` calls) and the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, PROJECT, env.get("PYTHONPATH", "")) if p)
    env.pop("FLOWCORE_DB", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def flowcore(*args) -> list:
    """The command line of ``flowcore ARGS``, with the interpreter running the tests."""
    return [sys.executable, "-m", "adapters.cli", *map(str, args)]


def kill_all(procs) -> None:
    """SIGKILL each process that still runs, with whatever it started (its process group; a stopped
    one is continued first), and reap them all."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def wait_for(condition, timeout: float, what: str, every: float = 0.05):
    """Poll ``condition()`` until it returns something true; its value. Fails after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


# -- reading a store from outside ------------------------------------------------------------

def connect(db: str) -> sqlite3.Connection:
    return sqlite3.connect(db, timeout=60)


def run_rows(db: str) -> dict[str, str]:
    """run_id -> status, as the store's summary rows say."""
    if not os.path.exists(db):
        return {}
    conn = connect(db)
    try:
        return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def events(db: str, run_id: str) -> list[tuple[int, dict]]:
    """(batch index, event) of every logged event of the run, in log order."""
    conn = connect(db)
    try:
        rows = conn.execute("SELECT idx, events FROM batches WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
    finally:
        conn.close()
    return [(idx, e) for idx, text in rows for e in json.loads(text)]


def completions(db: str, run_id: str, kind: str = "NodeSucceeded") -> list[tuple[str, int]]:
    """(instance, attempt) of every ``kind`` event the run's log holds."""
    return [(e["node"] + "".join(f"[{i}]" for i in e.get("item") or ()), e["attempt"])
            for _, e in events(db, run_id) if e["type"] == kind]


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


# -- the soak's helper process: answers and cancels from a process that drives nothing of its own ----

def helper(db: str, todo: str, done: str, threads: int = 24) -> None:
    """Carry out the tasks appended to ``todo`` (one JSON object a line) until a line ``stop`` comes;
    append each outcome to ``done``. A task: ``{"id", "op": answer|late|cancel|node_cancel, "run",
    "at" (not before this Unix time), "via": engine|cli, "node", "port", "value"}``. Answers are given
    once the node waits (a refusal saying it does not wait yet is retried); a ``late`` answer is given
    two seconds after the node is seen waiting, past its one-second timeout."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from adapters import Engine

    engine = Engine(db=db)
    lock = threading.Lock()

    def record(task, outcome, detail="", tries=1):
        line = json.dumps({"id": task["id"], "run": task["run"], "op": task["op"], "via": task["via"],
                           "outcome": outcome, "detail": detail[-500:], "tries": tries}) + "\n"
        with lock:
            _append(done, line)

    def wait_until_waiting(task, limit=120.0):
        end = time.time() + limit
        while time.time() < end:
            try:
                nodes = engine.status(task["run"]).to_dict()["nodes"]
            except Exception:  # noqa: BLE001 - being written: look again
                nodes = []
            if any(r["node"] == task["node"] and r["status"] == "waiting" for r in nodes):
                return True
            time.sleep(0.2)
        return False

    def once(task):
        """(outcome, detail): applied, refused, pending or error."""
        op, run = task["op"], task["run"]
        if task["via"] == "cli":
            if op in ("answer", "late"):
                args = ["resume", run, "--node", task["node"], "--input", json.dumps(task["value"]), "--linger", "0"]
                if task.get("port"):
                    args += ["--port", task["port"]]
            else:
                args = ["cancel", run, "--reason", f"soak {op}"] + (["--node", task["node"]] if op == "node_cancel"
                                                                     else [])
            proc = subprocess.run(flowcore(*args, "--db", db), env=child_env(), capture_output=True, text=True,
                                  timeout=120)
            outcome = {0: "applied", 1: "applied", 2: "refused", 3: "pending"}.get(proc.returncode, "error")
            return outcome, f"exit {proc.returncode}: {proc.stderr.strip()}"
        from adapters import RequestPending, RunRefused

        try:
            if op in ("answer", "late"):
                engine.resume(run, node=task["node"], port=task.get("port"), input=task["value"], linger=0.0)
            elif op == "cancel":
                engine.cancel(run, reason=f"soak {op}")
            else:
                engine.cancel(run, node=task["node"], reason=f"soak {op}")
        except RunRefused as exc:
            return "refused", str(exc)
        except RequestPending as exc:
            return "pending", str(exc)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            return "error", f"{type(exc).__name__}: {exc}"
        return "applied", ""

    def carry_out(task):
        try:
            time.sleep(max(0.0, task["at"] - time.time()))
            if task["op"] == "late":
                if not wait_until_waiting(task):
                    record(task, "error", "the node never waited")
                    return
                time.sleep(2.0)
            tries = 0
            end = time.time() + 120
            while True:
                tries += 1
                outcome, detail = once(task)
                if task["op"] == "answer" and outcome == "refused" and "is not waiting for input" in detail \
                        and time.time() < end:
                    time.sleep(0.2)  # not reached yet (or its driver has not logged it yet)
                    continue
                record(task, outcome, detail, tries)
                return
        except Exception as exc:  # noqa: BLE001
            record(task, "error", f"{type(exc).__name__}: {exc}")

    pool = ThreadPoolExecutor(threads)
    offset = 0
    while True:
        with open(todo, "rb") as f:
            f.seek(offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.decode().splitlines():
            if line == "stop":
                pool.shutdown(wait=True)
                return
            pool.submit(carry_out, json.loads(line))
        time.sleep(0.05)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    if sys.argv[1] == "helper":
        helper(*sys.argv[2:5])
