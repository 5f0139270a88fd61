"""``foreach``: fan out over a list (``items``, a JMESPath expression, default the input itself),
at most ``max_parallel`` items at once; the list also goes out whole on ``result``."""
from __future__ import annotations

from scheduler_core import FanOut, Ports

from .base import FieldProblem, NodeType, jmespath_field


def _cap(value):
    ok = value is None or (not isinstance(value, bool) and isinstance(value, int) and value >= 1)
    return ok, value if ok else None


class ForeachNode(NodeType):
    name = "foreach"
    fields = {"items": False, "max_parallel": False}

    @classmethod
    def behaviour(cls, config):
        return FanOut(max_parallel=_cap(config.get("max_parallel"))[1], item_port="iteration")

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        self.items = jmespath_field(config["items"], "items") if config.get("items") is not None else None
        cap = config.get("max_parallel")
        if not _cap(cap)[0]:
            raise FieldProblem(f"max_parallel must be a whole number >= 1, not {cap!r}")

    def call(self, cmd, ctx) -> dict:
        items = self.items.search(cmd.input) if self.items is not None else cmd.input
        if not isinstance(items, list):
            raise TypeError(f"foreach {self.node_id!r} needs a list of items, got {type(items).__name__}")
        return dict(Ports(result=items, iteration=items))
