"""``subworkflow``: run another workflow file as a child run of its own, and take its output.

Fields: ``workflow``, a path read from the folder of the workflow file that declares the node (a
workflow given as a dict has no folder: from the folder given as ``base_dir``, else the working
directory); ``params``, a mapping merged into the child's trigger (the node's input, a mapping or
null, then ``params`` over it); ``max_depth`` (default 10): how deep child runs may nest, the
first run of a chain being at depth 0: a child that would be deeper than ``max_depth`` is never
made, and the node fails with error type ``max_depth``. The common ``timeout`` bounds the child
run (the core cancels it and fails the node with ``timeout``); ``retry`` is refused (the core's
graph check): a child run is not started again.

The core parks the node (``ParkForChild``); ``adapters.children`` starts and drives the child run
and reports its end. Checking a node loads its child workflow, so a missing or invalid file is
reported where the node is declared; a workflow that names itself (recursion) is checked once.
"""
from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Mapping

from scheduler_core import ParkForChild

from ..imports import current_search_folders
from .base import FieldProblem, NodeType, rebuilt

DEFAULT_MAX_DEPTH = 10
PARKS_FOR_A_CHILD = ParkForChild()

# Files whose check is under way in this thread: a workflow that names itself (directly or through
# others) is checked once, not forever.
_CHECKING: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("flowcore_subworkflow_checking",
                                                                           default=frozenset())


_LOADED: dict[str, tuple[tuple[int, int], object]] = {}  # path -> ((mtime_ns, size), Workflow)
_LOADED_LOCK = threading.Lock()


def load_child_workflow(path: str):
    """The checked workflow of a child run's file, loaded once while the file stays the same (a
    recursion loads its file at every level)."""
    from ..workflow_file import load_workflow

    stat = os.stat(path)
    version = (stat.st_mtime_ns, stat.st_size)
    with _LOADED_LOCK:
        cached = _LOADED.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    wf = load_workflow(path)
    with _LOADED_LOCK:
        _LOADED[path] = (version, wf)
    return wf


class ChildInputProblem(ValueError):
    """The node's input cannot be a child's trigger (it is not a mapping)."""


class SubworkflowNode(NodeType):
    name = "subworkflow"
    fields = {"workflow": True, "params": False, "max_depth": False}

    @classmethod
    def behaviour(cls, config):
        return PARKS_FOR_A_CHILD

    def __init__(self, node_id, config):
        super().__init__(node_id, config)
        self.folders = current_search_folders()
        workflow = config.get("workflow")
        if not isinstance(workflow, str) or not workflow.strip():
            raise FieldProblem(f"workflow must be the path of a workflow file (YAML or JSON), not {workflow!r}")
        self.path = os.path.normpath(os.path.join(self.folders[0], workflow))
        params = config.get("params")
        if params is not None and not isinstance(params, Mapping):
            raise FieldProblem("params must be a mapping (it is merged into the child run's trigger)")
        self.params = dict(params or {})
        max_depth = config.get("max_depth", DEFAULT_MAX_DEPTH)
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise FieldProblem(f"max_depth must be a positive whole number (how deep child runs may nest), "
                               f"not {max_depth!r}")
        self.max_depth = max_depth
        self._check_child(workflow)

    def _check_child(self, given: str) -> None:
        if not os.path.isfile(self.path):
            raise FieldProblem(f"workflow {given!r}: there is no file {self.path} (a relative path is read from "
                               f"the folder of the workflow file that declares the node; for a workflow given as "
                               f"a dict, from the working directory)")
        checking = _CHECKING.get()
        if self.path in checking:
            return  # a recursion: this file's check is under way further up
        from ..workflow_file import WorkflowError

        token = _CHECKING.set(checking | {self.path})
        try:
            load_child_workflow(self.path)
        except WorkflowError as exc:
            found = "; ".join(str(p) for p in exc.problems)
            raise FieldProblem(f"workflow {given!r} ({self.path}) is not a valid workflow: {found}") from None
        finally:
            _CHECKING.reset(token)

    def __reduce__(self):
        """Pickled with the folders its path was read from (as a python node's call)."""
        return rebuilt, (type(self), self.node_id, dict(self.config), self.folders)

    def child_trigger(self, value):
        """The child's trigger: the node's input (a mapping, or null) with ``params`` merged over it."""
        if value is None:
            return dict(self.params)
        if not isinstance(value, Mapping):
            raise ChildInputProblem(f"subworkflow {self.node_id!r} needs a mapping (or null) as its input, to "
                                    f"merge its params into; got {type(value).__name__}")
        return {**value, **self.params}
