"""Adapters: everything that touches the world outside the core (files, node code, stores, the CLI).

The public Python API is ``Engine`` and ``load_workflow``.
"""
from .engine import Engine, RunInterrupted, RunRefused, RunResult
from .inbox import RequestPending
from .store import MemoryStore, SqliteStore, StoreError
from .workflow_file import WorkflowError, load_workflow
from .worker import Worker

__all__ = ["Engine", "RunInterrupted", "RunRefused", "RunResult", "RequestPending", "Worker", "MemoryStore", "SqliteStore", "StoreError", "WorkflowError",
           "load_workflow"]
