"""``python``: call ``module:function`` with the node's input and ``params`` (and ``ctx`` if it asks)."""
from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Mapping

from runners.private_values import private_copy, recorded_ports
from scheduler_core import RunTask, as_ports

from ..imports import CallNotImportable, current_search_folders, import_call
from ..nodes import nesting_problem
from .base import FieldProblem, NodeType, rebuilt


@functools.lru_cache(maxsize=4096)
def _resolve_call(call, folders) -> tuple:
    """(function, its signature or None, wants ctx, is a coroutine function) for ``module:function`` looked for in
    ``folders`` first: once per distinct call and folders, however many nodes share it (a
    100,000-node workflow often names a handful of functions)."""
    try:
        fn = import_call(call, folders=folders)
    except CallNotImportable as exc:
        raise FieldProblem(str(exc)) from None
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and extension functions do not say
        signature = None
    wants_ctx = signature is not None and "ctx" in signature.parameters
    return fn, signature, wants_ctx, inspect.iscoroutinefunction(fn)


@functools.lru_cache(maxsize=4096)
def _call_problem(call: str, folders, names: tuple) -> str | None:
    """Why ``fn(input, **params)`` (and ``ctx=`` when the function names it) cannot be called, for
    params of these ``names``, or None: told at validation, not at run time. Once per function and
    names, however many nodes share them."""
    _, signature, wants_ctx, _ = _resolve_call(call, folders)
    kwargs = dict.fromkeys((*names, "ctx") if wants_ctx else names)
    try:
        signature.bind(None, **kwargs)
    except TypeError as exc:
        given = ", ".join(["input", *(f"{k}=..." for k in kwargs)])
        return (f"{call} cannot be called as {call.split(':')[-1]}({given}) ({exc}); its parameters are "
                f"{signature}: a python node's function takes the node's input first, then its params as "
                f"keyword arguments")
    return None


_CONTAINERS = (dict, list, tuple)
ANY_PORTS = RunTask()  # a function may return any ports (``Ports(a=..., b=...)``); one value for every node


class PythonNode(NodeType):
    name = "python"
    fields = {"call": True, "params": False}

    @classmethod
    def behaviour(cls, config):
        return ANY_PORTS

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        call = config.get("call")
        if not isinstance(call, str):
            raise FieldProblem(f"call must look like 'module:function', not {call!r}")
        self.folders = current_search_folders()
        self.fn, signature, self.wants_ctx, self.is_async = _resolve_call(call, self.folders)
        params = config.get("params") or {}
        if not isinstance(params, Mapping):
            raise FieldProblem("params must be a mapping of keyword arguments")
        self.params = dict(params)
        if signature is not None:
            problem = _call_problem(call, self.folders, tuple(self.params))
            if problem:
                raise FieldProblem(problem)

    def __reduce__(self):
        """Pickled with the folders its call was found in: rebuilt elsewhere, it imports the same module."""
        return rebuilt, (type(self), self.node_id, dict(self.config), self.folders)

    def _call(self, cmd, ctx):
        """Calls the function (a coroutine function gives a coroutine) with copies of its own of the input
        and the params: what it does to them changes no record, no other node's input, no later call."""
        kwargs = private_copy(self.params)
        if self.wants_ctx:
            kwargs["ctx"] = ctx
        return self.fn(private_copy(cmd.input), **kwargs)

    def call(self, cmd, ctx) -> dict:
        if self.is_async:
            return self._recorded(asyncio.run(self._call(cmd, ctx)))
        return self._recorded(self._call(cmd, ctx))

    async def call_async(self, cmd, ctx) -> dict:
        return self._recorded(await self._call(cmd, ctx))

    def _recorded(self, returned) -> dict:
        """The ports to record: a copy of what the function returned (no deeper than a run can keep)."""
        ports = as_ports(returned)
        for value in ports.values():
            if type(value) in _CONTAINERS:  # (most results are scalars: nothing to walk)
                problem = nesting_problem(ports)
                if problem:
                    raise ValueError(f"node {self.node_id!r} returned a value {problem}; return flatter data")
                break
        return recorded_ports(ports)
