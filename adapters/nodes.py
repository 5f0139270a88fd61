"""The invoker the runners call node code through.

The node types themselves live in ``adapters/node_types/``, one module each; how a ``call`` is
imported, in ``adapters/imports.py``.
"""
from __future__ import annotations

import json
import math



class NodeInvoker:
    """Runs task instances for the runners: node id -> its type's implementation.

    With ``json_only`` (a run kept in a durable store, whose log holds every output as JSON), an
    output that is not JSON data fails its node, and one JSON keeps only in its own terms (a tuple,
    a dict with number keys) goes on as JSON reads it back: the next node gets the same value in the
    run that produced it as after a resume.

    A python node's result is recorded as a copy (its type makes it; in a stored run, the JSON round
    trip is one too): node code that keeps what it returned cannot change the record. The built-in
    types pass on what they were given, by reference, and never change it: copying their results
    would turn a DAG of shared values into a tree (a 50-layer join of noops grows exponentially).
    """

    def __init__(self, impls: dict, json_only: bool = False):
        self.impls = impls
        self.json_only = json_only

    def is_async(self, cmd) -> bool:
        return self.impls[cmd.node].is_async

    def call(self, cmd, ctx) -> dict:
        return self._checked(cmd, self.impls[cmd.node].call(cmd, ctx))

    async def call_async(self, cmd, ctx) -> dict:
        return self._checked(cmd, await self.impls[cmd.node].call_async(cmd, ctx))

    def for_node(self, node: str) -> "NodeInvoker":
        """An invoker of ``node`` alone: what a runner pickles for another process (the whole
        workflow's would cost as much per attempt as the workflow is large)."""
        return NodeInvoker({node: self.impls[node]}, json_only=self.json_only)

    def _checked(self, cmd, ports: dict) -> dict:
        if not self.json_only:
            return ports
        if all(type(port) is str for port in ports) and all(map(_json_scalar, ports.values())):
            return ports  # string port names and scalars: JSON keeps them as they are
        problem = nesting_problem(ports)
        if problem:
            raise ValueError(f"node {cmd.node!r} returned a value {problem}; a stored run keeps every output as "
                             f"JSON, so return flatter data")
        try:  # a copy too, so the record is out of reach of the node code that returned the value
            return json.loads(json.dumps(ports, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"node {cmd.node!r} returned a value that is not JSON ({exc}); a stored run keeps "
                            f"every output as JSON, so return plain data (dict, list, str, number, bool, "
                            f"None)") from None


# The deepest a value a run stores may nest (an output, a trigger, an answer): a store encodes it as
# JSON, and JSON encoders and decoders recurse, so a deeper value would break the event log.
MAX_NESTING = 200


def nesting_problem(value, limit: int = MAX_NESTING) -> str | None:
    """``"nested more than N levels deep"`` for a value whose lists and dicts nest deeper than
    ``limit``, else None. Iterative: it never recurses itself."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            if depth > limit:
                return f"nested more than {limit} levels deep"
            children = item.values() if kind is dict else item
            stack.extend((child, depth + 1) for child in children if type(child) in (dict, list, tuple))
    return None


def _json_scalar(value) -> bool:
    """A value JSON keeps as it is: a string, a whole number Python writes out (not one of thousands
    of digits: ``json.dumps`` refuses those, and did so only when the step was logged, leaving the
    run ``running``), a bool, None or a finite float."""
    kind = type(value)
    return (kind is str or (kind is int and value.bit_length() < 13_000) or kind is bool or value is None
            or (kind is float and math.isfinite(value)))
