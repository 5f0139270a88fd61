"""Node functions for tests/test_attempt_history.py: errors raised at a known line, and a node that
finishes after its run was failed. Kept apart so their line numbers do not move with other tests."""
import threading
import time

def look_up(value, key="missing_key", after=0.0):
    time.sleep(after)  # (a sibling started by then)
    found = dict(value or {})
    return found[key]


def fail_until(value, succeed_at=3, ctx=None):
    """Fails each attempt before ``succeed_at`` with its number in the message; then returns ``value``."""
    if ctx.attempt < succeed_at:
        raise ValueError(f"attempt {ctx.attempt} of {succeed_at - 1} failing")
    return value


posted = threading.Event()  # set once ``post_after`` has done its side effect


def post_after(value, seconds=0.4, ctx=None):
    """A side effect that cannot be taken back (a message posted), done after ``seconds`` even if the
    attempt was cancelled meanwhile: it ignores ``ctx.cancelled``, as a real call in flight would."""
    time.sleep(seconds)
    posted.set()
    return {"posted": value}


def hang(value, seconds=5.0, ctx=None):
    """Runs past any short timeout; stops early once cancelled."""
    ctx.wait_cancelled(seconds)
    return value
