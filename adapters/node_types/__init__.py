"""The built-in node types, one module each (see ``base.py`` for what a type is).

To add a type: write its module (a ``NodeType`` subclass with ``name``, ``fields``, ``behaviour``
and, for a task, ``call``) and register it below. ``docs/architecture.md`` says what else a new
type touches (nothing, unless it needs a new kind of behaviour in the core).
"""
from __future__ import annotations

from .base import FieldProblem, NodeType
from .branch import IfNode
from .delay import DelayNode
from .end import EndNode
from .fail import FailNode
from .foreach import ForeachNode
from .hil import HilNode
from .loop import LoopNode
from .merge import MergeNode
from .noop import NoopNode
from .python import PythonNode
from .subworkflow import SubworkflowNode
from .wait import WaitNode

NODE_TYPES: dict[str, type[NodeType]] = {t.name: t for t in (
    PythonNode,
    IfNode,
    ForeachNode,
    MergeNode,
    NoopNode,
    DelayNode,
    WaitNode,
    HilNode,
    LoopNode,
    SubworkflowNode,
    EndNode,
    FailNode,
)}


def owns_timeout(node_type: type[NodeType] | None) -> bool:
    """Whether ``timeout`` is the type's own field (how long it waits) rather than the per-attempt one."""
    return node_type is not None and "timeout" in node_type.fields


__all__ = ["NODE_TYPES", "FieldProblem", "NodeType", "owns_timeout"]
