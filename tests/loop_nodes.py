"""Node functions for the loop tests that run in child processes: each marks its start in a file."""
import time


def bump(value, ctx, marker, sleep=0.0):
    """``{"n": n + 1}``, after marking ``node[item] attempt`` and sleeping ``sleep`` seconds."""
    with open(marker, "a", encoding="utf-8") as f:
        f.write(f"{ctx.node}{''.join(f'[{i}]' for i in ctx.item)} {ctx.attempt}\n")
    time.sleep(sleep)
    return {"n": value["n"] + 1}
