"""``delay``: its input goes out on ``result`` after ``seconds``; it takes no slot meanwhile."""
from __future__ import annotations

from scheduler_core import ParkForTimer

from .base import NodeType, number_field, seconds_or_none


class DelayNode(NodeType):
    name = "delay"
    fields = {"seconds": True}

    @classmethod
    def behaviour(cls, config):
        return ParkForTimer(seconds=seconds_or_none(config.get("seconds")) or 0.0)

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        number_field(config.get("seconds"), "seconds")
