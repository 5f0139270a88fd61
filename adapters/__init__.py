"""Adapters: everything that touches the world outside the core (files, node code, stores, the CLI).

The public Python API is ``Engine`` and ``load_workflow``.
"""
from .engine import Engine, RunInterrupted, RunRefused, RunResult
from .store import MemoryStore, SqliteStore, StoreError
from .workflow_file import WorkflowError, load_workflow

__all__ = ["Engine", "RunInterrupted", "RunRefused", "RunResult", "MemoryStore", "SqliteStore", "StoreError", "WorkflowError",
           "load_workflow"]
