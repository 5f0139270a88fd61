"""Node functions of wcp22_recursion.yaml (WCP-22, recursion with a decreasing counter)."""


def count_down(state):
    """One level down: the counter less one, and the counters seen so far."""
    return {"n": state["n"] - 1, "visited": [*state.get("visited", []), state["n"]]}


def bottom(state):
    """The counter reached 0: what every level above passes back up."""
    return {"n": state["n"], "visited": state.get("visited", [])}
