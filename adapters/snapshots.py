"""Snapshots: a run's ``State`` written as data (tagged JSON), read back without running any code.

A snapshot is a cache of a replay: the state after a run's first N steps, so that a later load
replays only what came after. It is never the source of truth, and what a store hands back is
not trusted: decoding builds only the values listed below, so a crafted snapshot can at worst be
refused (and the log replayed in full), never run code. (A pickle would run whatever it names.)

Format ``FORMAT``: one JSON object ``{"format": FORMAT, "state": {field: value, ...}, "deep": [value, ...]}``
holding every field of ``State`` but ``graph`` (which a load compiles from the run's definition).
A value is one of:

- ``null``, ``true``/``false``, a number, a string: itself. A float that is not finite is
  ``["f", "inf"]``, ``["f", "-inf"]`` or ``["f", "nan"]`` (JSON has no such numbers).
- ``["l", v, ...]`` a list, ``["t", v, ...]`` a tuple, ``["d", k, v, k, v, ...]`` a dict and
  ``["m", k, v, ...]`` an ``immutables.Map`` (keys are values too: tuples, say).
- ``[ClassName, v, ...]`` an instance of a class of ``CLASSES`` (the core's records, timers...),
  its fields in declaration order; an enum member is ``[ClassName, its value]``.
- ``["@", i]`` the value at ``deep[i]``, always with ``i`` greater than the index of the value
  that holds it. Values nested more than ``MAX_DEPTH`` deep are cut out into ``deep``: the core's
  cons lists and heaps nest as deep as they are long (100,000 for a large fan-out), and neither
  JSON's parser nor this codec may recurse that far.

A snapshot is only used by a core whose state has the same shape: ``version()`` is the format
and a digest of the field names of ``State`` and of every class in ``CLASSES``. Adding a field to
``State`` needs nothing here; a new class that the state holds needs one line in ``CLASSES``.
"""
from __future__ import annotations

import enum
import functools
import hashlib
import json
import math

import attrs
from immutables import Map

from scheduler_core.state import Payload, Record, State, Timer
from scheduler_core.step import SelectFailed

FORMAT = "flowcore-snapshot/1"
MAX_DEPTH = 48

# Every class a State may hold besides JSON's own values, tuples, dicts and Maps. Decoding builds
# these and nothing else.
CLASSES = {cls.__name__: cls for cls in (Record, Payload, Timer, SelectFailed)}


class SnapshotUnsupported(ValueError):
    """The state holds a value this format cannot write (the run goes on without a snapshot)."""


class SnapshotInvalid(ValueError):
    """The text is not a snapshot of this format and shape (a load replays the log instead)."""


def _fields_of(cls) -> tuple:
    if issubclass(cls, enum.Enum):
        return ("value",)
    if attrs.has(cls):
        return tuple(f.name for f in attrs.fields(cls))
    return tuple(cls._fields)  # a named tuple


_FIELDS = {cls: _fields_of(cls) for cls in CLASSES.values()}
_BY_CLASS = {cls: (name, _FIELDS[cls]) for name, cls in CLASSES.items()}
_STATE_FIELDS = tuple(f.name for f in attrs.fields(State) if f.name != "graph")
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_BUILTIN_TAGS = frozenset({"f", "l", "t", "d", "m", "@"})
assert not _BUILTIN_TAGS & CLASSES.keys()


@functools.cache
def version() -> str:
    """The format and a digest of the state's shape: what a snapshot must match to be used."""
    shape = [["State", *_STATE_FIELDS]] + [[name, *_FIELDS[cls]] for name, cls in sorted(CLASSES.items())]
    return f"{FORMAT}:{hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]}"


# -- writing ------------------------------------------------------------------------------------

def encode_state(state: State) -> str:
    """The snapshot text of ``state`` (its graph left out); ``SnapshotUnsupported`` if it holds a
    value of a type the format does not know."""
    deep: list = []
    pending: list = []
    encode = _encoder(deep, pending)
    doc = {"format": FORMAT, "state": {name: encode(getattr(state, name), 0) for name in _STATE_FIELDS}}
    while pending:  # values cut out for depth: each is encoded from depth 0, into its own slot
        index, value = pending.pop()
        deep[index] = encode(value, 0)
    doc["deep"] = deep
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def _encoder(deep: list, pending: list):
    def encode(v, depth: int):
        t = type(v)
        if t is str or t is int or v is None or t is bool:
            return v
        if t is float:
            return v if math.isfinite(v) else ["f", repr(v)]
        if depth >= MAX_DEPTH:
            deep.append(None)
            pending.append((len(deep) - 1, v))
            return ["@", len(deep) - 1]
        depth += 1
        if t is tuple or t is list:
            out = ["t" if t is tuple else "l"]
            for x in v:
                out.append(encode(x, depth))
            return out
        if t is dict or t is Map:
            out = ["d" if t is dict else "m"]
            for k, x in v.items():
                out.append(encode(k, depth))
                out.append(encode(x, depth))
            return out
        spec = _BY_CLASS.get(t)
        if spec is None:
            raise SnapshotUnsupported(f"a snapshot cannot hold a {t.__module__}.{t.__qualname__}")
        name, fields = spec
        out = [name]
        for f in fields:
            out.append(encode(getattr(v, f), depth))
        return out
    return encode


# -- reading ------------------------------------------------------------------------------------

def decode_state(text, graph) -> State:
    """The state a snapshot text holds, with ``graph``; ``SnapshotInvalid`` for anything that is not
    a well-formed snapshot of this format."""
    if not isinstance(text, str):
        raise SnapshotInvalid("a snapshot is text")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SnapshotInvalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotInvalid("not a flowcore snapshot of format " + FORMAT)
    fields, deep = doc.get("state"), doc.get("deep")
    if not isinstance(fields, dict) or set(fields) != set(_STATE_FIELDS) or not isinstance(deep, list):
        raise SnapshotInvalid("the snapshot's state does not have the fields of this core's State")
    try:
        decode = _decoder(deep)
        values = {name: decode(value) for name, value in fields.items()}
        return State(graph=graph, **values)
    except SnapshotInvalid:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        raise SnapshotInvalid(f"malformed snapshot: {exc!r}") from None


def _decoder(deep: list):
    done: list = [None] * len(deep)
    current = [len(deep)]  # refs may only point past the slot being decoded: no cycles, no forward gaps

    def decode(v):
        if type(v) is not list:
            if type(v) is dict:
                raise SnapshotInvalid("a JSON object inside a value")
            return v
        tag = v[0]
        if tag == "t":
            return tuple([decode(x) for x in v[1:]])
        if tag == "l":
            return [decode(x) for x in v[1:]]
        if tag == "d" or tag == "m":
            items = [decode(x) for x in v[1:]]
            pairs = zip(items[0::2], items[1::2])
            return dict(pairs) if tag == "d" else Map(pairs)
        if tag == "f":
            return _NON_FINITE[v[1]]
        if tag == "@":
            index = v[1]
            if type(index) is not int or not current[0] < index < len(deep):
                raise SnapshotInvalid(f"a reference to slot {index!r} from slot {current[0]}")
            return done[index]
        cls = CLASSES.get(tag) if type(tag) is str else None
        if cls is None:
            raise SnapshotInvalid(f"{tag!r} is not a value a snapshot may hold")
        fields = _FIELDS[cls]
        args = [decode(x) for x in v[1:]]
        if len(args) != len(fields):
            raise SnapshotInvalid(f"{tag} has {len(fields)} fields, the snapshot gives {len(args)}")
        if issubclass(cls, enum.Enum):
            return cls(args[0])
        if attrs.has(cls):
            return cls(**dict(zip(fields, args)))
        return cls._make(args)

    for index in range(len(deep) - 1, -1, -1):
        current[0] = index
        done[index] = decode(deep[index])
    current[0] = -1
    return decode
