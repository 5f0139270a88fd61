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

    def _checked(self, cmd, ports: dict) -> dict:
        if not self.json_only:
            return ports
        if all(type(port) is str for port in ports) and all(map(_json_scalar, ports.values())):
            return ports  # string port names and scalars: JSON keeps them as they are
        try:  # a copy too, so the record is out of reach of the node code that returned the value
            return json.loads(json.dumps(ports, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"node {cmd.node!r} returned a value that is not JSON ({exc}); a stored run keeps "
                            f"every output as JSON, so return plain data (dict, list, str, number, bool, "
                            f"None)") from None


def _json_scalar(value) -> bool:
    """A value JSON keeps as it is: a string, a whole number, a bool, None or a finite float."""
    kind = type(value)
    return kind is str or kind is int or kind is bool or value is None or (kind is float and math.isfinite(value))
