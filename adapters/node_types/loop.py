"""``loop``: run an inline workflow (``body``: ``nodes`` and ``connections``) again and again, its
roots getting the loop's input first and then the output of the body's single sink, until
``until`` (JMESPath, on that output) is true, at most ``max_iterations`` times; the last output
goes out on ``result``. The core runs it (``scheduler_core.Loop``): this module only reads it.

The body's nodes are parsed as any workflow's (``workflow_file.parse_body``), with their own
locations (``nodes[3].body.nodes[1]``); the graph checks ``until``, ``max_iterations`` and the
body's shape (one sink, connections between its own nodes).
"""
from __future__ import annotations

from scheduler_core import Loop

from .base import NodeType


class LoopNode(NodeType):
    name = "loop"
    fields = {"body": True, "until": True, "max_iterations": True}
    nests = True

    @classmethod
    def behaviour(cls, config):
        return cls.behaviour_reporting(config, "body", [])

    @classmethod
    def behaviour_reporting(cls, config, where: str, problems: list):
        """The behaviour, its body parsed; what is wrong with the body goes to ``problems``."""
        from ..workflow_file import parse_body  # (the workflow file module imports the node types)

        nodes, edges = parse_body(config.get("body"), where, problems)
        return Loop(until=config.get("until"), max_iterations=config.get("max_iterations"), nodes=nodes, edges=edges)
