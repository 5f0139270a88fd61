"""Node functions for random workflows: pure, so every runner must give them the same records.

A result depends only on the input, the item, the attempt and the params, never on time or on
which runner calls it.
"""
import zlib

from scheduler_core import Ports


def digest(*parts) -> int:
    """A stable small hash of plain values (the same in every process, unlike ``hash``)."""
    return zlib.crc32(repr(parts).encode())


def mix(input, ctx, salt=0, ports=("result",), fail_percent=0, flaky_attempts=0):
    """Put a hash of the input on a subset of ``ports``; fail for some inputs or early attempts."""
    h = digest(salt, input, ctx.item)
    if ctx.attempt <= flaky_attempts:
        raise ConnectionError(f"mix {salt}: attempt {ctx.attempt} is one of the {flaky_attempts} that fail")
    if h % 100 < fail_percent:
        raise ValueError(f"mix {salt} refuses input hashing to {h}")
    return Ports({port: digest(h, port) % 1000 for i, port in enumerate(ports) if (h >> (2 * i)) & 3})
