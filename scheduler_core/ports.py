"""Ports: how a node names its outputs.

A node's result is a mapping port -> value. A plain return value goes on port ``result``; a node
that wants several ports returns ``Ports(name=value, ...)``. This module never does I/O.
"""
from collections.abc import Iterator, Mapping
from typing import Any

RESULT = "result"


class Ports(Mapping[str, Any]):
    """An immutable mapping of output port names to values."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None, /, **ports: Any) -> None:
        merged = dict(values or {})
        merged.update(ports)
        self._values = merged

    def __getitem__(self, port: str) -> Any:
        return self._values[port]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Ports({inner})"


def as_ports(value: Any) -> dict[str, Any]:
    """The port mapping a node result stands for: ``Ports`` as given, anything else on ``result``."""
    if isinstance(value, Ports):
        return dict(value)
    return {RESULT: value}
