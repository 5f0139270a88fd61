"""flowcore's scheduling core: the workflow model, its validation, the run state, and ``step``.

Pure: no I/O, no clock, no threads, no randomness. Never imports ``runners`` or ``adapters``.
"""
from .behaviour import (MAX_ITERATIONS, PARKS, EndRun, FanOut, Kind, Loop, ParkForChild, ParkForInput, ParkForTimer,
                        RunTask)
from .commands import (AwaitInput, CancelChild, CancelNode, CancelTimer, Refused, RunFinished, StartChild, StartNode,
                       StartTimer)
from .events import (EVENT_TYPES, CancelConfirmed, ChildEnded, CapChanged, CancelRequested, Draining, InputProvided,
                     NodeCancelRequested, NodeFailed, NodeSucceeded, Resumed, RunStarted, TimerFired)
from .graph import Graph, Problem, WorkflowInvalid, compile_workflow
from .lifecycle import LIFECYCLE, IllegalTransition, Move, RunStatus, Status
from .model import JOIN_ALL, JOIN_ANY, MAX_ATTEMPTS, MAX_BACKOFF, MAX_SECONDS, Edge, Node, Retry, Settings, Workflow
from .ports import RESULT, Ports, as_ports
from .replay import ReplayDiverged, fingerprint, replay
from .state import (TERMINAL, Attempt, Error, Record, State, attempts_of, initial_state, instance_name,
                    sequence_keys)
from .step import InvalidEvent, TimerKind, cancel_problem, input_problem, step
from .validate import InvalidState, validate_state

__all__ = [
    "MAX_ITERATIONS", "PARKS", "EndRun", "FanOut", "Kind", "Loop", "ParkForChild", "ParkForInput", "ParkForTimer", "RunTask",
    "AwaitInput", "CancelNode", "CancelTimer", "Refused", "RunFinished", "StartNode", "StartTimer",
    "CancelChild", "StartChild", "ChildEnded",
    "EVENT_TYPES", "CancelConfirmed", "CapChanged", "CancelRequested", "Draining", "InputProvided",
    "NodeCancelRequested", "NodeFailed", "NodeSucceeded", "Resumed", "RunStarted", "TimerFired",
    "Graph", "Problem", "WorkflowInvalid", "compile_workflow",
    "LIFECYCLE", "IllegalTransition", "Move", "RunStatus", "Status",
    "JOIN_ALL", "JOIN_ANY", "MAX_ATTEMPTS", "MAX_BACKOFF", "MAX_SECONDS", "Edge", "Node", "Retry", "Settings", "Workflow",
    "RESULT", "Ports", "as_ports",
    "ReplayDiverged", "fingerprint", "replay",
    "TERMINAL", "Attempt", "Error", "attempts_of", "instance_name", "Record", "State", "initial_state",
    "sequence_keys",
    "InvalidEvent", "TimerKind", "cancel_problem", "input_problem", "step",
    "InvalidState", "validate_state",
]
