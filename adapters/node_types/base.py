"""What every node type is: its fields, the behaviour it gives the core, and how an instance runs.

A node type is one module of this package (a subclass of ``NodeType``) plus one line in
``__init__.py`` that registers it. It says:

- ``fields``: the fields a node of this type may have (name -> required), besides the common ones
  every node has (``id``, ``type``, ``timeout``, ``retry``, ``pool``, ``estimate``, ``description``).
  A type that lists ``timeout`` makes it its own field (how long a ``wait`` waits), not the common
  per-attempt timeout.
- ``behaviour(config)``: what the core does with such a node (``scheduler_core.behaviour``: run it,
  fan out, park for a timer, park for input). Called for every node when a workflow is loaded,
  before the fields are checked: it must not raise, and for a config it cannot read it returns a
  best guess (the workflow will not run: ``__init__`` reports the problem).
- ``__init__(node_id, config)``: checks the fields (raising ``FieldProblem`` with one message) and
  prepares what running needs (a compiled expression, an imported function).
- ``call(cmd, ctx)`` (and ``call_async``): run one attempt of a task, returning ``{port: value}``.
  Parking types have no code to run: the core completes them from timers and answers.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import jmespath

from scheduler_core import MAX_SECONDS, RunTask

from ..imports import calls_searched_in, current_search_folders


class FieldProblem(Exception):
    """A node's field is wrong; the message says how (the caller adds which node)."""


class NodeType:
    name: ClassVar[str] = ""
    fields: ClassVar[dict] = {}
    is_async = False
    nests = False  # holds nodes of its own (a loop's body): parsed with ``behaviour_reporting``

    @classmethod
    def behaviour(cls, config: Mapping):
        return RunTask()

    def __init__(self, node_id: str, config: Mapping):
        self.node_id = node_id
        self.config = config

    def __reduce__(self):
        """Pickled as what builds it again (its class, id and fields): a worker process of the
        ``process`` runner rebuilds the node, compiling and importing there what it needs."""
        return rebuilt, (type(self), self.node_id, dict(self.config))

    def call(self, cmd, ctx) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not run as a task")

    async def call_async(self, cmd, ctx) -> dict:
        return self.call(cmd, ctx)


def rebuilt(cls: type[NodeType], node_id: str, config: dict, folders: tuple[str, ...] | None = None) -> NodeType:
    """A node built again from what ``__reduce__`` kept, its calls looked for in ``folders`` first."""
    with calls_searched_in(folders or current_search_folders()):
        return cls(node_id, MappingProxyType(config))


def read_as_boolean(value) -> str:
    """What to tell a user whose name YAML 1.1 turned into a boolean (``id: yes``, ``choices: [yes, no]``,
    ``port: on``), else ''."""
    if not isinstance(value, bool):
        return ""
    return (f"was read as the boolean {str(value).lower()}: YAML reads an unquoted yes, no, on, off, true or "
            f"false as a boolean; put the name in quotes ('yes', 'on')")


def jmespath_field(value, field):
    """A compiled JMESPath expression, or ``FieldProblem``."""
    if not isinstance(value, str):
        raise FieldProblem(f"{field} must be a JMESPath expression (a string)")
    try:
        return jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        raise FieldProblem(f"{field} {value!r} is not valid JMESPath: {exc}") from None
    except RecursionError:
        raise FieldProblem(f"{field} is nested too deeply to read ({len(value)} characters)") from None


def is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def number_field(value, field, positive=False):
    """A non-negative (or positive) number of seconds, at most ``MAX_SECONDS`` (a year), or ``FieldProblem``."""
    if not is_number(value) or not 0 <= value <= MAX_SECONDS or (positive and value == 0):
        raise FieldProblem(f"{field} must be a {'positive' if positive else 'non-negative'} number of seconds, at "
                           f"most {MAX_SECONDS:g} (a year), not {value!r}")
    return value


def seconds_or_none(value):
    """``value`` as seconds where it reads as a number in bounds, else None (for ``behaviour``)."""
    return float(value) if is_number(value) and 0 <= value <= MAX_SECONDS else None
