"""``end``: once it runs, the run ends ``succeeded`` at once (WCP-43, explicit termination).

It runs no code: the core succeeds it as soon as it is ready, with its input on ``result``,
cancels what is in flight and records every other open instance ``cancelled``. A skipped ``end``
ends nothing.
"""
from __future__ import annotations

from scheduler_core import EndRun

from .base import NodeType

END = EndRun()  # the same for every node of the type: made once


class EndNode(NodeType):
    name = "end"

    @classmethod
    def behaviour(cls, config):
        return END
