"""Values node code gets to keep: copies of what the records hold, and records that node code cannot reach.

The core hands every consumer of an output the very object the producer's record holds (and a node
with several inputs the very list the run's state keeps for it). Node code is free to change what it
is given (append to its input list, set a key), so a python node's function gets a copy of its own
(``private_copy``: its input, its params, ``ctx.inputs``), and a result is recorded as it was when
its node returned (``recorded_ports``): a node that keeps what it returned and changes it later
changes nothing recorded either. Without this, siblings see each other's changes (a data race under
the thread runner) and a stored run replays to a state other than the one it ran to.

The copy is made for data: dicts, lists and tuples are copied recursively, and strings, numbers,
bools and None are shared as they are, at no cost beyond a type check; anything else is left to
``copy.deepcopy``, and an object it cannot copy (a lock, a client, an open file: only in-memory runs
pass such things, a stored run keeps JSON only) is handed on as it is. Shared parts stay shared and
cycles are kept, as with ``deepcopy``. This module never changes a value it is given.
"""
from __future__ import annotations

import copy
import operator

ATOMIC = frozenset({str, int, float, bool, type(None), bytes, complex})  # values no one can change


def private_copy(value):
    """A copy of ``value`` that shares nothing changeable with it (``value`` itself if nothing in it can change)."""
    kind = type(value)
    if kind in ATOMIC:
        return value
    # The common small cases (a list of inputs, a dict of params) hold scalars only: a shallow copy.
    if kind is list:
        return value.copy() if ATOMIC.issuperset(map(type, value)) else _copy(value, {})
    if kind is dict:
        return value.copy() if ATOMIC.issuperset(map(type, value.values())) else _copy(value, {})
    return _copy(value, {})


def recorded_ports(ports: dict) -> dict:
    """The ports to record for a result: copies of the values node code may still hold.

    The port mapping itself is always made by the caller (``as_ports``); only its values can be held."""
    for value in ports.values():
        if type(value) not in ATOMIC:
            memo: dict = {}
            return {port: _copy(value, memo) for port, value in ports.items()}
    return ports


def _copy(value, memo: dict):
    kind = type(value)
    if kind in ATOMIC:
        return value
    done = memo.get(id(value))
    if done is not None:
        return done
    if kind is dict:
        new = memo[id(value)] = {}
        for key, element in value.items():
            new[key] = element if type(element) in ATOMIC else _copy(element, memo)
        return new
    if kind is list:
        new = memo[id(value)] = []
        new.extend([element if type(element) in ATOMIC else _copy(element, memo) for element in value])
        return new
    if kind is tuple:
        elements = [_copy(element, memo) for element in value]
        new = memo[id(value)] = value if all(map(operator.is_, elements, value)) else tuple(elements)
        return new
    return _copy_other(value, memo)


def _copy_other(value, memo: dict):
    try:
        new = copy.deepcopy(value)
    except Exception:  # what deepcopy refuses (locks, clients, generators) can only be handed on as it is
        new = value
    memo[id(value)] = new
    return new
