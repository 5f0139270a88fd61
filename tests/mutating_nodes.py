"""Node functions that change the values they are given (or keep and change what they returned).

Workflows call them as ``mutating_nodes:<function>``. They stand in for user code that treats its
input as its own: appending to a list, setting a key, editing ``ctx.inputs``.
"""
kept: list = []  # what ``keep_returned`` returned, still held by this module


def reset() -> None:
    kept.clear()


def fresh_list(value):
    return ["x", {"nested": ["y"]}]


def fresh_dict(value):
    return {"n": 1, "tags": ["a"], "inner": {"k": "v"}}


def fresh_records(value):
    return [{"n": 1, "tags": ["a"]}, {"n": 2, "tags": ["b"]}]


def append_to(value):
    """Appends to its input list (and to a list nested in it): returns how long the list got."""
    value.append("appended")
    for element in value:
        if isinstance(element, dict):
            element.setdefault("nested", []).append("appended")
    return len(value)


def change_dict(value):
    """Sets a key, appends to a nested list and edits a nested dict of its input."""
    value["n"] = 99
    value["tags"].append("changed")
    value["inner"]["k"] = "changed"
    return "changed"


def change_item(value):
    """One foreach item (a dict): changed in place, passed on."""
    value["n"] += 100
    value["tags"].append("changed")
    return value


def change_inputs(value, ctx):
    """Edits every value of ``ctx.inputs`` (lists and dicts) and the mapping itself."""
    for v in list(ctx.inputs.values()):
        if isinstance(v, list):
            v.append("changed")
        elif isinstance(v, dict):
            v["n"] = 99
            v["tags"].append("changed")
    ctx.inputs["extra"] = "added"
    return "changed"


def echo(value):
    return value


def keep_returned(value):
    """Returns a list this module keeps: a later node changes it (``change_kept``)."""
    kept[:] = ["returned"]
    return kept


def change_kept(value):
    kept.append("changed after it was returned")
    return len(kept)


def append_to_param(value, seen=()):
    """Appends its input to a list param (``seen``) and returns what the list then holds."""
    seen.append(value)
    return list(seen)
