"""The PostgreSQL section's contenders do what its report says (``bench/postgres.py``, small sizes).

Each PostgreSQL contender stores its run in a schema of its own on the server, with the commit
setting it names; the workers contender's processes drive every run of a store on the server; a
section without a server measures nothing and says so; the schemas made are dropped.
"""
import tempfile

import pytest

import pg_support
from adapters import Engine
from bench import live, postgres
from bench.durability import FreshDb
from bench.graphs import layered_dag


@pytest.fixture
def schemas():
    with postgres.FreshSchemas(pg_support.require_server()) as made:
        yield made
    left = pg_support.execute(pg_support.require_server(),
                              "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (made.made,))
    assert left == []  # every schema the section made is gone


def test_each_postgres_contender_stores_its_run_on_the_server_with_the_setting_it_names(schemas):
    with FreshDb() as fresh_db:
        made: list = []
        contenders = postgres.store_contenders(layered_dag(200).workflow(), fresh_db, schemas, made)
        for r in postgres.RUNNERS:
            contenders[(postgres.STORES[2], r)]()
            contenders[(postgres.STORES[3], r)]()
    postgres.check_made(schemas, made)
    assert [url for url, _, _ in made] == schemas.given
    urls = schemas.given
    assert len(urls) == 4
    for url in urls:
        (run,) = Engine(db=url).store.runs()
        assert run["status"] == "succeeded"
    assert [schemas.setting(u, "synchronous_commit") for u in urls] == ["on", "off", "on", "off"]


def test_a_contender_whose_store_lacks_the_run_is_refused(schemas):
    url = schemas()
    with pytest.raises(Exception, match="not-here"):
        postgres.stored_in(url, "not-here")


def test_worker_processes_on_postgres_drive_every_run_of_the_store(schemas):
    with tempfile.TemporaryDirectory() as logs:
        go, check = live.worker_drive(schemas, 12, live.ten_node_workflow(), 2, logs)
        go()
        driven = check(None)
    assert len(driven.by_worker) == 2 and sum(driven.drives(p) for p in driven.by_worker) >= 12
    (url,) = schemas.given
    assert sorted(r["run_id"] for r in Engine(db=url).store.runs(status="succeeded")) == sorted(driven.run_ids)


def test_without_a_server_the_section_measures_nothing_and_says_why(monkeypatch):
    monkeypatch.setenv("FLOWCORE_BENCH_POSTGRES", "postgresql://nobody@127.0.0.1:1/none")
    section = postgres.run(type("Cfg", (), {"quick": True, "repeats": 3})())
    assert section.checks == [] and section.tables == []
    assert "Not measured" in section.notes[0] and "127.0.0.1:1" in section.notes[0]
