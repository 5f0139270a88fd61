"""``if``: route the input to ``true`` or ``false`` by a JMESPath condition (JMESPath truth)."""
from __future__ import annotations

from scheduler_core import RunTask

from .base import NodeType, jmespath_field

PORTS = ("true", "false")


def truthy(value) -> bool:
    """JMESPath truth: false, null, and empty strings, lists and objects are false; 0 is true."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)) and not value:
        return False
    return True


ROUTES = RunTask(ports=PORTS)  # the same for every node of the type: made once


class IfNode(NodeType):
    name = "if"
    fields = {"condition": True}

    @classmethod
    def behaviour(cls, config):
        return ROUTES

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        self.condition = jmespath_field(config.get("condition"), "condition")

    def call(self, cmd, ctx) -> dict:
        port = "true" if truthy(self.condition.search(cmd.input)) else "false"
        return {port: cmd.input}
