"""``noop``: its input, unchanged."""
from __future__ import annotations

from scheduler_core import RunTask

from .base import NodeType


ONE_RESULT = RunTask(ports=("result",))  # the same for every node of the type: made once


class NoopNode(NodeType):
    name = "noop"

    @classmethod
    def behaviour(cls, config):
        return ONE_RESULT

    def call(self, cmd, ctx) -> dict:
        return {"result": cmd.input}
