"""``merge``: the delivered inputs, as one list in edge order."""
from __future__ import annotations

from scheduler_core import RunTask

from .base import NodeType


class MergeNode(NodeType):
    name = "merge"

    @classmethod
    def behaviour(cls, config):
        return RunTask(ports=("result",))

    def call(self, cmd, ctx) -> dict:
        return {"result": list(cmd.values)}
