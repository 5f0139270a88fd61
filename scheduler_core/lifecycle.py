"""The instance lifecycle: an instance's statuses, what moves it, and the table of legal moves.

In the spirit of h11's ``_state.py``: every change of an instance's status in ``step`` goes
through ``next_status(status, move)``, which looks the pair up in ``LIFECYCLE`` and raises
``IllegalTransition`` at once for a pair the table does not have. The table *is* the lifecycle;
``docs/architecture.md`` prints it, and a test checks that every row of it is exercised.

An instance that has no record yet is ``PENDING`` (ready or not reached: the core makes a
record when an instance first starts, parks, is skipped, fails before starting or is cancelled).

::

    PENDING --start--> RUNNING --succeed--> SUCCEEDED
       |                 |  \\--fail------> FAILED
       |                 |   \\-retry_later-> WAITING --retry_due--> PENDING
       |--park--> WAITING --succeed (timer fired, answer, wait timed out, loop done, child run succeeded)--> SUCCEEDED
       |            WAITING --fail--> FAILED  (a loop: its body failed, or max_iterations ran out; a child run failed)
       |--succeed--> SUCCEEDED       (an ``end`` node: it succeeds once ready, and ends the run)
       |--skip--> SKIPPED            (every input dead, or too few left for its join)
       |--fail--> FAILED             (a select on an input edge failed)
       any of PENDING, RUNNING, WAITING --cancel--> CANCELLED  (the run ended, or a node cancel)
       RUNNING --restart--> RUNNING  (re-dispatched after the process that ran it died)
"""
from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """An instance's status (a ``str``: it is what ``--json`` prints)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunStatus(enum.StrEnum):
    """A run's status in the core (the store adds ``queued`` and reports ``waiting`` for an idle run)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Move(enum.StrEnum):
    """What happens to an instance (the 'event' of the lifecycle table)."""

    START = "start"  # an attempt is dispatched to a runner
    PARK = "park"  # it waits for a timer or an answer, taking no slot
    SUCCEED = "succeed"  # its attempt succeeded, its timer fired, it was answered, or an ``end`` became ready
    FAIL = "fail"  # its last attempt failed (or its input could not be selected)
    RETRY_LATER = "retry_later"  # an attempt failed and another is due after the retry delay
    RETRY_DUE = "retry_due"  # the retry delay is over: ready again
    SKIP = "skip"  # every input edge is dead
    CANCEL = "cancel"  # fail-fast, a cancel of the run or of its node, or the run ended before it did
    RESTART = "restart"  # re-dispatched after a crash (the attempt number stays)


P, R, W = Status.PENDING, Status.RUNNING, Status.WAITING

LIFECYCLE: dict[tuple[Status, Move], Status] = {
    (P, Move.START): R,
    (P, Move.PARK): W,
    (P, Move.SUCCEED): Status.SUCCEEDED,
    (P, Move.SKIP): Status.SKIPPED,
    (P, Move.FAIL): Status.FAILED,
    (P, Move.CANCEL): Status.CANCELLED,
    (R, Move.SUCCEED): Status.SUCCEEDED,
    (R, Move.FAIL): Status.FAILED,
    (R, Move.RETRY_LATER): W,
    (R, Move.CANCEL): Status.CANCELLED,
    (R, Move.RESTART): R,
    (W, Move.SUCCEED): Status.SUCCEEDED,
    (W, Move.FAIL): Status.FAILED,
    (W, Move.RETRY_DUE): P,
    (W, Move.CANCEL): Status.CANCELLED,
}

TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED})
OPEN = frozenset({P, R, W})
RUN_ENDED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class IllegalTransition(RuntimeError):
    """``step`` tried to move an instance in a way the lifecycle table does not allow: a core bug."""


def next_status(status: Status, move: Move, where: str = "") -> Status:
    try:
        return LIFECYCLE[(status, move)]
    except KeyError:
        raise IllegalTransition(f"{where or 'an instance'}: no move {move.value!r} from {status.value!r} "
                                f"in the lifecycle table") from None
