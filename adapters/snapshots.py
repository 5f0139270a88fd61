"""Snapshots: a run's ``State`` written as data (tagged JSON), read back without running any code.

A snapshot is a cache of a replay: the state after a run's first N steps, so that a later load
replays only what came after. It is never the source of truth, and what a store hands back is
not trusted: decoding builds only the values listed below, so a crafted snapshot can at worst be
refused (and the log replayed in full), never run code. (A pickle would run whatever it names.)

Format ``FORMAT``: lines of JSON (``json.dumps`` never writes a newline inside a value). The first
is ``{"format": FORMAT, "deep": N}``; the next ``N`` are the values ``deep[0]`` .. ``deep[N-1]``
(see ``@`` below); the last is the state: an array of ``[field name, value]`` pairs, one for every
field of ``State`` but ``graph`` (which a load compiles from the run's definition). A value is:

- ``null``, ``true``/``false``, a number, a string: itself; an array: a list of values.
- an object with exactly one key, which says what it is:
  ``{"t": [v, ...]}`` a tuple; ``{"d": [k, v, k, v, ...]}`` a dict and ``{"m": [k, v, ...]}`` an
  ``immutables.Map`` (keys are values too: tuples, say); ``{"k": [n, [i, ...], v, ...]}`` a Map
  whose keys are all instance keys ``(n, (i, ...))``, as triples; ``{"r": [ClassName, [n, ...],
  [[i, ...], ...], column, ...]}`` such a map whose values are all of one class of ``TYPED_FIELDS``
  (the records), one column per field; ``{"f": "inf"}`` (or ``"-inf"``,
  ``"nan"``) a float JSON has no number for; ``{ClassName: [v, ...]}`` an instance of a class of
  ``CLASSES`` (the core's records, timers...), its fields in declaration order, those of
  ``TYPED_FIELDS`` untagged (a tuple as a list, an enum member as its value, a dict as
  ``[k, v, k, v, ...]``) (an enum member: ``{ClassName: its value}``, a status is
  ``{"Status": "succeeded"}``); ``{"@": i}`` the value ``deep[i]``, where ``i`` is greater than the index of
  the value that holds the reference. Values nested more than ``MAX_DEPTH`` deep are cut out into
  ``deep``: the core's cons lists and heaps nest as deep as they are long (100,000 for a large
  fan-out), and neither JSON's parser nor this codec may recurse that far.

Each line is parsed by ``json.loads`` with a hook that builds the tagged objects: the parsing, and
the lists, stay in C, and the hook runs once per tuple, dict, Map or record (once for a map of
records by column).

A snapshot is only used by a core whose state has the same shape: ``version()`` is the format
and a digest of the field names of ``State`` and of every class in ``CLASSES``. Adding a field to
``State`` needs nothing here; a new class that the state holds needs one line in ``CLASSES``.
"""
from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Hashable

import attrs
from immutables import Map

from scheduler_core.lifecycle import RunStatus, Status
from scheduler_core.state import Attempt, Error, Record, State, Timer
from scheduler_core.step import SelectFailed

FORMAT = "flowcore-snapshot/4"  # 2: an enum member is its value; 3: typed record fields, instance-keyed maps;
# 4: a record's ports as a typed field, the records by column
MAX_DEPTH = 48

# Every class a State may hold besides JSON's own values, tuples, dicts and Maps. Decoding builds
# these and nothing else.
CLASSES = {cls.__name__: cls for cls in (Record, Attempt, Error, Timer, SelectFailed, Status, RunStatus)}


# Fields of a class whose type is fixed, written in plain JSON and turned back by the class's builder:
# a tuple as a list, an enum member as its value, a dict (or None) as a list of keys and values,
# [k, v, k, v, ...] (or null). (A record is most of a state: its item path and logs are tuples, its
# status an enum, and tagging each of them made the text a quarter larger.) The records map is written
# by column (``{"r": ...}``): no object per record and per ports dict for the parser to hand to the
# hook, each column turned back in one go; the 100,000-node DAG's snapshot decodes in 0.33 s, not 0.46.
TYPED_FIELDS = {Record: {"item": tuple, "status": Status, "ports": dict, "logs": tuple, "history": tuple},
                Attempt: {"status": Status, "ports": dict}}


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
# per class with typed fields: for each field in order, its type (tuple, dict or an enum) or None
_TYPED = {cls: tuple(types.get(f) for f in _FIELDS[cls]) for cls, types in TYPED_FIELDS.items()}
_BY_CLASS = {cls: (name, _FIELDS[cls]) for name, cls in CLASSES.items()}
_STATE_FIELDS = tuple(f.name for f in attrs.fields(State) if f.name != "graph")
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_PLAIN = frozenset({str, int, bool, type(None)})  # written as they are
_PLAIN_OR_FLOAT = _PLAIN | {float}
_BUILTIN_TAGS = frozenset({"f", "t", "d", "m", "k", "@"})
assert not _BUILTIN_TAGS & CLASSES.keys()


@functools.cache
def version() -> str:
    """The format and a digest of the state's shape: what a snapshot must match to be used."""
    shape = [["State", *_STATE_FIELDS]] + [[name, *_FIELDS[cls]] for name, cls in sorted(CLASSES.items())]
    shape += [[cls.__name__, *sorted(f"{f}:{t.__name__}" for f, t in types.items())]
              for cls, types in TYPED_FIELDS.items()]
    return f"{FORMAT}:{hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]}"


# -- writing ------------------------------------------------------------------------------------

def encode_state(state: State) -> str:
    """The snapshot text of ``state`` (its graph left out); ``SnapshotUnsupported`` if it holds a
    value of a type the format does not know."""
    try:  # floats inline, as JSON numbers: a state seldom holds one that is not finite
        return _encode_state(state, finite_only=True)
    except ValueError as exc:  # json.dumps met inf or nan
        if isinstance(exc, SnapshotUnsupported):
            raise
        return _encode_state(state, finite_only=False)


def _encode_state(state: State, finite_only: bool) -> str:
    deep: list = []
    pending: list = []
    encode = _encoder(deep, pending, _PLAIN_OR_FLOAT if finite_only else _PLAIN)
    fields = [[name, encode(getattr(state, name), 0)] for name in _STATE_FIELDS]
    while pending:  # values cut out for depth: each is encoded from depth 0, into its own slot
        index, value = pending.pop()
        deep[index] = encode(value, 0)
    lines = [{"format": FORMAT, "deep": len(deep)}, *deep, fields]
    return "\n".join(_dumps(line) for line in lines)


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode


def _encoder(deep: list, pending: list, inline: frozenset):
    """``encode(value, depth)``. Children of a type in ``inline`` are written as they are, without
    a call: they are most of a state."""
    def encode(v, depth: int):
        t = type(v)
        if t in inline:
            return v
        if t is float:
            return v if v - v == 0.0 else {"f": repr(v)}  # inf - inf and nan - nan are nan
        if depth >= MAX_DEPTH:
            deep.append(None)
            pending.append((len(deep) - 1, v))
            return {"@": len(deep) - 1}
        depth += 1
        if t is tuple or t is list:
            out = [x if type(x) in inline else encode(x, depth) for x in v]
            return {"t": out} if t is tuple else out
        if t is Map and v and _instance_keyed(v):
            cls = _one_typed_class(v)
            if cls is not None:  # the records: by column
                nodes, paths, rows = [], [], []
                for (n, path), x in v.items():
                    nodes.append(n)
                    paths.append(list(path))
                    rows.append(x)
                columns = [_typed_column(list(column), kind, depth + 1, encode, inline)
                           for column, kind in zip(zip(*rows), _TYPED[cls])]
                return {"r": [_BY_CLASS[cls][0], nodes, paths, *columns]}
            out = []
            for (n, path), x in v.items():
                out.append(n)
                out.append(list(path))
                out.append(x if type(x) in inline else encode(x, depth))
            return {"k": out}
        if t is dict or t is Map:
            out = []
            for k, x in v.items():
                out.append(k if type(k) in inline else encode(k, depth))
                out.append(x if type(x) in inline else encode(x, depth))
            return {"d" if t is dict else "m": out}
        spec = _BY_CLASS.get(t)
        if spec is None:
            raise SnapshotUnsupported(f"a snapshot cannot hold a {t.__module__}.{t.__qualname__}")
        if isinstance(v, enum.Enum):  # a member, by its value (a status: a string)
            return {spec[0]: v.value}
        if not issubclass(t, tuple):  # a named tuple iterates its fields in order
            v = [getattr(v, f) for f in spec[1]]
        typed = _TYPED.get(t)
        if typed is None:
            return {spec[0]: [x if type(x) in inline else encode(x, depth) for x in v]}
        return {spec[0]: [_typed_column([x], kind, depth, encode, inline)[0] for x, kind in zip(v, typed)]}
    return encode


def _typed_column(column: list, kind, depth: int, encode, inline) -> list:
    """Values of one field of a class with typed fields, written as its ``kind`` says (None: any value)."""
    if kind is None:
        return [x if type(x) in inline else encode(x, depth) for x in column]
    if kind is tuple:
        return [[y if type(y) in inline else encode(y, depth) for y in x] for x in column]
    if kind is dict:
        return [None if x is None else _flat_items(x, depth, encode, inline) for x in column]
    return [x.value for x in column]  # an enum


def _one_typed_class(m: Map):
    """The class of every value of ``m`` if they are all of one (named tuple) class with typed fields
    (a state's records), else None."""
    cls = type(next(iter(m.values())))
    if cls not in _TYPED or not issubclass(cls, tuple):
        return None
    for x in m.values():
        if type(x) is not cls:
            return None
    return cls


# -- reading ------------------------------------------------------------------------------------

def decode_state(text, graph) -> State:
    """The state a snapshot text holds, with ``graph``; ``SnapshotInvalid`` for anything that is not
    a well-formed snapshot of this format."""
    if not isinstance(text, str):
        raise SnapshotInvalid("a snapshot is text")
    lines = text.split("\n")
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SnapshotInvalid("not a flowcore snapshot of format " + FORMAT)
        if header.get("deep") != len(lines) - 2:
            raise SnapshotInvalid("the snapshot is cut short, or has lines it should not")
        fields = _Reader(len(lines) - 2).read(lines[1:])
        if not isinstance(fields, list) or not all(isinstance(f, list) and len(f) == 2 for f in fields):
            raise SnapshotInvalid("the state is not a list of fields")
        values = dict(fields)
        if set(values) != set(_STATE_FIELDS) or len(fields) != len(_STATE_FIELDS):
            raise SnapshotInvalid("the snapshot's state does not have the fields of this core's State")
        return State(graph=graph, **values)
    except SnapshotInvalid:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        raise SnapshotInvalid(f"malformed snapshot: {exc!r}") from None


class _Reader:
    """Parses the value lines, the last first, so that a reference is always to a value built already."""

    def __init__(self, slots: int):
        self.done: list = [None] * slots
        self.current = slots

    def read(self, lines: list):
        for index in range(len(self.done) - 1, -1, -1):
            self.current = index
            self.done[index] = json.loads(lines[index], object_pairs_hook=self.build)
        self.current = -1
        return json.loads(lines[-1], object_pairs_hook=self.build)

    def build(self, pairs):
        if len(pairs) != 1:
            raise SnapshotInvalid("an object in a value has more than one key")
        tag, args = pairs[0]
        if tag == "t":
            return tuple(args)
        build = _BUILDERS.get(tag)
        if build is not None:
            return build(args)
        if tag == "d":
            return dict(zip(args[0::2], args[1::2]))
        if tag == "m":
            return Map(zip(args[0::2], args[1::2]))
        if tag == "k":
            return _instance_map(args)
        if tag == "r":
            return _by_columns(args)
        if tag == "f":
            return _NON_FINITE[args]
        if tag == "@":
            if type(args) is not int or not self.current < args < len(self.done):
                raise SnapshotInvalid(f"a reference to slot {args!r} from slot {self.current}")
            return self.done[args]
        raise SnapshotInvalid(f"{tag!r} is not a value a snapshot may hold")


def _builder(name: str, cls):
    """How to build an instance of an allowlisted class from its field values, checking their number."""
    fields = _FIELDS[cls]
    count = len(fields)

    def check(args):
        if type(args) is not list or len(args) != count:
            raise SnapshotInvalid(f"{name} has {count} fields, the snapshot gives {args!r}")

    if issubclass(cls, enum.Enum):
        build = _member_reader(cls, name)
    elif attrs.has(cls):
        def build(args):
            check(args)
            return cls(**dict(zip(fields, args)))
    elif cls in _TYPED:  # a named tuple with typed fields: turn them back (and check them), as a column of one
        readers = _COLUMN_READERS[cls]

        def build(args):
            if type(args) is not list or len(args) != count:
                check(args)
            for i, read in readers:
                args[i] = read([args[i]])[0]
            return tuple.__new__(cls, args)
    else:  # a named tuple: tuple.__new__ skips the keyword handling of its __new__
        def build(args):
            if type(args) is not list or len(args) != count:
                check(args)
            return tuple.__new__(cls, args)
    return build


def _flat_items(d, depth: int, encode, inline) -> list:
    """A typed dict field's value: [k, v, k, v, ...]; ``SnapshotUnsupported`` if it is not a dict."""
    if type(d) is not dict:
        raise SnapshotUnsupported(f"a snapshot holds a dict or None here, not a {type(d).__qualname__}")
    out = []
    for k, x in d.items():
        out.append(k if type(k) in inline else encode(k, depth))
        out.append(x if type(x) in inline else encode(x, depth))
    return out


def _instance_keyed(m: Map) -> bool:
    """Every key is an instance key, ``(node index, item path of ints)``: most of a state's maps."""
    for key in m.keys():
        if type(key) is not tuple or len(key) != 2 or type(key[0]) is not int or type(key[1]) is not tuple:
            return False
        for i in key[1]:
            if type(i) is not int:
                return False
    return True


def _instance_map(args) -> Map:
    if type(args) is not list or len(args) % 3:
        raise SnapshotInvalid("an instance-keyed map is a list of (node, path, value) triples")
    return Map(zip(_instance_keys(args[0::3], args[1::3]), args[2::3]))


def _instance_keys(nodes, paths) -> list:
    """``(n, (i, ...))`` from a list of node indices and one of paths, checked a column at a time (a
    loop per key made 100,000 of them 50 ms)."""
    if type(nodes) is not list or type(paths) is not list or len(nodes) != len(paths):
        raise SnapshotInvalid("an instance-keyed map has as many nodes as paths")
    if not (_all_of(int, nodes) and _all_of(list, paths) and _all_of(int, itertools.chain.from_iterable(paths))):
        n, path = next((n, path) for n, path in zip(nodes, paths)
                       if type(n) is not int or type(path) is not list or not _all_of(int, path))
        raise SnapshotInvalid(f"{n!r}, {path!r} is not an instance key")
    return list(zip(nodes, map(tuple, paths)))


def _all_of(cls, values) -> bool:
    """Every value is exactly of type ``cls`` (a bool is not an int)."""
    return set(map(type, values)) <= {cls}


def _by_columns(args) -> Map:
    """``{"r": [class name, [n, ...], [path, ...], column, ...]}``: an instance-keyed map whose values
    are all of one class with typed fields, one column per field (see ``TYPED_FIELDS``)."""
    cls = CLASSES.get(args[0]) if type(args) is list and args and type(args[0]) is str else None
    if cls not in _COLUMN_READERS:
        raise SnapshotInvalid("a map by column names a class whose values a snapshot writes by column")
    nodes, paths, columns = args[1:2], args[2:3], args[3:]
    if len(columns) != len(_FIELDS[cls]) or not all(type(c) is list and len(c) == len(nodes[0]) for c in columns):
        raise SnapshotInvalid(f"a map of {args[0]} needs one column per field, as long as its keys")
    keys = _instance_keys(nodes[0], paths[0])
    for i, read in _COLUMN_READERS[cls]:
        columns[i] = read(columns[i])
    return Map(zip(keys, map(tuple.__new__, itertools.repeat(cls), zip(*columns))))


def _column_reader(what: str, kind):
    """Turns a column of a typed field (see ``_typed_column``) back; ``SnapshotInvalid`` for a value
    of another shape."""
    if kind is tuple:
        def read(column):
            if not all(type(x) is list for x in column):
                raise SnapshotInvalid(f"{what} must be a list, not {next(x for x in column if type(x) is not list)!r}")
            return list(map(tuple, column))
    elif kind is dict:
        def read(column):
            if not all(x is None or type(x) is list and not len(x) % 2 for x in column):
                raise SnapshotInvalid(f"{what} must be null or [key, value, ...]")
            return [x if x is None else dict(zip(x[0::2], x[1::2])) for x in column]
    else:
        members = {member.value: member for member in kind}

        def read(column):
            try:
                return [members[x] for x in column]
            except (KeyError, TypeError):
                bad = next(x for x in column if not isinstance(x, Hashable) or x not in members)
                raise SnapshotInvalid(f"{what}: {bad!r} is not a {kind.__name__}") from None
    return read


def _member_reader(kind, what: str):
    """The member of enum ``kind`` a snapshot names by its value; ``SnapshotInvalid`` for any other
    (a column of one, read as a typed field's column is)."""
    read = _column_reader(what, kind)
    return lambda value: read([value])[0]


# per class with typed fields: (field index, its column reader) for each typed field
_COLUMN_READERS = {cls: [(i, _column_reader(f"{_BY_CLASS[cls][0]}.{field}", kind))
                         for i, (field, kind) in enumerate(zip(_FIELDS[cls], kinds)) if kind is not None]
                   for cls, kinds in _TYPED.items()}
_BUILDERS = {name: _builder(name, cls) for name, cls in CLASSES.items()}
