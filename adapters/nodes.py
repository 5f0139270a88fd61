"""Node types: what each built-in type accepts in a workflow file and what it does when it runs.

Each type declares its fields (checked when a workflow is loaded, every problem at once) and,
for task types, how to turn a ``StartNode`` into a result. ``delay``, ``wait`` and ``hil`` have no
code here: the core parks them and completes them from timers and input.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
from collections.abc import Mapping

import jmespath

from scheduler_core import Ports, as_ports

from .imports import CallNotImportable, current_search_folders, import_call


class FieldProblem(Exception):
    pass


def _jmespath(value, field):
    if not isinstance(value, str):
        raise FieldProblem(f"{field} must be a JMESPath expression (a string)")
    try:
        return jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        raise FieldProblem(f"{field} {value!r} is not valid JMESPath: {exc}") from None


def _number(value, field, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        raise FieldProblem(f"{field} must be a {'positive' if positive else 'non-negative'} number, not {value!r}")
    return value


def truthy(value) -> bool:
    """JMESPath truth: false, null, and empty strings, lists and objects are false; 0 is true."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)) and not value:
        return False
    return True


class NodeType:
    """A node type: its fields (name -> required?) and how an instance runs."""

    fields: dict = {}
    is_async = False

    def __init__(self, node_id: str, config: Mapping):
        self.node_id = node_id
        self.config = config

    def call(self, cmd, ctx) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not run as a task")

    async def call_async(self, cmd, ctx) -> dict:
        return self.call(cmd, ctx)


@functools.lru_cache(maxsize=4096)
def _resolve_call(call, folders) -> tuple:
    """(function, wants ctx, is a coroutine function) for ``module:function`` looked for in
    ``folders`` first: once per distinct call and folders, however many nodes share it (a
    100,000-node workflow often names a handful of functions)."""
    try:
        fn = import_call(call, folders=folders)
    except CallNotImportable as exc:
        raise FieldProblem(str(exc)) from None
    try:
        wants_ctx = "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        wants_ctx = False
    return fn, wants_ctx, inspect.iscoroutinefunction(fn)


class PythonNode(NodeType):
    fields = {"call": True, "params": False}

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        call = config.get("call")
        if not isinstance(call, str):
            raise FieldProblem(f"call must look like 'module:function', not {call!r}")
        self.fn, self.wants_ctx, self.is_async = _resolve_call(call, current_search_folders())
        params = config.get("params") or {}
        if type(params) is not dict and not isinstance(params, Mapping):  # a dict skips the slower ABC check
            raise FieldProblem("params must be a mapping of keyword arguments")
        self.params = dict(params)

    def _args(self, cmd, ctx):
        kwargs = dict(self.params)
        if self.wants_ctx:
            kwargs["ctx"] = ctx
        return kwargs

    def call(self, cmd, ctx) -> dict:
        if self.is_async:
            return as_ports(asyncio.run(self.fn(cmd.input, **self._args(cmd, ctx))))
        return as_ports(self.fn(cmd.input, **self._args(cmd, ctx)))

    async def call_async(self, cmd, ctx) -> dict:
        return as_ports(await self.fn(cmd.input, **self._args(cmd, ctx)))


class IfNode(NodeType):
    fields = {"condition": True}

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        self.condition = _jmespath(config.get("condition"), "condition")

    def call(self, cmd, ctx) -> dict:
        port = "true" if truthy(self.condition.search(cmd.input)) else "false"
        return {port: cmd.input}


class ForeachNode(NodeType):
    fields = {"items": False, "max_parallel": False}

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        self.items = _jmespath(config["items"], "items") if config.get("items") is not None else None
        cap = config.get("max_parallel")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise FieldProblem(f"max_parallel must be a whole number >= 1, not {cap!r}")

    def call(self, cmd, ctx) -> dict:
        items = self.items.search(cmd.input) if self.items is not None else cmd.input
        if not isinstance(items, list):
            raise TypeError(f"foreach {self.node_id!r} needs a list of items, got {type(items).__name__}")
        return dict(Ports(result=items, iteration=items))


class MergeNode(NodeType):
    def call(self, cmd, ctx) -> dict:
        return {"result": list(cmd.values)}


class NoopNode(NodeType):
    def call(self, cmd, ctx) -> dict:
        return {"result": cmd.input}


class DelayNode(NodeType):
    fields = {"seconds": True}

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        _number(config.get("seconds"), "seconds")


class WaitNode(NodeType):
    fields = {"timeout": False}

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        if config.get("timeout") is not None:
            _number(config["timeout"], "timeout", positive=True)


class HilNode(NodeType):
    fields = {"prompt": False, "choices": False, "timeout": False}

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        if config.get("timeout") is not None:
            _number(config["timeout"], "timeout", positive=True)
        choices = config.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
                raise FieldProblem("choices must be a non-empty list of port names")
            if len(set(choices)) != len(choices) or {"result", "timeout"} & set(choices):
                raise FieldProblem("choices must be unique and may not be 'result' or 'timeout'")
        if config.get("prompt") is not None and not isinstance(config["prompt"], str):
            raise FieldProblem("prompt must be a string")


NODE_TYPES = {
    "python": PythonNode, "if": IfNode, "foreach": ForeachNode, "merge": MergeNode, "noop": NoopNode,
    "delay": DelayNode, "wait": WaitNode, "hil": HilNode,
}
# In a node, the timeout of wait/hil is how long to wait (type config); for every other type it
# bounds one attempt (the node's own `timeout`).
TIMEOUT_IS_CONFIG = frozenset({"wait", "hil"})


class NodeInvoker:
    """Runs task instances for the runners: node id -> its type's implementation.

    With ``json_only`` (a run kept in a durable store, whose log holds every output as JSON), an
    output that is not JSON data fails its node, and one JSON keeps only in its own terms (a tuple,
    a dict with number keys) goes on as JSON reads it back: the next node gets the same value in the
    run that produced it as after a resume.
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
        if not self.json_only or (all(type(port) is str for port in ports) and all(map(_json_scalar, ports.values()))):
            return ports  # string port names and scalars: JSON keeps them as they are
        try:
            return json.loads(json.dumps(ports, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"node {cmd.node!r} returned a value that is not JSON ({exc}); a stored run keeps "
                            f"every output as JSON, so return plain data (dict, list, str, number, bool, "
                            f"None)") from None


def _json_scalar(value) -> bool:
    """A value JSON keeps as it is: a string, a whole number, a bool, None or a finite float."""
    kind = type(value)
    return kind is str or kind is int or kind is bool or value is None or (kind is float and math.isfinite(value))
