"""Node functions for the web tests' workflows (tests/web_support.py writes the workflow files)."""
import time


def slow(value, seconds=0.2, ctx=None):
    ctx.logger.info("working for %s s", seconds)
    time.sleep(seconds)
    return {"got": value}


def flaky(value, failures=1, ctx=None):
    """Fails its first ``failures`` attempts, then returns what it got."""
    if ctx.attempt <= failures:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return {"published": value}


def patient(value, seconds=30.0, ctx=None):
    """Runs until cancelled (checks ``ctx.cancelled``) or ``seconds`` pass."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not ctx.cancelled:
        time.sleep(0.02)
    return value


def echo(value):
    return value
