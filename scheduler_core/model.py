"""The workflow model: what a workflow is, as immutable values.

A ``Workflow`` is nodes, edges (connections) and settings, exactly as declared. It knows nothing
about files (adapters parse those) or about execution (``graph.compile_workflow`` turns it into the
indexed form the scheduler uses). Nothing here does I/O.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple
from types import MappingProxyType

import attrs

from .behaviour import Behaviour

ON_ERROR = ("fail_fast", "continue")
JOIN_ALL, JOIN_ANY = "all", "any"  # a node's join rule; an int K is {at_least: K}

# Bounds on the numbers a workflow gives, checked where they are read (every number must be finite):
MAX_SECONDS = 366 * 24 * 3600.0  # the longest timeout, delay, wait or retry delay: a year
MAX_ATTEMPTS = 1000  # the most attempts a retry may make
MAX_BACKOFF = 1000.0  # the largest factor a retry delay may grow by per attempt


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen
class Retry:
    """How often a failed attempt is tried again and how long to wait in between."""

    max_attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0

    def wait_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), at most ``MAX_SECONDS``."""
        try:
            wait = self.delay * (self.backoff ** (attempt - 1))
        except OverflowError:
            return MAX_SECONDS
        return min(wait, MAX_SECONDS) if math.isfinite(wait) else MAX_SECONDS

    def problem(self) -> str | None:
        """What is out of bounds in this retry, or None."""
        if not (type(self.max_attempts) is int and 1 <= self.max_attempts <= MAX_ATTEMPTS):
            return f"retry max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}, not {self.max_attempts!r}"
        if not 0 <= self.delay <= MAX_SECONDS:
            return f"retry delay must be from 0 to {MAX_SECONDS:g} seconds (a year), not {self.delay!r}"
        if not 0 < self.backoff <= MAX_BACKOFF:
            return f"retry backoff must be above 0 and at most {MAX_BACKOFF:g}, not {self.backoff!r}"
        return None


@attrs.frozen(eq=False)
class Node:
    """One node as declared. ``type`` and ``config`` are the adapters' (a node type reads its own
    fields from ``config``); the core reads only ``behaviour``, which the node's type gives it when
    the workflow is loaded (``None`` until then: such a workflow does not compile)."""

    id: str
    type: str
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    behaviour: Behaviour | None = None
    timeout: float | None = None  # seconds per attempt of a task
    retry: Retry = Retry()
    pool: str | None = None
    estimate: float = 1.0
    join: str | int = JOIN_ALL  # JOIN_ALL, JOIN_ANY, or K: run once K inputs delivered ({at_least: K})
    cancel_rest: bool = False  # with any/at_least: when the join fires, cancel what only leads to it
    cancel: tuple[str, ...] = ()  # when it succeeds, cancel the open instances of these nodes


class Edge(NamedTuple):
    """One connection as declared. (A named tuple, as the graph's ``CompiledEdge``: a workflow has one
    per connection, and building the 200,000 edges of a large workflow with a frozen attrs class took
    0.18 s of loading it; a named tuple builds in half the time. ``edge._replace(...)`` changes one.)"""

    source: str
    target: str
    port: str = "result"
    map: bool = False
    select: str | None = None
    at_least: int | None = None  # on a gather edge: deliver once this many items succeeded
    cancel_rest: bool = False  # with at_least: then cancel the items not yet ended


@attrs.frozen(eq=False)
class Settings:
    runner: str | None = None
    max_parallel: int | None = None
    dask_address: str | None = None  # the scheduler the dask runner sends attempts to (None: an in-process cluster)
    on_error: str = "fail_fast"
    pools: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping)


@attrs.frozen(eq=False)
class Workflow:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    settings: Settings = Settings()
    source: Mapping[str, Any] | None = attrs.field(default=None, repr=False)  # the definition as declared, for storing
