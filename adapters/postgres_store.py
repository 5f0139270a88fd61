"""The PostgreSQL store: the contract of ``SqliteStore`` in a database that workers on several hosts share.

Choose it with ``--db postgresql://USER@HOST:PORT/DATABASE`` (or ``FLOWCORE_DB``, or
``Engine(db=...)``; ``adapters.store.open_store`` picks the store by the address). Its tables go into
the connection's current schema, so one database can hold several stores, each in a schema of its
own: ``postgresql://HOST/DB?options=-csearch_path%3Dmyschema`` (the schema must exist). It needs the
optional ``psycopg`` package: ``pip install 'flowcore[postgres]'``.

The same methods, with the same meaning, as ``SqliteStore``; one test suite runs on both
(tests/test_durable_store.py). Where PostgreSQL differs:

- *Which store is this.* A flowcore store is a schema holding the table ``flowcore_schema``, whose
  one row is the schema version, the number of ``MIGRATIONS`` applied (a list of its own, append
  only, like SQLite's). A schema without tables is made a store only by a command that starts a run
  (``create``); opened to read, it has no runs. A schema holding other tables is refused, untouched.
- *Leases* follow ``adapters.leases`` (a driver on this host is checked by pid, on another host by
  its heartbeat), but the heartbeat and the time it is compared with are the database server's
  clock: hosts whose clocks disagree still agree on when a lease has run out.
- *Fencing.* ``append`` locks the run's lease row (``FOR KEY SHARE``) while it checks the token and
  writes; ``acquire`` takes the row ``FOR UPDATE``. A takeover thus waits for a step being logged,
  and a step logged after a takeover finds another token and is refused (``LeaseLost``). A process
  frozen inside a transaction would keep that lock: the server ends a session that stays idle in a
  transaction for longer than a lease (``idle_in_transaction_session_timeout``).
- *Wakeups.* A submit, a request written to an inbox and a run let go unfinished ``NOTIFY`` the
  store's channel (``flowcore.<schema>``) when their transaction commits; ``wait_for_work`` waits
  for one (a worker wakes at once instead of at its next poll). Timers falling due and leases
  running out are announced by nobody: a worker still polls for those.
- *Connections.* A small pool, shared by the threads of the process (a worker drives several runs
  at once, each with a heartbeat thread); each operation takes a connection for its transaction
  only. Reads of one statement run in autocommit; ``load`` reads in one repeatable-read transaction.

Everything is text, as in SQLite (events, definitions and snapshots are JSON and ``adapters.snapshots``
text, never pickles): the text a definition was hashed as is the text read back.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import urllib.parse

from .leases import LEASE_SECONDS, Lease, lease_blocks, lease_live, lease_message
from .store import (ENDED, LeaseHeld, LeaseLost, NotAFlowcoreStore, Request, RunExists, RunInfo,
                    Snapshot, SqlStatements, StoreError, StoreUnavailable, UnknownRun, canonical_json, decode_event,
                    encode_batch, text_hash)

try:
    import psycopg
    from psycopg import errors, sql
except ImportError as exc:  # not installed, or installed without a libpq to use
    raise StoreUnavailable(f"a postgresql:// store needs the optional 'psycopg' package ({exc}); install it "
                           f"with: pip install 'flowcore[postgres]'") from None

APPLICATION_LOCK = 0x666C6F77  # "flow": the advisory lock a migration holds (one at a time per database)
POOL_SIZE = 8  # connections a process keeps open to one store, at most (PostgreSQL allows 100 by default)
_NOW = "extract(epoch from clock_timestamp())::double precision"  # the server's clock, for leases

# Migration i (from 1) takes a store from version i - 1 to version i. Append only: never edit one
# that shipped. A new store is an empty schema with every migration applied.
MIGRATIONS = (
    # 1: the layout of SqliteStore at its schema version 2 (runs, queued or not, with their trigger
    # and when a run no process drives next needs one; definitions apart; the log of batches;
    # snapshots as text; leases; the inbox of answers and cancels).
    """
    CREATE TABLE flowcore_schema (version integer NOT NULL);
    INSERT INTO flowcore_schema (version) VALUES (0);
    CREATE TABLE runs (
        run_id text PRIMARY KEY, workflow text NOT NULL, definition_hash text NOT NULL, options text NOT NULL,
        status text NOT NULL, started_at double precision, finished_at double precision,
        created double precision NOT NULL, trigger text, wake_at double precision);
    CREATE INDEX runs_status ON runs (status, wake_at);
    CREATE INDEX runs_queue ON runs (status, created, run_id);
    CREATE INDEX runs_created ON runs (created, run_id);
    CREATE INDEX runs_workflow ON runs (workflow, created);
    CREATE TABLE definitions (run_id text PRIMARY KEY, definition text NOT NULL);
    CREATE TABLE batches (
        run_id text NOT NULL, idx integer NOT NULL, events text NOT NULL, fingerprint text NOT NULL,
        PRIMARY KEY (run_id, idx));
    CREATE TABLE snapshots (
        run_id text PRIMARY KEY, idx integer NOT NULL, version text NOT NULL, data text NOT NULL);
    CREATE TABLE leases (
        run_id text PRIMARY KEY, pid integer NOT NULL, host text NOT NULL, token text NOT NULL,
        heartbeat double precision NOT NULL);
    CREATE TABLE inbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id text NOT NULL, at double precision NOT NULL,
        kind text NOT NULL, body text NOT NULL, state text NOT NULL DEFAULT 'pending', reason text,
        done_at double precision);
    CREATE INDEX inbox_pending ON inbox (run_id) WHERE state = 'pending';
    CREATE INDEX inbox_run ON inbox (run_id, seq);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def url_with_settings(url: str, **settings: str) -> str:
    """``url`` whose connections start with these server settings (libpq's ``options``, ``-c name=value``),
    added to any it names already: ``url_with_settings(url, search_path="mine")`` is the store in the
    schema ``mine``; ``synchronous_commit="off"`` trades the last moment of commits, should the server
    crash, for faster steps (see the README)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    given = " ".join(v for k, v in query if k == "options")
    options = " ".join([given, *(f"-c{name}={value}" for name, value in settings.items())]).strip()
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def shown_url(url: str) -> str:
    """The address without its password (for messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class _Pool:
    """At most ``size`` connections, each used by one thread at a time, kept open between uses."""

    def __init__(self, connect, size: int):
        self._connect = connect
        self._idle: list = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self.closed = False

    @contextlib.contextmanager
    def conn(self):
        self._slots.acquire()
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
        finally:
            if conn is not None:
                reusable = (not conn.closed and not conn.broken
                            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE)
                with self._lock:
                    if reusable and not self.closed:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresStore(SqlStatements):
    """A store in a PostgreSQL schema (see the module's docstring)."""

    durable = True
    P = "%s"

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.path = shown_url(url)  # what messages call the store
        self.create = create
        self.empty = False  # a schema without tables opened without ``create``: no runs, nothing written
        self._pool = _Pool(self._connect, POOL_SIZE)
        self._listen_lock = threading.Lock()
        self._listener = None
        try:
            with self._pool.conn() as conn:
                self.schema = self._prepare(conn)
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"{self.path}: cannot use this PostgreSQL database ({_said(exc)})") from None
        except BaseException:
            self._pool.close()
            raise
        # one channel per store: stores in other schemas of the database do not wake this one's workers
        channel = f"flowcore.{self.schema or ''}"
        self.channel = channel if len(channel.encode()) < 60 else "flowcore." + hashlib.sha256(
            channel.encode()).hexdigest()[:32]

    def _connect(self):
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=30)
        # a process frozen inside a transaction (SIGSTOP, a paused VM) would hold the run's lease row
        # locked, and keep a takeover waiting, for as long as it stays frozen: the server ends such a
        # session once it has outlived the lease, and the process finds its connection gone
        conn.execute(f"SET idle_in_transaction_session_timeout = {int(LEASE_SECONDS * 1000)}")
        return conn

    # -- what the schema is -------------------------------------------------------------------

    def _prepare(self, conn) -> str | None:
        """Make the current schema a flowcore store of this version, or refuse it; its name."""
        schema, kind, version = _kind(conn)
        if schema is None:
            if self.create:
                raise StoreError(f"{self.path}: no schema to keep the store in (the search_path names none that "
                                 f"exists): create it first (CREATE SCHEMA ...), or leave search_path out")
            self.empty = True
            return None
        if kind == "empty" and not self.create:
            self.empty = True
            return schema
        if kind == "other":
            raise NotAFlowcoreStore(f"{self.path} (schema {schema}) is not a flowcore store: it holds tables of "
                                    f"something else; flowcore left it as it is: give the store a database or "
                                    f"schema of its own (--db or FLOWCORE_DB)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} is a flowcore store of schema version {version}, made by a newer "
                             f"flowcore than this one (which knows versions up to {SCHEMA_VERSION}); use that one")
        if kind == "empty" or version < SCHEMA_VERSION:
            self._migrate(conn)
        return schema

    def _migrate(self, conn) -> None:
        """Bring the store to SCHEMA_VERSION in one transaction (another process may be doing the same:
        the first to take the advisory lock does it, the others find it done)."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPLICATION_LOCK,))
            _, kind, version = _kind(conn)
            if kind == "other":
                raise NotAFlowcoreStore(f"{self.path} is not a flowcore store")
            for script in MIGRATIONS[version:]:
                conn.execute(script)
            conn.execute("UPDATE flowcore_schema SET version = %s", (SCHEMA_VERSION,))

    # -- reading and writing ------------------------------------------------------------------

    def _write(self, fn):
        """``fn(conn)`` in one transaction; what it returns."""
        if self.empty:
            raise StoreError(f"{self.path} holds no flowcore store yet; only a command that starts a run makes one")
        try:
            with self._pool.conn() as conn, conn.transaction():
                return fn(conn)
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: {_said(exc)}") from None

    def _read(self, query: str, args=()) -> list:
        if self.empty:
            return []
        try:
            with self._pool.conn() as conn:
                return conn.execute(query, args).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: {_said(exc)}") from None

    def create_run(self, info: RunInfo, events, fingerprint: str) -> None:
        """Record a new run together with its first batch, in one transaction (a queued run: with none,
        and the workers hear of it)."""
        payload = encode_batch(events)
        text = info.definition_text or canonical_json(info.definition)
        dhash = info.definition_hash or text_hash(text)

        def insert(conn):
            try:
                conn.execute("INSERT INTO runs (run_id, workflow, definition_hash, options, status, started_at, "
                             "finished_at, created, trigger) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                             (info.run_id, info.workflow, dhash, json.dumps(info.options, default=str),
                              info.status, info.started_at, info.finished_at, time.time(),
                              json.dumps(info.trigger)))
            except errors.UniqueViolation:
                raise RunExists(f"a run with id {info.run_id!r} already exists in {self.path}") from None
            conn.execute("INSERT INTO definitions (run_id, definition) VALUES (%s, %s)", (info.run_id, text))
            if events:
                conn.execute("INSERT INTO batches (run_id, idx, events, fingerprint) VALUES (%s, %s, %s, %s)",
                             (info.run_id, 0, payload, fingerprint))
            if info.status == "queued":
                self._notify(conn, info.run_id)
        self._write(insert)

    def append(self, run_id: str, index: int, events, fingerprint: str, summary: dict, done=(), lease=None) -> None:
        """Log a step's events, in one transaction with the run's summary (when it changed) and the
        marks of the inbox requests the step applied or refused (``done``: (seq, state, reason)).
        With ``lease``: only while the run's lease is that one (fencing: ``LeaseLost``); the lease
        row stays locked until the step is logged, so no takeover comes in between."""
        query, args = self._append_statement(run_id, index, encode_batch(events), fingerprint, summary, done, lease)
        if self.empty:
            raise StoreError(f"{self.path} holds no flowcore store yet; only a command that starts a run makes one")
        try:
            with self._pool.conn() as conn:
                (logged,) = conn.execute(query, args).fetchone()
        except errors.UniqueViolation:
            raise StoreError(f"run {run_id!r}: step {index} was already logged by another process") from None
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: {_said(exc)}") from None
        if not logged:
            raise LeaseLost(f"run {run_id!r}: this process no longer holds the run's lease; another took it over")

    @classmethod
    def _append_statement(cls, run_id, index, payload, fingerprint, summary, done, lease) -> tuple[str, list]:
        """``append`` as one statement (its own transaction, in autocommit): the data-modifying parts
        of a WITH query, each done only while the lease is held, the first locking the lease row
        (``FOR KEY SHARE``) until the statement ends. It returns whether the batch was logged (False:
        the lease was lost, and nothing was written). One statement, not a transaction of four, because a
        step is logged before its commands are carried out, so every step waits for it: 0.41 ms a step
        against 0.77 (loopback server, synchronous commit), 0.20 against 0.58 without it."""
        held, args = ("SELECT 1 FROM leases WHERE run_id = %s AND token = %s FOR KEY SHARE",
                      [run_id, lease.token]) if lease is not None else ("SELECT 1", [])
        parts = ["logged AS (INSERT INTO batches (run_id, idx, events, fingerprint) "
                 "SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM held) RETURNING 1)"]
        args += [run_id, index, payload, fingerprint]
        if summary:
            cols, values = cls._summary_columns(summary)
            parts.append(f"summary AS (UPDATE runs SET {cols} WHERE run_id = %s AND EXISTS (SELECT 1 FROM held))")
            args += [*values, run_id]
        if done:
            rows = ", ".join("(%s::bigint, %s, %s)" for _ in done)
            parts.append("marks AS (UPDATE inbox SET state = v.state, reason = v.reason, done_at = %s "
                         f"FROM (VALUES {rows}) AS v (seq, state, reason) "
                         "WHERE inbox.seq = v.seq AND EXISTS (SELECT 1 FROM held))")
            args += [time.time(), *(x for mark in done for x in mark)]
        return f"WITH held AS ({held}), {', '.join(parts)} SELECT count(*) > 0 FROM logged", args

    @staticmethod
    def _fence(conn, run_id: str, lease) -> None:
        """Inside a write's transaction: ``LeaseLost`` unless ``lease`` (when given) is the run's; the
        lease row stays locked until the transaction ends, so no takeover comes in between."""
        if lease is not None and conn.execute("SELECT 1 FROM leases WHERE run_id = %s AND token = %s FOR KEY SHARE",
                                              (run_id, lease.token)).fetchone() is None:
            raise LeaseLost(f"run {run_id!r}: this process no longer holds the run's lease; another took it over")

    def _notify(self, conn, run_id: str) -> None:
        """Tell the workers listening that a run may need a driver (sent when the transaction commits)."""
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, run_id))

    # -- the inbox ----------------------------------------------------------------------------

    def post(self, run_id: str, kind: str, body: dict, at: float) -> int:
        """Write a request to the run's inbox; its sequence number (``UnknownRun`` for no such run)."""
        def insert(conn):
            if conn.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,)).fetchone() is None:
                raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
            seq = conn.execute("INSERT INTO inbox (run_id, at, kind, body) VALUES (%s, %s, %s, %s) RETURNING seq",
                               (run_id, at, kind, json.dumps(body))).fetchone()[0]
            self._notify(conn, run_id)
            return seq
        if self.empty:
            raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
        return self._write(insert)

    def due_runs(self, now: float, me: Lease, limit: int, skip=()) -> list[str]:
        """Runs that need a driver now, oldest first, at most ``limit``, none of ``skip``: queued runs,
        runs with something in their inbox, runs whose next timer is due (by ``now``, the clock the
        timers were set by), and runs left ``running`` by a driver that is gone (the lease rules, by
        the server's clock). A run a live process drives is never among them."""
        # as in SQLite: each kind of need read from an index, oldest first, a page at a time (a backlog
        # of queued runs is not read whole to start a few of them); here in one query
        page = limit + len(skip) + 32
        while True:
            rows = self._read(
                f"SELECT c.run_id, l.pid, l.host, l.token, l.heartbeat, {_NOW} FROM ("
                "  (SELECT created, run_id FROM runs WHERE status = 'queued' ORDER BY created, run_id LIMIT %(page)s)"
                "  UNION (SELECT created, run_id FROM runs WHERE status = 'running' "
                "         ORDER BY created, run_id LIMIT %(page)s)"
                "  UNION (SELECT created, run_id FROM runs WHERE status = 'waiting' AND wake_at <= %(now)s "
                "         ORDER BY created, run_id LIMIT %(page)s)"
                "  UNION (SELECT created, run_id FROM runs r WHERE status NOT IN ('succeeded', 'failed', 'cancelled') "
                "         AND EXISTS (SELECT 1 FROM inbox i WHERE i.run_id = r.run_id AND i.state = 'pending') "
                "         ORDER BY created, run_id LIMIT %(page)s)"
                ") c LEFT JOIN leases l USING (run_id) ORDER BY c.created, c.run_id", {"page": page, "now": now})
            out = []
            for run_id, pid, host, token, heartbeat, server_now in rows:
                if run_id in skip or (token is not None and lease_blocks(Lease(pid=pid, host=host, token=token),
                                                                         heartbeat, me, server_now)):
                    continue
                out.append(run_id)
                if len(out) >= limit:
                    return out
            if len(rows) < page:  # no part was cut short: that was every candidate
                return out
            page *= 4  # every candidate of a full page was taken: look further

    def next_wake(self) -> float | None:
        """The earliest time a run no process drives has a timer due (a worker sleeps until then)."""
        rows = self._read("SELECT min(wake_at) FROM runs WHERE status = 'waiting'")
        return rows[0][0] if rows else None

    def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for word that a run may need a driver (a run submitted, a
        request written to an inbox, a run let go unfinished); whether some came. Word sent while
        nobody waited is kept for the next call (the listening connection stays open)."""
        with self._listen_lock:
            try:
                if self._listener is None or self._listener.closed:
                    listener = self._connect()
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._listener = listener
                heard = False
                for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                    heard = True
                if heard:  # more word queued: one wakeup is enough for all of it
                    for _ in self._listener.notifies(timeout=0):
                        pass
                return heard
            except psycopg.Error as exc:
                self._close_listener()
                raise StoreError(f"{self.path}: listening for work failed ({_said(exc)})") from None

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def info(self, run_id: str) -> RunInfo:
        if self.empty:
            raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
        try:
            with self._pool.conn() as conn:
                return self._info(conn, run_id)
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: {_said(exc)}") from None

    def _info(self, conn, run_id: str) -> RunInfo:
        row = conn.execute("SELECT r.workflow, d.definition, r.definition_hash, r.options, r.status, r.started_at, "
                           "r.finished_at, r.trigger, r.wake_at FROM runs r JOIN definitions d USING (run_id) "
                           "WHERE run_id = %s", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
        workflow, text, dhash, options, status, started, finished, trigger, wake_at = row
        try:
            definition, options = json.loads(text), json.loads(options)
            trigger = None if trigger is None else json.loads(trigger)
        except ValueError as exc:
            raise StoreError(f"{self.path}: the stored definition of run {run_id!r} is corrupt ({exc})") from None
        return RunInfo(run_id=run_id, workflow=workflow, definition=definition, definition_hash=dhash,
                       options=options, status=status, started_at=started, finished_at=finished,
                       trigger=trigger, wake_at=wake_at, definition_text=text)

    def load(self, run_id: str, since: int = 0):
        """(info, batches, fingerprints) from step ``since`` on, read in one repeatable-read transaction:
        a consistent view of a run being driven."""
        if self.empty:
            raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
        try:
            with self._pool.conn() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                info = self._info(conn, run_id)
                rows = conn.execute("SELECT events, fingerprint FROM batches WHERE run_id = %s AND idx >= %s "
                                    "ORDER BY idx", (run_id, since)).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self.path}: {_said(exc)}") from None
        try:
            batches = [[decode_event(e) for e in json.loads(events)] for events, _ in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path}: the event log of run {run_id!r} is corrupt ({exc})") from None
        return info, batches, [f for _, f in rows]

    def save_snapshot(self, run_id: str, snapshot: Snapshot) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT INTO snapshots (run_id, idx, version, data) VALUES (%s, %s, %s, %s) ON CONFLICT (run_id) "
            "DO UPDATE SET idx = EXCLUDED.idx, version = EXCLUDED.version, data = EXCLUDED.data",
            (run_id, snapshot.index, snapshot.version, snapshot.data)))

    def acquire(self, run_id: str, me: Lease) -> None:
        def take(conn):
            for _ in range(3):
                row = conn.execute(f"SELECT pid, host, token, heartbeat, {_NOW} FROM leases WHERE run_id = %s "
                                   "FOR UPDATE", (run_id,)).fetchone()
                if row is None:
                    inserted = conn.execute(
                        f"INSERT INTO leases (run_id, pid, host, token, heartbeat) VALUES (%s, %s, %s, %s, {_NOW}) "
                        "ON CONFLICT (run_id) DO NOTHING", (run_id, me.pid, me.host, me.token)).rowcount
                    if inserted:
                        return
                    continue  # another process took it meanwhile: weigh its lease
                held = Lease(pid=row[0], host=row[1], token=row[2])
                if lease_blocks(held, row[3], me, row[4]):
                    raise LeaseHeld(lease_message(run_id, held))
                conn.execute(f"UPDATE leases SET pid = %s, host = %s, token = %s, heartbeat = {_NOW} "
                             "WHERE run_id = %s", (me.pid, me.host, me.token, run_id))
                return
            raise LeaseHeld(f"run {run_id!r} is being taken by other processes; try again")
        self._write(take)

    def driver(self, run_id: str) -> Lease | None:
        """The lease of the live process driving the run, or None."""
        rows = self._read(f"SELECT pid, host, token, heartbeat, {_NOW} FROM leases WHERE run_id = %s", (run_id,))
        if not rows:
            return None
        pid, host, token, heartbeat, now = rows[0]
        held = Lease(pid=pid, host=host, token=token)
        return held if lease_live(held, heartbeat, now) else None

    def heartbeat(self, run_id: str, me: Lease) -> None:
        self._write(lambda conn: conn.execute(f"UPDATE leases SET heartbeat = {_NOW} WHERE run_id = %s AND token = %s",
                                              (run_id, me.token)))

    def release(self, run_id: str, me: Lease) -> None:
        """Give the run's lease back; if the run has not ended, another process may drive it at once."""
        def free(conn):
            if conn.execute("DELETE FROM leases WHERE run_id = %s AND token = %s", (run_id, me.token)).rowcount:
                row = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
                if row is not None and row[0] not in ENDED:
                    self._notify(conn, run_id)
        self._write(free)

    def close(self) -> None:
        self._pool.close()
        with self._listen_lock:
            self._close_listener()


def _kind(conn) -> tuple[str | None, str, int]:
    """(the current schema, ``flowcore``/``empty``/``other``, the schema version). Changes nothing."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    if schema is None:
        return None, "empty", 0
    tables = {row[0] for row in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", (schema,))}
    if "flowcore_schema" in tables:
        row = conn.execute("SELECT version FROM flowcore_schema").fetchone()
        return schema, "flowcore", row[0] if row else 0
    return schema, "empty" if not tables else "other", 0


def _said(exc: Exception) -> str:
    """What the server or libpq said, on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
