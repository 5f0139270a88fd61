"""``hil``: a person's answer. With ``choices``, the answer names one and goes out on that port and
``result``; without, on ``result``. After ``timeout`` seconds without one, the input goes out on
``timeout``. ``prompt`` is what the person is asked."""
from __future__ import annotations

from scheduler_core import ParkForInput, RunTask

from .base import FieldProblem, NodeType, number_field, read_as_boolean, seconds_or_none

RESERVED = frozenset({"result", "timeout"})


def _choices_readable(choices) -> bool:
    return choices is None or (isinstance(choices, list) and all(isinstance(c, str) for c in choices))


class HilNode(NodeType):
    name = "hil"
    fields = {"prompt": False, "choices": False, "timeout": False}

    @classmethod
    def behaviour(cls, config):
        choices = config.get("choices")
        if not _choices_readable(choices):
            return RunTask()  # ports unknown: the bad choices are reported, the edges are not
        prompt = config.get("prompt")
        return ParkForInput(timeout=seconds_or_none(config.get("timeout")) or None,
                            choices=tuple(choices) if choices else None,
                            prompt=prompt if isinstance(prompt, str) else None)

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        if config.get("timeout") is not None:
            number_field(config["timeout"], "timeout", positive=True)
        choices = config.get("choices")
        if choices is not None:
            booleans = [c for c in choices if isinstance(c, bool)] if isinstance(choices, list) else []
            if booleans:
                raise FieldProblem(f"choices: a choice {read_as_boolean(booleans[0])}")
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
                raise FieldProblem("choices must be a non-empty list of port names")
            if len(set(choices)) != len(choices) or RESERVED & set(choices):
                raise FieldProblem("choices must be unique and may not be 'result' or 'timeout'")
        if config.get("prompt") is not None and not isinstance(config["prompt"], str):
            raise FieldProblem("prompt must be a string")
