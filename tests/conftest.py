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
