"""The workflow model: what a workflow is, as immutable values.

A ``Workflow`` is nodes, edges (connections) and settings, exactly as declared. It knows nothing
about files (adapters parse those) or about execution (``graph.compile_workflow`` turns it into the
indexed form the scheduler uses). Nothing here does I/O.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from types import MappingProxyType

import attrs

from .behaviour import Behaviour

ON_ERROR = ("fail_fast", "continue")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen
class Retry:
    """How often a failed attempt is tried again and how long to wait in between."""

    max_attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0

    def wait_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.delay * (self.backoff ** (attempt - 1))


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


@attrs.frozen
class Edge:
    source: str
    target: str
    port: str = "result"
    map: bool = False
    select: str | None = None


@attrs.frozen(eq=False)
class Settings:
    runner: str | None = None
    max_parallel: int | None = None
    on_error: str = "fail_fast"
    pools: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping)


@attrs.frozen(eq=False)
class Workflow:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    settings: Settings = Settings()
    source: Mapping[str, Any] | None = attrs.field(default=None, repr=False)  # the definition as declared, for storing
