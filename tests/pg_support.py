"""PostgreSQL for the tests: the server's address comes from ``FLOWCORE_TEST_POSTGRES`` (``.ci/run``
sets it, e.g. ``postgresql://postgres@127.0.0.1:5432/test``); each test gets a schema of its own,
dropped afterwards, and a store URL that points into it. Without the variable, the PostgreSQL
tests are skipped with a message that names it.
"""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest

VARIABLE = "FLOWCORE_TEST_POSTGRES"
SKIP_REASON = (f"PostgreSQL tests: set {VARIABLE} to a server's URL (e.g. "
               f"postgresql://postgres@127.0.0.1:5432/test; .ci/run does) to run them")


def server_url() -> str | None:
    return os.environ.get(VARIABLE) or None


def require_server() -> str:
    """The server's URL, or skip the test saying which variable to set."""
    url = server_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    return url


def in_schema(url: str, schema: str) -> str:
    """``url`` with its connections' search_path set to ``schema`` (libpq's ``options``)."""
    from adapters.postgres_store import url_with_settings

    return url_with_settings(url, search_path=schema)


def admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


@contextlib.contextmanager
def fresh_schema(url: str, prefix: str = "flowcore_test"):
    """(store URL, schema name) of a new, empty schema; dropped with everything in it afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin(url) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield in_schema(url, schema), schema
    finally:
        with admin(url) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def execute(url: str, query: str, args=()) -> list:
    """Run one statement on a connection of its own (with ``url``'s search_path); its rows, if any."""
    with admin(url) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []
