"""``noop``: its input, unchanged."""
from __future__ import annotations

from scheduler_core import RunTask

from .base import NodeType


class NoopNode(NodeType):
    name = "noop"

    @classmethod
    def behaviour(cls, config):
        return RunTask(ports=("result",))

    def call(self, cmd, ctx) -> dict:
        return {"result": cmd.input}
