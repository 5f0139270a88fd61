"""``wait``: waits for input given on resume, which goes out on ``completed`` and ``result``; after
``timeout`` seconds without one, its own input goes out on ``timeout``."""
from __future__ import annotations

from scheduler_core import ParkForInput

from .base import NodeType, number_field, seconds_or_none


class WaitNode(NodeType):
    name = "wait"
    fields = {"timeout": False}

    @classmethod
    def behaviour(cls, config):
        return ParkForInput(timeout=seconds_or_none(config.get("timeout")) or None, answer_port="completed")

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        if config.get("timeout") is not None:
            number_field(config["timeout"], "timeout", positive=True)
