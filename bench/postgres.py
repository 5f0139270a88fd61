"""Section 13: the PostgreSQL store. A run's log on the server against in memory and SQLite; a fleet
of workers sharing one store.

- Store: the 10,000-node layered no-op DAG of ``overhead`` through ``Engine(db=URL).run`` (a fresh
  schema per run, dropped at the end of the section), beside ``Engine(db=None)`` and
  ``Engine(db=path)`` (SQLite, a fresh file per run), interleaved, on the serial and thread runners.
  PostgreSQL runs twice: with the server's own commit settings (``synchronous_commit`` on: a step
  is on disk before its commands run), and with ``synchronous_commit=off`` given in the store's URL
  (a commit returns before the server's disk has it: see the README's "PostgreSQL" section).
  Each stored run must be found succeeded in its own schema, and a connection of each URL must show
  the setting it names (checked after the timing, which covers making the schema and the run).
- Commit floor: what committing each step costs on this server with nothing of flowcore's around it.
  The batches a run of each runner logged (one untimed PostgreSQL run before the rounds) are
  inserted again, already encoded, one ``INSERT`` per batch in autocommit (the server's commit
  settings), by a bare psycopg loop into a fresh table, timed in the same rounds. In-memory time
  plus that is the least a run that commits every step before carrying out its commands can take
  here: the ratio no store with write-ahead steps can beat on this machine.
- Workers: ``RUNS`` runs of the 10-node DAG of ``live`` submitted to a fresh schema (untimed), then
  driven by one ``flowcore worker --db URL --once`` process, or by four started together; timed from
  starting the processes until they exit, every run succeeded and reported by one worker.

The server is ``FLOWCORE_BENCH_POSTGRES``, else ``FLOWCORE_TEST_POSTGRES``, else the project's
machines' own (``DEFAULT_SERVER``). Without a reachable server the section says so and measures nothing.
"""
from __future__ import annotations

import os
import tempfile
import uuid

from adapters import Engine
from adapters.postgres_store import url_with_settings
from adapters.store import encode_batch

from . import live
from .durability import SIZE, QUICK_SIZE, FreshDb
from .engine_runs import run_workflow
from .graphs import layered_dag
from .measure import interleaved
from .table import Check, Section, ms, ratio

SERVER_VARIABLES = ("FLOWCORE_BENCH_POSTGRES", "FLOWCORE_TEST_POSTGRES")
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
RUNNERS = ("serial", "thread")
STORES = ("in memory", "SQLite", "PostgreSQL", "PostgreSQL, synchronous_commit=off")
FLOOR = "bare commits of the run's batches"
WORKERS = (1, 4)
RUNS, QUICK_RUNS = live.RUNS, live.QUICK_RUNS


def server() -> str:
    return next((os.environ[v] for v in SERVER_VARIABLES if os.environ.get(v)), DEFAULT_SERVER)


class FreshSchemas:
    """A store URL in a new schema per call (with any server ``settings`` its connections start with);
    every schema made is dropped at the end."""

    def __init__(self, url: str):
        import psycopg

        self.url = url
        self.admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
        self.made: list[str] = []  # the schemas
        self.given: list[str] = []  # the URLs

    def __call__(self, **settings: str) -> str:
        schema = f"flowcore_bench_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE SCHEMA "{schema}"')
        self.made.append(schema)
        self.given.append(url_with_settings(self.url, search_path=schema, **settings))
        return self.given[-1]

    def setting(self, url: str, name: str) -> str:
        import psycopg

        with psycopg.connect(url) as conn:
            return conn.execute(f"SHOW {name}").fetchone()[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for schema in self.made:
            self.admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.admin.close()


class WrongStore(RuntimeError):
    pass


def stored_in(url: str, run_id: str) -> None:
    """The run is in the store at ``url``, succeeded (else the contender did not do what it says)."""
    if Engine(db=url).store.info(run_id).status != "succeeded":
        raise WrongStore(f"run {run_id} is not recorded succeeded in {url}")


def store_contenders(workflow, fresh_db, schemas, made: list) -> dict:
    """The store rows' contenders. A PostgreSQL one is timed making its schema and running (as SQLite's
    is timed from a fresh file's path), and puts (its URL, the settings it names, its run's id) in
    ``made`` for ``check_made`` once the timing is over: connecting again to read the run back (35 ms
    for a 10,000-node definition, 3 to 7% of the in-memory run) is the check's, not the store's."""
    def on_postgres(runner, **settings):
        url = schemas(**settings)
        result = run_workflow(workflow, runner, db=url)
        made.append((url, settings, result.run_id))
        return result  # freed after the clock stops, as the other contenders' are

    contenders = {}
    for r in RUNNERS:
        contenders[(STORES[0], r)] = lambda r=r: run_workflow(workflow, r)
        contenders[(STORES[1], r)] = lambda r=r: run_workflow(workflow, r, db=fresh_db())
        contenders[(STORES[2], r)] = lambda r=r: on_postgres(r)
        contenders[(STORES[3], r)] = lambda r=r: on_postgres(r, synchronous_commit="off")
    return contenders


def check_made(schemas, made: list) -> None:
    """Each PostgreSQL contender's run is in its own schema, succeeded, and a connection of its URL
    shows the settings it names (else it did not do what its row says: ``WrongStore``)."""
    for url, settings, run_id in made:
        for name, value in settings.items():
            if schemas.setting(url, name) != value:
                raise WrongStore(f"a connection of {url} does not have {name} = {value}")
        stored_in(url, run_id)


def logged_batches(workflow, runner: str, schemas) -> list[str]:
    """The batches one run of ``workflow`` on ``runner`` logs in PostgreSQL, encoded as the store writes them."""
    url = schemas()
    result = run_workflow(workflow, runner, db=url)
    _, batches, _ = Engine(db=url).store.load(result.run_id)
    return [encode_batch(batch) for batch in batches]


def commit_floor(schemas, batches: list[str]):
    """A contender: ``batches`` inserted into a fresh table, one autocommit ``INSERT`` (one commit) each."""
    import psycopg

    def commit_each():
        with psycopg.connect(schemas(), autocommit=True) as conn:
            conn.execute("CREATE TABLE batches (run_id text NOT NULL, idx integer NOT NULL, events text NOT NULL, "
                         "fingerprint text NOT NULL, PRIMARY KEY (run_id, idx))")
            for i, payload in enumerate(batches):
                conn.execute("INSERT INTO batches (run_id, idx, events, fingerprint) VALUES (%s, %s, %s, %s)",
                             ("run", i, payload, ""))
    return commit_each


def store_section(cfg, fresh_db, schemas):
    n = QUICK_SIZE if cfg.quick else SIZE
    workflow = layered_dag(n).workflow()
    made: list = []
    contenders = store_contenders(workflow, fresh_db, schemas, made)
    steps = {}
    for r in RUNNERS:
        batches = logged_batches(workflow, r, schemas)
        steps[r] = len(batches)
        contenders[(FLOOR, r)] = commit_floor(schemas, batches)
    t = interleaved(contenders, cfg.repeats)
    check_made(schemas, made)
    rows, checks = [], []
    for r in RUNNERS:
        memory, sqlite, pg, pg_async, floor = (t[(s, r)] for s in (*STORES, FLOOR))
        rows.append([r, ms(memory), ms(sqlite), ms(pg), ms(pg_async), f"{steps[r]:,}", ms(floor),
                     ratio(pg / memory), ratio((memory + floor) / memory), ratio(pg / sqlite),
                     ratio(pg_async / memory)])
        checks.append(Check(f"{r}: PostgreSQL / in-memory, {n:,}-node no-op DAG", pg / memory, 2.0))
    header = ["runner", "in-memory ms", "SQLite ms", "PG ms", "PG async ms", "steps", "commits ms", "PG/memory",
              "floor/memory", "PG/SQLite", "PG async/memory"]
    caption = (f"Store: {n:,}-node layered no-op DAG, Engine.run, median of {cfg.repeats} interleaved repeats; "
               f"PG: the server's commit settings; PG async: synchronous_commit=off in the URL; commits: the "
               f"run's logged batches (one per step) inserted again by a bare psycopg loop, one commit each; "
               f"floor: in-memory + commits, the least a run committing each step can take here")
    return (caption, header, rows), checks


def workers_section(cfg, schemas, logs: str):
    n = QUICK_RUNS if cfg.quick else RUNS
    workflow = live.ten_node_workflow()
    contenders = {f"{k} worker{'s' if k > 1 else ''}": (lambda k=k: live.worker_drive(schemas, n, workflow, k, logs))
                  for k in WORKERS}
    t, cpu, last = live.prepared_interleaved(contenders, cfg.repeats)
    one = t[next(iter(t))]
    rows = [[name, ms(t[name]), f"{n / t[name]:.0f}", ratio(one / t[name]), f"{cpu[name]:.2f}",
             " + ".join(str(last[name].drives(pid)) for pid in last[name].by_worker)] for name in t]
    caption = (f"Workers: {n:,} runs of a 10-node no-op DAG on one PostgreSQL store, `flowcore worker --once` "
               f"processes started together, timed until they exit; median of {cfg.repeats} interleaved repeats; "
               f"CPU s: this process's and its children's (the server's is not counted)")
    return (caption, ["contender", "ms", "runs/s", "x 1 worker", "CPU s", "runs each drove (last repeat)"], rows)


def run(cfg) -> Section:
    url = server()
    title = "13. PostgreSQL store (issue 13)"
    try:
        schemas = FreshSchemas(url)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it: say so, measure nothing
        return Section(title, [f"Not measured: no PostgreSQL server at {url} ({exc}); set "
                               f"{SERVER_VARIABLES[0]} to one."], [], [])
    with schemas, FreshDb() as fresh_db, tempfile.TemporaryDirectory(prefix="flowcore-bench-logs-") as logs:
        store_table, checks = store_section(cfg, fresh_db, schemas)
        workers_table = workers_section(cfg, schemas, logs)
    notes = [f"Server: {url} (a schema per run, dropped afterwards), on this machine: its CPU is shared "
             f"with the contenders. Thread runner max_parallel 8; workers max_runs 8."]
    return Section(title, notes, [store_table, workers_table], checks)
