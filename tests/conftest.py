"""Puts tests/ on sys.path so workflows can call ``nodes_for_tests:fn``; clears its probes per test."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutating_nodes  # noqa: E402
import nodes_for_tests  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_probes():
    nodes_for_tests.reset()
    mutating_nodes.reset()


def pytest_addoption(parser):
    parser.addoption("--soak-seconds", type=float, default=None,
                     help="how long tests/test_live_soak.py runs (default: $FLOWCORE_SOAK_SECONDS, else about 60)")


@pytest.fixture
def soak_seconds(request) -> float:
    """The soak's length: ``--soak-seconds N``, else ``FLOWCORE_SOAK_SECONDS``, else 60 (what CI runs)."""
    import os

    value = request.config.getoption("--soak-seconds")
    if value is None:
        value = float(os.environ.get("FLOWCORE_SOAK_SECONDS") or 60)
    return value


@pytest.fixture
def postgres_url():
    """A store URL into a PostgreSQL schema of this test's own, dropped afterwards (``pg_support``);
    the test is skipped, naming FLOWCORE_TEST_POSTGRES, where no server is given."""
    import pg_support

    with pg_support.fresh_schema(pg_support.require_server()) as (url, _):
        yield url


@pytest.fixture(scope="session")
def dask_cluster():
    """A real dask cluster (``tests/dask_cluster.py``): a scheduler and two workers, started once
    for the session by the first test that asks for it."""
    pytest.importorskip("distributed")
    import dask_cluster as support

    with support.running_cluster() as cluster:
        yield cluster
