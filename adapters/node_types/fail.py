"""``fail``: the node fails with error ``{type: "fail", message}``, as any failed node does.

So under ``on_error: fail_fast`` it fails the run (WCP-20, cancel case), and under ``continue``
only its own branch.
"""
from __future__ import annotations

from scheduler_core import RunTask

from .base import FieldProblem, NodeType

ONE_RESULT = RunTask(ports=("result",))  # an edge out of it is allowed (and always dead: the node fails)


class fail(Exception):  # noqa: N801 - the class name is the error type the record shows: "fail"
    """What a ``fail`` node raises."""


class FailNode(NodeType):
    name = "fail"
    fields = {"message": False}

    @classmethod
    def behaviour(cls, config):
        return ONE_RESULT

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        message = config.get("message", f"node {node_id!r} failed the run")
        if not isinstance(message, str):
            raise FieldProblem(f"message must be text, not {message!r}")
        self.message = message

    def call(self, cmd, ctx) -> dict:
        raise fail(self.message)
