"""flowcore's scheduling core: the workflow model, its validation, the run state, and ``step``.

Pure: no I/O, no clock, no threads, no randomness. Never imports ``runners`` or ``adapters``.
"""
from .commands import AwaitInput, CancelNode, CancelTimer, RunFinished, StartNode, StartTimer
from .events import (EVENT_TYPES, CancelConfirmed, CapChanged, CancelRequested, InputProvided, NodeFailed, NodeStarted,
                     NodeSucceeded, Resumed, RunStarted, TimerFired)
from .graph import Graph, Problem, WorkflowInvalid, compile_workflow
from .model import Edge, Node, Retry, Settings, Workflow
from .ports import RESULT, Ports, as_ports
from .replay import ReplayDiverged, fingerprint, replay
from .state import TERMINAL, Record, State, initial_state, sequence_keys
from .step import InvalidEvent, input_problem, step

__all__ = [
    "AwaitInput", "CancelNode", "CancelTimer", "RunFinished", "StartNode", "StartTimer",
    "EVENT_TYPES", "CancelConfirmed", "CapChanged", "CancelRequested", "InputProvided", "NodeFailed", "NodeStarted",
    "NodeSucceeded", "Resumed", "RunStarted", "TimerFired",
    "Graph", "Problem", "WorkflowInvalid", "compile_workflow",
    "Edge", "Node", "Retry", "Settings", "Workflow",
    "RESULT", "Ports", "as_ports",
    "ReplayDiverged", "fingerprint", "replay",
    "TERMINAL", "Record", "State", "initial_state", "sequence_keys",
    "InvalidEvent", "input_problem", "step",
]
