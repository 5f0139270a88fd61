"""Node functions for the workflow patterns of this folder (WCP numbers after van der Aalst et al.).

Each stands in for slow outside work (an AI call, a search, a review) with a sleep that stops early
once the instance is cancelled (``ctx.wait_cancelled``), as well-behaved node code does.
"""


def answer(value, text="", seconds=0.0, ctx=None):
    """Answers ``text`` after ``seconds``; returns None at once if cancelled meanwhile."""
    if ctx is not None and ctx.wait_cancelled(seconds):
        return None
    return text


def combine(values):
    """The answers a partial join took, as one line."""
    return " + ".join(map(str, values if isinstance(values, list) else [values]))


def fetch(mirror, ctx=None):
    """Fetches from one mirror: ``mirror`` is ``{name, seconds}``."""
    if ctx is not None and ctx.wait_cancelled(mirror["seconds"]):
        return None
    return mirror["name"]
