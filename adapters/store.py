"""Stores: the append-only event log that is the source of truth for every run.

A run is a row of facts fixed when it starts (its workflow definition and hash, its runner
options) plus a log of *batches*: the events one ``step`` consumed, committed in one transaction
before that step's commands are carried out (write-ahead), with a fingerprint of the commands so a
replay can check that the core still decides the same. A run's state is ``replay`` of its batches.
A run is created together with its first batch, so a stored run has always started.

``MemoryStore`` keeps everything in the process; ``SqliteStore`` is the embedded default, a file
whose header says it is a flowcore store of a schema version (``MIGRATIONS`` bring an older one up
to date). ``adapters.postgres_store.PostgresStore`` implements the same methods in a database that
several hosts share; ``open_store`` picks a store by its address. Nothing read back from a store is
ever unpickled or evaluated: events and definitions are JSON, snapshots are ``adapters.snapshots`` text.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from typing import Any

import attrs

from scheduler_core import EVENT_TYPES

from .leases import LEASE_SECONDS, Lease, lease_blocks, lease_live, lease_message  # noqa: F401 (LEASE_SECONDS, Lease: re-exported)



class StoreError(RuntimeError):
    """The store cannot be used (unreadable, corrupt, not a flowcore database)."""


class StoreUnavailable(StoreError):
    """A store whose optional packages are not installed; the message says what to install."""


class RunExists(StoreError):
    pass


class UnknownRun(StoreError):
    pass


class LeaseHeld(StoreError):
    pass


class LeaseLost(StoreError):
    """A write by a process that no longer holds the run's lease (it was frozen, say, and another
    process took the run over): refused, so a run is never appended to by two processes."""


def canonical_json(definition) -> str:
    """The text a run's definition is stored and hashed as (sorted keys: equal definitions, equal text)."""
    return json.dumps(definition, sort_keys=True, default=str)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def definition_hash(definition) -> str:
    return text_hash(canonical_json(definition))


@attrs.frozen(kw_only=True)
class RunInfo:
    run_id: str
    workflow: str
    definition: Any
    definition_hash: str | None  # None for a run kept in memory only, where nothing can change it
    options: dict
    status: str = "running"
    started_at: float | None = None
    finished_at: float | None = None
    trigger: Any = None  # what a queued run starts with (its RunStarted carries it once it has started)
    wake_at: float | None = None  # a run no process drives: when its next timer falls due (None: none)
    # the definition as stored (canonical_json) where a store keeps it as text: hashing it checks
    # the definition without encoding it again (0.2 s for a 100,000-node workflow)
    definition_text: str | None = attrs.field(default=None, eq=False, repr=False)

    def definition_intact(self) -> bool:
        """The definition is the one whose hash the run recorded when it started."""
        if self.definition_hash is None:
            return True
        if self.definition_text is not None and text_hash(self.definition_text) == self.definition_hash:
            return True
        return definition_hash(self.definition) == self.definition_hash  # stored by an older version

    def summary(self) -> dict:
        return {"run_id": self.run_id, "workflow": self.workflow, "status": self.status,
                "started_at": self.started_at, "finished_at": self.finished_at}


@attrs.frozen
class Snapshot:
    """A cache of a run's state after its first ``index`` steps, as text in the format ``version``
    names (``adapters.snapshots``: data, never code). Never the source of truth: without it, the
    log is replayed in full."""

    index: int
    version: str
    data: str


@attrs.frozen
class Request:
    """An entry of a run's inbox: an answer or a cancel a person asked for, written by any process and
    applied, through ``step``, by whichever process drives the run. ``kind`` is ``answer``
    (``body``: node, item, port, value), ``cancel`` (reason) or ``cancel_node`` (node, item,
    reason); ``at`` is when it was written, the time its event carries."""

    seq: int
    run_id: str
    kind: str
    body: dict
    at: float
    state: str = "pending"  # pending, applied or refused
    reason: str | None = None  # why it was refused


REQUEST_KINDS = ("answer", "cancel", "cancel_node")
# A run's summary: what ``append`` and ``update`` may change of a run's row.
SUMMARY_FIELDS = ("status", "started_at", "finished_at", "options", "wake_at")
ENDED = ("succeeded", "failed", "cancelled")


def encode_event(event) -> dict:
    kind = type(event)
    data = {name: getattr(event, name) for name in _EVENT_FIELDS[kind]}  # attrs.asdict costs twice as much
    data["type"] = kind.__name__
    return data


_EVENT_FIELDS = {cls: tuple(f.name for f in attrs.fields(cls)) for cls in EVENT_TYPES.values()}


def decode_event(data: dict):
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    for field in ("item", "logs"):  # JSON has lists where events hold tuples (an item may be None: every item)
        if data.get(field) is not None:
            data[field] = tuple(data[field])
    return cls(**data)


def encode_batch(events) -> str:
    """A step's events as a store writes them: a JSON list of ``encode_event``'s dicts."""
    return json.dumps([encode_event(e) for e in events], default=str)


class MemoryStore:
    durable = False  # lives and dies with the process: no snapshots needed

    def __init__(self):
        self.snapshots: dict = {}
        self.infos: dict = {}
        self.batches: dict = {}
        self.leases: dict = {}
        self.inbox: dict = {}  # seq -> Request
        self.lock = threading.Lock()

    def create_run(self, info: RunInfo, events, fingerprint: str) -> None:
        """Record a new run together with its first batch (a queued run: with none)."""
        with self.lock:
            if info.run_id in self.infos:
                raise RunExists(f"a run with id {info.run_id!r} already exists")
            self.infos[info.run_id] = info
            self.batches[info.run_id] = [(tuple(events), fingerprint)] if events else []

    def append(self, run_id: str, index: int, events, fingerprint: str, summary: dict, done=(), lease=None) -> None:
        """Log a step's events; mark the inbox requests it applied or refused (``done``: (seq, state,
        reason) triples) in the same breath. With ``lease``: only while it is the run's (``LeaseLost``)."""
        with self.lock:
            self._fence(run_id, lease)
            log = self.batches[run_id]
            if index != len(log):
                raise StoreError(f"run {run_id!r}: batch {index} out of order (log has {len(log)})")
            log.append((tuple(events), fingerprint))
            if summary:  # most steps leave the run's summary as it was
                self.infos[run_id] = attrs.evolve(self.infos[run_id], **summary)
            self._mark(done)

    def _fence(self, run_id: str, lease) -> None:
        if lease is not None:
            held = self.leases.get(run_id)
            if held is None or held[0].token != lease.token:
                raise LeaseLost(f"run {run_id!r}: this process no longer holds the run's lease; another took it over")

    def _mark(self, done) -> None:
        for seq, state, reason in done:
            self.inbox[seq] = attrs.evolve(self.inbox[seq], state=state, reason=reason)

    def post(self, run_id: str, kind: str, body: dict, at: float) -> int:
        """Write a request to the run's inbox; its sequence number."""
        with self.lock:
            self.info(run_id)
            seq = len(self.inbox) + 1
            self.inbox[seq] = Request(seq=seq, run_id=run_id, kind=kind, body=body, at=at)
            return seq

    def pending(self, run_id: str) -> list[Request]:
        with self.lock:
            return [r for r in self.inbox.values() if r.run_id == run_id and r.state == "pending"]

    def request(self, seq: int) -> Request:
        with self.lock:
            return self.inbox[seq]

    def refuse_pending(self, run_id: str, reason: str) -> None:
        with self.lock:
            self._mark([(r.seq, "refused", reason) for r in self.inbox.values()
                        if r.run_id == run_id and r.state == "pending"])

    def next_wake(self) -> float | None:
        with self.lock:
            return min((i.wake_at for i in self.infos.values() if i.status == "waiting" and i.wake_at is not None),
                       default=None)

    def due_runs(self, now: float, me: Lease, limit: int, skip=()) -> list[str]:
        """Runs that need a driver now (see ``SqliteStore.due_runs``), oldest first."""
        with self.lock:
            asked = {r.run_id for r in self.inbox.values() if r.state == "pending"}
            out = []
            for run_id, info in self.infos.items():
                if run_id in skip or info.status in ENDED:
                    continue
                held = self.leases.get(run_id)
                if held and lease_blocks(held[0], held[1], me, now):
                    continue
                if info.status in ("queued", "running") or run_id in asked \
                        or (info.wake_at is not None and info.wake_at <= now):
                    out.append(run_id)
                    if len(out) >= limit:
                        break
            return out

    def update(self, run_id: str, summary: dict, lease=None) -> None:
        """Change the run's summary; with ``lease``, only while it is the run's (``LeaseLost``)."""
        with self.lock:
            self._fence(run_id, lease)
            self.infos[run_id] = attrs.evolve(self.infos[run_id], **summary)

    def info(self, run_id: str) -> RunInfo:
        try:
            return self.infos[run_id]
        except KeyError:
            raise UnknownRun(f"no run with id {run_id!r} in this store") from None

    def load(self, run_id: str, since: int = 0):
        """(info, batches, fingerprints) of the run, the log from step ``since`` on."""
        with self.lock:
            info = self.info(run_id)
            log = list(self.batches[run_id][since:])
        return info, [list(b) for b, _ in log], [f for _, f in log]

    def save_snapshot(self, run_id: str, snapshot: Snapshot) -> None:
        with self.lock:
            self.snapshots[run_id] = snapshot

    def snapshot(self, run_id: str) -> Snapshot | None:
        with self.lock:
            return self.snapshots.get(run_id)

    def runs(self, status: str | None = None, workflow: str | None = None, limit: int | None = None) -> list[dict]:
        """The summary of every run (of that status and workflow), oldest first; the newest ``limit``."""
        out = [info.summary() for info in self.infos.values()
               if (status is None or info.status == status) and (workflow is None or info.workflow == workflow)]
        return out[-limit:] if limit else out

    def acquire(self, run_id: str, me: Lease) -> None:
        with self.lock:
            held = self.leases.get(run_id)
            if held and lease_blocks(held[0], held[1], me, time.time()):
                raise LeaseHeld(lease_message(run_id, held[0]))
            self.leases[run_id] = (me, time.time())

    def driver(self, run_id: str) -> Lease | None:
        """The lease of the live process driving the run, or None."""
        with self.lock:
            held = self.leases.get(run_id)
        return held[0] if held and lease_live(held[0], held[1], time.time()) else None

    def heartbeat(self, run_id: str, me: Lease) -> None:
        with self.lock:
            if run_id in self.leases and self.leases[run_id][0].token == me.token:
                self.leases[run_id] = (me, time.time())

    def release(self, run_id: str, me: Lease) -> None:
        with self.lock:
            if run_id in self.leases and self.leases[run_id][0].token == me.token:
                del self.leases[run_id]

    def close(self) -> None:
        pass


# -- choosing a store ------------------------------------------------------------------------------

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str) -> bool:
    return str(target).startswith(POSTGRES_SCHEMES)


def open_store(target: str, create: bool = True):
    """The store ``target`` names: a PostgreSQL database (``postgresql://...``, see
    ``adapters.postgres_store``) or a SQLite file. Without ``create``, nothing is created: a
    database or file without flowcore's tables reads as having no runs."""
    if is_postgres_url(target):
        from .postgres_store import PostgresStore  # StoreUnavailable without psycopg

        return PostgresStore(target, create=create)
    return SqliteStore(target, create=create)


# -- SQLite ----------------------------------------------------------------------------------------

# A flowcore store says so in its header: ``PRAGMA application_id`` is APPLICATION_ID and
# ``PRAGMA user_version`` the schema version, the number of MIGRATIONS applied to the first layout.
APPLICATION_ID = 0x666C6F77  # "flow"

# The first layout (flowcore until the schema had a version; such a file has neither pragma set).
_FIRST_LAYOUT = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, definition_hash TEXT NOT NULL,
    options TEXT NOT NULL, status TEXT NOT NULL, started_at REAL, finished_at REAL, created REAL NOT NULL);
CREATE TABLE definitions (run_id TEXT PRIMARY KEY, definition TEXT NOT NULL);
CREATE TABLE batches (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, events TEXT NOT NULL, fingerprint TEXT NOT NULL,
    PRIMARY KEY (run_id, idx));
CREATE TABLE snapshots (
    run_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, version TEXT NOT NULL, state BLOB NOT NULL);
CREATE TABLE leases (
    run_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, token TEXT NOT NULL, heartbeat REAL NOT NULL);
"""
_FIRST_TABLES = frozenset({"runs", "definitions", "batches", "snapshots", "leases"})

# Migration i (from 1) takes a store from version i - 1 to version i. Append only: never edit one
# that shipped. A new store is the first layout with every migration applied.
MIGRATIONS = (
    # 1: snapshots are text in a documented format (adapters/snapshots.py), never a pickle. The old
    # rows are caches (pickles that could run code when loaded): dropped, never read.
    """
    DROP TABLE snapshots;
    CREATE TABLE snapshots (
        run_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, version TEXT NOT NULL, data TEXT NOT NULL);
    """,
    # 2: live runs. A run may be stored ``queued`` (submitted, not started: no batch yet, its trigger
    # kept with it), a run no process drives says when its next timer falls due (``wake_at``), and
    # each run has an inbox of answers and cancels that whichever process drives it applies.
    """
    ALTER TABLE runs ADD COLUMN trigger TEXT;
    ALTER TABLE runs ADD COLUMN wake_at REAL;
    CREATE INDEX runs_status ON runs (status, wake_at);
    CREATE INDEX runs_queue ON runs (status, created, run_id);
    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
        body TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', reason TEXT, done_at REAL);
    CREATE INDEX inbox_pending ON inbox (state, run_id);
    CREATE INDEX inbox_run ON inbox (run_id, seq);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class NotAFlowcoreStore(StoreError):
    """The file is a database of something else; flowcore leaves it as it is."""


class SqlStatements:
    """What the SQL stores (``SqliteStore``, ``adapters.postgres_store.PostgresStore``) say alike,
    written once so the two cannot drift: the inbox's reads, a run's summary, snapshots, the runs
    list. ``P`` is the store's parameter placeholder (SQLite's ``?``, psycopg's ``%s``); a store gives
    ``_read(sql, args)`` (the rows), ``_write(fn)`` (``fn(conn)`` in one transaction) and
    ``_fence(conn, run_id, lease)``."""

    P = "?"
    _SUMMARY_COLUMNS = SUMMARY_FIELDS

    def pending(self, run_id: str) -> list[Request]:
        """The run's requests not applied or refused yet, in the order they were written."""
        rows = self._read(f"SELECT seq, kind, body, at FROM inbox WHERE state = 'pending' AND run_id = {self.P} "
                          "ORDER BY seq", (run_id,))
        return [Request(seq=seq, run_id=run_id, kind=kind, body=_body(body), at=at) for seq, kind, body, at in rows]

    def request(self, seq: int) -> Request:
        rows = self._read(f"SELECT run_id, kind, body, at, state, reason FROM inbox WHERE seq = {self.P}", (seq,))
        run_id, kind, body, at, state, reason = rows[0]
        return Request(seq=seq, run_id=run_id, kind=kind, body=json.loads(body), at=at, state=state, reason=reason)

    def refuse_pending(self, run_id: str, reason: str) -> None:
        """Refuse what is left in a finished run's inbox."""
        P = self.P
        self._write(lambda conn: conn.execute(
            f"UPDATE inbox SET state = 'refused', reason = {P}, done_at = {P} WHERE run_id = {P} AND state = 'pending'",
            (reason, time.time(), run_id)))

    @classmethod
    def _summary_columns(cls, summary: dict) -> tuple[str, list]:
        """``col = P, ...`` for a run's summary (status and times, and ``options`` when given), and the values."""
        unknown = set(summary) - set(cls._SUMMARY_COLUMNS)
        if unknown:
            raise ValueError(f"not a column of a run's summary: {', '.join(sorted(unknown))}")
        cols = ", ".join(f"{k} = {cls.P}" for k in summary)  # the names: SUMMARY_FIELDS only
        return cols, [json.dumps(v, default=str) if k == "options" else v for k, v in summary.items()]

    @classmethod
    def _set_summary(cls, conn, run_id: str, summary: dict) -> None:
        """Update the run's row with ``summary`` (nothing when it is empty)."""
        if summary:
            cols, values = cls._summary_columns(summary)
            conn.execute(f"UPDATE runs SET {cols} WHERE run_id = {cls.P}", (*values, run_id))

    def update(self, run_id: str, summary: dict, lease=None) -> None:
        """Change the run's summary; with ``lease``, only while it is the run's (``LeaseLost``)."""
        def write(conn):
            self._fence(conn, run_id, lease)
            self._set_summary(conn, run_id, summary)
        self._write(write)

    def snapshot(self, run_id: str) -> Snapshot | None:
        rows = self._read(f"SELECT idx, version, data FROM snapshots WHERE run_id = {self.P}", (run_id,))
        return Snapshot(index=rows[0][0], version=rows[0][1], data=rows[0][2]) if rows else None

    def runs(self, status: str | None = None, workflow: str | None = None, limit: int | None = None) -> list[dict]:
        """The summary of every run (of that status and workflow), oldest first; the newest ``limit``."""
        where, args = [], []
        for column, value in (("status", status), ("workflow", workflow)):
            if value is not None:
                where.append(f"{column} = {self.P}")
                args.append(value)
        sql = "SELECT run_id, workflow, status, started_at, finished_at FROM runs"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, run_id DESC"
        if limit:
            sql += f" LIMIT {min(int(limit), 2**63 - 1)}"  # the largest both take (SQLite said "datatype mismatch")
        rows = self._read(sql, args)
        return [dict(zip(("run_id", "workflow", "status", "started_at", "finished_at"), row)) for row in reversed(rows)]


class SqliteStore(SqlStatements):
    """The embedded store: one SQLite file, WAL mode, one transaction per step (group commit).

    A run's definition has a table of its own: SQLite rewrites a whole row on update, and the row
    a run's summary lives in should stay small however large the workflow is.

    Opening a file checks what it is before changing anything: a flowcore store (migrated to
    ``SCHEMA_VERSION`` if older), an empty or new file (given flowcore's schema only with
    ``create``: a store opened to read stays empty and reads as having no runs), or anything else
    (refused with ``NotAFlowcoreStore``, untouched: no tables made, no switch to WAL).
    """

    durable = True

    def __init__(self, path: str, create: bool = True):
        self.path = path
        self.create = create
        self.empty = False  # an empty file opened without ``create``: no runs, nothing written
        self.local = threading.local()
        self._writers = WriterQueue(path)
        self.conn  # open now, so a bad file is reported before anything runs

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self._open()
            self.local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        if self.create:
            _create_private(self.path)
        try:
            target = self.path if self.create else f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=rw"
            conn = sqlite3.connect(target, timeout=60, isolation_level=None, check_same_thread=False,
                                   uri=not self.create)
            try:
                conn.execute("PRAGMA busy_timeout = 60000")
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable flowcore database ({exc})") from None
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Make ``conn`` a connection to a flowcore store of this version, or refuse the file."""
        conn.execute("BEGIN")  # one read transaction: another process may be creating the store meanwhile
        try:
            kind, version = _kind(conn), _version(conn)
        finally:
            conn.execute("COMMIT")
        if kind == "empty" and not self.create:
            self.empty = True
            return
        if kind == "other":
            raise NotAFlowcoreStore(f"{self.path} is not a flowcore store (it is a database of something else); "
                                    f"flowcore left it as it is: give it a path of its own with --db or FLOWCORE_DB")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} is a flowcore store of schema version {version}, made by a newer "
                             f"flowcore than this one (which knows versions up to {SCHEMA_VERSION}); use that one")
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        if kind == "empty" or version < SCHEMA_VERSION:
            self._migrate(conn)
        self.empty = False

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the store to SCHEMA_VERSION in one transaction (another process may be doing the same:
        the first to take the write lock does it, the others find it done)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            kind = _kind(conn)
            if kind == "other":
                raise NotAFlowcoreStore(f"{self.path} is not a flowcore store")
            if kind == "empty":
                _run_script(conn, _FIRST_LAYOUT)
            version = 0 if kind == "empty" else _version(conn)
            for script in MIGRATIONS[version:]:
                _run_script(conn, script)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write(self, fn):
        if self.empty:
            raise StoreError(f"{self.path} holds no flowcore store yet; only a command that starts a run makes one")
        conn = self.conn
        try:
            with self._writers:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            return result
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def create_run(self, info: RunInfo, events, fingerprint: str) -> None:
        """Record a new run together with its first batch, in one transaction (a queued run: with none)."""
        payload = encode_batch(events)
        text = info.definition_text or canonical_json(info.definition)
        dhash = info.definition_hash or text_hash(text)

        def insert(conn):
            try:
                conn.execute("INSERT INTO runs (run_id, workflow, definition_hash, options, status, started_at, "
                             "finished_at, created, trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (info.run_id, info.workflow, dhash, json.dumps(info.options, default=str),
                              info.status, info.started_at, info.finished_at, time.time(),
                              json.dumps(info.trigger)))
            except sqlite3.IntegrityError:
                raise RunExists(f"a run with id {info.run_id!r} already exists in {self.path}") from None
            conn.execute("INSERT INTO definitions (run_id, definition) VALUES (?, ?)", (info.run_id, text))
            if events:
                conn.execute("INSERT INTO batches (run_id, idx, events, fingerprint) VALUES (?, ?, ?, ?)",
                             (info.run_id, 0, payload, fingerprint))
        self._write(insert)

    def append(self, run_id: str, index: int, events, fingerprint: str, summary: dict, done=(), lease=None) -> None:
        """Log a step's events, in one transaction with the run's summary (when it changed) and the
        marks of the inbox requests the step applied or refused (``done``: (seq, state, reason)).
        With ``lease``: only while the run's lease is that one (fencing: ``LeaseLost``)."""
        payload = encode_batch(events)

        def insert(conn):
            self._fence(conn, run_id, lease)
            try:
                conn.execute("INSERT INTO batches (run_id, idx, events, fingerprint) VALUES (?, ?, ?, ?)",
                             (run_id, index, payload, fingerprint))
            except sqlite3.IntegrityError:
                raise StoreError(f"run {run_id!r}: step {index} was already logged by another process") from None
            self._set_summary(conn, run_id, summary)
            self._mark(conn, done)
        self._write(insert)

    @staticmethod
    def _fence(conn, run_id: str, lease) -> None:
        """Inside a write's transaction: ``LeaseLost`` unless ``lease`` (when given) is the run's."""
        if lease is not None and conn.execute("SELECT 1 FROM leases WHERE run_id = ? AND token = ?",
                                              (run_id, lease.token)).fetchone() is None:
            raise LeaseLost(f"run {run_id!r}: this process no longer holds the run's lease; another took it over")

    @staticmethod
    def _mark(conn, done) -> None:
        now = time.time()
        for seq, state, reason in done:
            conn.execute("UPDATE inbox SET state = ?, reason = ?, done_at = ? WHERE seq = ?", (state, reason, now, seq))

    # -- the inbox ----------------------------------------------------------------------------

    def post(self, run_id: str, kind: str, body: dict, at: float) -> int:
        """Write a request to the run's inbox; its sequence number (``UnknownRun`` for no such run)."""
        def insert(conn):
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
            cur = conn.execute("INSERT INTO inbox (run_id, at, kind, body) VALUES (?, ?, ?, ?)",
                               (run_id, at, kind, json.dumps(body)))
            return cur.lastrowid
        return self._write(insert)

    def due_runs(self, now: float, me: Lease, limit: int, skip=()) -> list[str]:
        """Runs that need a driver now, oldest first, at most ``limit``, none of ``skip``: queued runs,
        runs with something in their inbox, runs whose next timer is due, and runs left ``running`` by
        a driver that is gone (the lease rules). A run a live process drives is never among them."""
        # Each kind of need is read from an index of its own, oldest first, a page at a time: an idle
        # worker asks this ten times a second, and a backlog of queued runs is not read whole to start
        # a few of them.
        page = limit + len(skip) + 32
        while True:
            rows, full = [], False
            for sql, args in (
                    ("SELECT created, run_id FROM runs WHERE status = 'queued' ORDER BY created, run_id LIMIT ?", ()),
                    ("SELECT created, run_id FROM runs WHERE status = 'running' ORDER BY created, run_id LIMIT ?", ()),
                    ("SELECT created, run_id FROM runs WHERE status = 'waiting' AND wake_at <= ? "
                     "ORDER BY created, run_id LIMIT ?", (now,)),
                    ("SELECT r.created, r.run_id FROM runs r WHERE r.status NOT IN ('succeeded', 'failed', 'cancelled') "
                     "AND r.run_id IN (SELECT run_id FROM inbox WHERE state = 'pending') "
                     "ORDER BY r.created, r.run_id LIMIT ?", ())):
                part = self._read(sql, (*args, page))
                full = full or len(part) == page
                rows += part
            candidates = sorted(set(rows))
            leases = {row[0]: row[1:] for row in self._read(
                "SELECT run_id, pid, host, token, heartbeat FROM leases WHERE run_id IN "
                f"({', '.join('?' * len(candidates))})", [r for _, r in candidates])} if candidates else {}
            out = []
            for _, run_id in candidates:
                held = leases.get(run_id)
                if run_id in skip or (held and lease_blocks(Lease(pid=held[0], host=held[1], token=held[2]),
                                                            held[3], me, now)):
                    continue
                out.append(run_id)
                if len(out) >= limit:
                    return out
            if not full:
                return out
            page *= 4  # every candidate of a full page was taken: look further

    def next_wake(self) -> float | None:
        """The earliest time a run no process drives has a timer due (a worker sleeps until then)."""
        rows = self._read("SELECT MIN(wake_at) FROM runs WHERE status = 'waiting'")
        return rows[0][0] if rows else None

    def _read(self, sql: str, args=()):
        if self.empty:
            return []
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable flowcore database ({exc})") from None

    def info(self, run_id: str) -> RunInfo:
        rows = self._read("SELECT r.workflow, d.definition, r.definition_hash, r.options, r.status, r.started_at, "
                          "r.finished_at, r.trigger, r.wake_at FROM runs r JOIN definitions d USING (run_id) "
                          "WHERE run_id = ?", (run_id,))
        if not rows:
            raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
        workflow, text, dhash, options, status, started, finished, trigger, wake_at = rows[0]
        try:
            definition, options = json.loads(text), json.loads(options)
            trigger = None if trigger is None else json.loads(trigger)
            if not isinstance(options, dict):  # every reader asks it for keys
                raise ValueError(f"its options are {type(options).__name__}, not a mapping")
        except ValueError as exc:
            raise StoreError(f"{self.path}: the stored definition of run {run_id!r} is corrupt ({exc})") from None
        return RunInfo(run_id=run_id, workflow=workflow, definition=definition, definition_hash=dhash,
                       options=options, status=status, started_at=started, finished_at=finished,
                       trigger=trigger, wake_at=wake_at, definition_text=text)

    def load(self, run_id: str, since: int = 0):
        """(info, batches, fingerprints) from step ``since`` on, read in one transaction: a consistent
        view of a run being driven."""
        if self.empty:
            raise UnknownRun(f"no run with id {run_id!r} in {self.path}")
        conn = self.conn
        try:
            conn.execute("BEGIN")
            try:
                info = self.info(run_id)
                rows = self._read("SELECT events, fingerprint FROM batches WHERE run_id = ? AND idx >= ? ORDER BY idx",
                                  (run_id, since))
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable flowcore database ({exc})") from None
        try:
            batches = [[decode_event(e) for e in json.loads(events)] for events, _ in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path}: the event log of run {run_id!r} is corrupt ({exc})") from None
        return info, batches, [f for _, f in rows]

    def save_snapshot(self, run_id: str, snapshot: Snapshot) -> None:
        self._write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO snapshots (run_id, idx, version, data) VALUES (?, ?, ?, ?)",
            (run_id, snapshot.index, snapshot.version, snapshot.data)))

    def acquire(self, run_id: str, me: Lease) -> None:
        def take(conn):
            row = conn.execute("SELECT pid, host, token, heartbeat FROM leases WHERE run_id = ?", (run_id,)).fetchone()
            if row:
                held = Lease(pid=row[0], host=row[1], token=row[2])
                if lease_blocks(held, row[3], me, time.time()):
                    raise LeaseHeld(lease_message(run_id, held))
            conn.execute("INSERT OR REPLACE INTO leases (run_id, pid, host, token, heartbeat) VALUES (?, ?, ?, ?, ?)",
                         (run_id, me.pid, me.host, me.token, time.time()))
        self._write(take)

    def driver(self, run_id: str) -> Lease | None:
        """The lease of the live process driving the run, or None."""
        rows = self._read("SELECT pid, host, token, heartbeat FROM leases WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        held = Lease(pid=rows[0][0], host=rows[0][1], token=rows[0][2])
        return held if lease_live(held, rows[0][3], time.time()) else None

    def heartbeat(self, run_id: str, me: Lease) -> None:
        self._write(lambda conn: conn.execute("UPDATE leases SET heartbeat = ? WHERE run_id = ? AND token = ?",
                                              (time.time(), run_id, me.token)))

    def release(self, run_id: str, me: Lease) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM leases WHERE run_id = ? AND token = ?",
                                              (run_id, me.token)))

    def close(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None
        self._writers.close()


class WriterQueue:
    """The one speed trick of the SQLite store: its writers, in every thread and process, take turns
    on a kernel lock (``flock`` of a ``-lock`` file beside the store) before they begin a write
    transaction.

    Without it, a writer that finds the store locked is put to sleep by SQLite's busy handler for
    1, 2, 5, 10, ... up to 100 ms at a time, however soon the lock is free again. Workers sharing a
    store write a transaction per step, a few hundred a second each, so under contention they spent
    more time asleep than writing: two workers drove runs slower than one (``bench/live.py``,
    "2 workers / 1": 0.8-1.2x without the queue, 1.4-1.5x with it). The kernel wakes a writer
    waiting here the moment the lock is let go.

    The lock is only an ordering: SQLite's own locking still keeps the store correct (against a
    process that does not queue here, say), and the kernel lets go of a process's lock when it
    dies. A writer frozen mid-transaction (SIGSTOP) holds the others up until it continues, as it
    would with SQLite's lock alone (which makes them give up after its 60 s busy timeout instead).
    The lock file is made on the first write, so a file that is not a flowcore store gets none.
    """

    def __init__(self, path: str):
        self.path = f"{path}-lock" if _plain_file(path) else None
        self.threads = threading.Lock()  # flock is per open file: this process's threads queue here
        self.fd: int | None = None

    def __enter__(self) -> None:
        self.threads.acquire()
        if self.fd is None and self.path is not None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self.path = None  # a directory this process cannot write to: SQLite's lock alone
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.threads.release()

    def close(self) -> None:
        with self.threads:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def _body(text: str):
    """A request's body; one that is not JSON (written by hand) reads as None, which the inbox refuses."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _plain_file(path: str) -> bool:
    """Whether SQLite takes ``path`` as a file's path (not ``:memory:`` or a ``file:`` URI)."""
    return path != ":memory:" and not path.startswith("file:")


def _create_private(path: str) -> None:
    """Create the store's file readable and writable by its owner only (it holds triggers, answers
    and outputs in plain text); SQLite gives its -wal and -shm files the same mode. A file that
    exists already is left as it is."""
    if not _plain_file(path):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError:
        pass  # a directory that does not exist, say: connecting reports it


def _use_wal(conn: sqlite3.Connection, patience: float = 60.0) -> None:
    """Put the store in WAL mode. Switching needs the file to itself, and SQLite answers 'database is
    locked' at once (its busy timeout does not apply) while another process creates or writes the
    store: wait for that, as long as the busy timeout would."""
    deadline = time.monotonic() + patience
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _kind(conn: sqlite3.Connection) -> str:
    """``flowcore`` (a store with flowcore's header, or of the first layout), ``empty`` (no tables)
    or ``other``. Reads only the header and the schema: changes nothing."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id == APPLICATION_ID:
        return "flowcore"
    if app_id == 0 and not tables and _version(conn) == 0:
        return "empty"
    if app_id == 0 and tables == _FIRST_TABLES and _version(conn) == 0:
        return "flowcore"
    return "other"


def _version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the open transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
