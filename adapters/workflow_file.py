"""Workflow files (YAML or JSON) and dicts -> a validated ``Workflow``, or every problem at once.

``load_workflow`` reads, parses and checks: the shape of each node and connection, each node
type's own fields (a python ``call`` must import), then the graph itself (ids, endpoints, cycles,
ports, fan-out levels) through ``scheduler_core.compile_workflow``. Nothing runs here.
"""
from __future__ import annotations

import functools
import json
import os
import re
import weakref
from collections.abc import Mapping

import attrs
import yaml

from runners import backend_names
from runners import collector_paused
from scheduler_core import (JOIN_ALL, JOIN_ANY, Edge, Graph, Kind, Node, Problem, Retry, RunTask, Settings,
                            Workflow, WorkflowInvalid, compile_workflow)

from .imports import calls_from
from .node_types import NODE_TYPES, FieldProblem, owns_timeout
from .node_types.base import is_number, read_as_boolean
from .nodes import NodeInvoker

COMMON_FIELDS = {"id", "type", "timeout", "retry", "pool", "estimate", "description", "join", "cancel_rest", "cancel"}
_PARSED_COMMON_FIELDS = COMMON_FIELDS - {"id", "type", "description"}  # those a Node holds as attributes
PLAIN_EDGE_FIELDS = {"from", "to", "port", "map", "select"}  # what _plain_edge reads
EDGE_FIELDS = PLAIN_EDGE_FIELDS | {"at_least", "cancel_rest"}
SETTINGS_FIELDS = {"runner", "max_parallel", "on_error", "pools", "dask_address"}
TOP_FIELDS = {"name", "description", "settings", "nodes", "connections"}


class WorkflowError(ValueError):
    """A workflow that cannot run: unreadable, malformed or invalid. ``problems`` lists every one."""

    def __init__(self, source: str, problems):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {_clipped(str(p))}" for p in self.problems)
        super().__init__(f"{source}: invalid workflow ({len(self.problems)} problem"
                         f"{'s' if len(self.problems) != 1 else ''}):\n{lines}")


def _clipped(text: str, head: int = 600, tail: int = 400) -> str:
    """A problem as shown: the middle of a very long one left out (a node type given as a list of
    100,000 numbers made a message of 700 KB)."""
    if len(text) <= head + tail + 40:
        return text
    return f"{text[:head]} …({len(text) - head - tail:,} characters)… {text[-tail:]}"


def read_definition(path: str) -> dict:
    """Parse a YAML or JSON file into a dict; a ``WorkflowError`` says what is wrong and where."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_FILE_CHARS + 1)  # /dev/zero, or a file that grows, must not be read forever
    except FileNotFoundError:
        raise WorkflowError(path, [Problem("file", "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise WorkflowError(path, [Problem("file", f"is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                                                   f"save it as UTF-8")]) from None
    except OSError as exc:
        raise WorkflowError(path, [Problem("file", f"cannot be read: {exc.strerror or exc}")]) from None
    if len(text) > MAX_FILE_CHARS:
        raise WorkflowError(path, [Problem("file", f"is larger than {MAX_FILE_CHARS // 2**20} MiB, more than a "
                                                   f"workflow file can be; is it the right file?")])
    try:
        if path.endswith(".json"):
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        else:
            loader = _SafeLoader(text)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
            if loader.aliases:
                _check_expanded_size(data)
        if _SURROGATE_ESCAPE.search(text):
            _check_no_lone_surrogates(data)
    except RecursionError:
        raise WorkflowError(path, [Problem("file", "is nested too deeply to read (hundreds of levels)")]) from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(path, [Problem(f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg}")]) \
            from None
    except _Unreadable as exc:
        raise WorkflowError(path, [Problem("file", str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "file"
        raise WorkflowError(path, [Problem(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) \
            from None
    if not isinstance(data, Mapping):
        raise WorkflowError(path, [Problem("file", "a workflow must be a mapping with 'nodes' and 'connections'")])
    return dict(data)


# The most a workflow file may hold (the 100,000-node benchmark workflow is a tenth of it).
MAX_FILE_CHARS = 64 * 2**20
# An escape that may stand for a lone surrogate (JSON "\ud800", YAML "\ud800" or "\U0000d800"):
# only then is the parsed data looked through for one.
_SURROGATE_ESCAPE = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F][0-9a-fA-F]{2}")

# A YAML file whose aliases would expand to more values than this is refused (a "billion laughs"
# file is a few lines that expand to 10^9 values when the definition is stored or walked).
MAX_EXPANDED_VALUES = 1_000_000


class _Unreadable(ValueError):
    """A file that parses but is refused: a key given twice, aliases that expand too far."""


def _no_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(key for i, key in enumerate(keys) if key in keys[:i])
        raise _Unreadable(f"the key {twice!r} appears twice in one mapping (JSON keeps only the last)")
    return dict(pairs)


class _SafeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping or a key that is not a string,
    and counts aliases."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base``: keys merged from another mapping, which a key given here overrides
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):  # ``null:``, ``1:``, ``on:`` (a bool in YAML 1.1)
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is not a string (a workflow is kept as JSON, whose keys are "
                                f"strings; quote it)", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping (YAML keeps only the last; "
                                f"remove or rename one)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(data) -> None:
    """Refuse data whose shared parts (YAML aliases) expand to more than MAX_EXPANDED_VALUES values.
    Counted once per distinct object, so the count itself is as cheap as the data is small."""
    sizes: dict = {}
    stack = [(data, False)]
    while stack:
        value, children_done = stack.pop()
        if not isinstance(value, (list, dict)) or (id(value) in sizes and not children_done):
            continue
        items = list(value.values()) if isinstance(value, dict) else value
        if children_done:
            size = 1 + sum(sizes.get(id(item), 1) for item in items)
            if size > MAX_EXPANDED_VALUES:
                raise _Unreadable(f"its YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values; "
                                    f"write the values out, or use fewer aliases")
            sizes[id(value)] = size
        else:
            sizes[id(value)] = 0  # being counted
            stack.append((value, True))
            stack.extend((item, False) for item in items)


def _check_no_lone_surrogates(data) -> None:
    """Refuse a string (key or value) holding a lone surrogate: not Unicode text, and nothing can
    encode it (the store refused the workflow's name with a traceback once the run had started)."""
    stack, seen = [data], set()
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _Unreadable(f"holds {value[exc.start:exc.end].encode('unicode_escape').decode()}, half of a "
                                  f"surrogate pair, in {value[:40]!r}: not Unicode text; write the character "
                                  f"itself") from None
        elif isinstance(value, (list, dict)) and id(value) not in seen:
            seen.add(id(value))
            stack.extend(value.values() if isinstance(value, dict) else value)
            if isinstance(value, dict):
                stack.extend(value)


def _type_named(name):
    """The node type called ``name``, or None (also for a name that is not a string: a list, a mapping)."""
    return NODE_TYPES.get(name) if type(name) is str else None


def load_workflow(source, max_parallel: int | None = None, *, node_types: bool = True,
                  base_dir: str | None = None) -> Workflow:
    """A path (YAML or JSON) or a dict -> a checked ``Workflow``; raises ``WorkflowError``.

    A python node's ``call`` is looked for beside the workflow file first (``base_dir`` for a dict:
    the folder of the file it came from), then in the working directory (see ``adapters.imports``).

    ``node_types=False`` checks the structure only and leaves each node type's own checks (which
    import the code python nodes call) to ``build_invoker``, when the nodes are about to run: for a
    stored run's definition, checked when the run started, which a status or a replay never runs."""
    if isinstance(source, Workflow):
        return with_behaviours(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        data = read_definition(path)
        base_dir = os.path.dirname(os.path.abspath(path))
        where = path
    elif isinstance(source, Mapping):
        data, where = dict(source), "workflow"
    else:
        raise TypeError(f"load_workflow takes a path or a dict, not {type(source).__name__}")
    with collector_paused():  # a large workflow is many small long-lived values; no node code runs here
        workflow, problems = parse(data, default_name=_default_name(where))
        if base_dir:
            _BASE_DIRS[workflow] = os.path.abspath(base_dir)
        check(workflow, problems, where, node_types=node_types)
    return workflow


def _default_name(where: str) -> str:
    return os.path.splitext(os.path.basename(where))[0] if where != "workflow" else "workflow"


def check(workflow: Workflow, problems: list, where: str, max_parallel: int | None = None,
          node_types: bool = True) -> None:
    """Add the node types' and the graph's problems to ``problems``; raise if there are any."""
    if node_types:
        _IMPLS[workflow] = _node_impls(workflow, problems)
    try:
        _GRAPHS[workflow] = compile_workflow(workflow, max_parallel=max_parallel)
    except WorkflowInvalid as exc:
        problems.extend(exc.problems)
    if problems:
        raise WorkflowError(where, problems)


def _node_impls(workflow: Workflow, problems: list, parsed: bool = True) -> dict:
    """Node id -> its type's implementation; a node type's complaints about its fields go to ``problems``,
    and, for a workflow that was not ``parsed`` from a file or dict (built in code), unknown types and
    missing required fields too (parsing reports those)."""
    with calls_from(_BASE_DIRS.get(workflow)):
        return _node_impls_here(workflow, problems, parsed)


def _node_impls_here(workflow: Workflow, problems: list, parsed: bool) -> dict:
    impls = {}
    for node_id, node, where in _all_nodes(workflow.nodes):
        impl = _type_named(node.type)
        if impl is None or not _type_fields(impl).required <= node.config.keys():
            if not parsed:
                _type_problems(where, node.type, impl, node.config, problems)
            continue
        try:
            impls[node_id] = impl(node_id, node.config)
        except FieldProblem as exc:
            problems.append(Problem(where, str(exc)))
    return impls


def _all_nodes(nodes, prefix: str = "", place: str | None = None):
    """``(id as the graph names it, node, where)`` for each node and, after a loop, each node of its
    body (``<loop>.<id>``, at ``nodes[3].body.nodes[1]``), nested bodies too."""
    for i, node in enumerate(nodes):
        node_id = f"{prefix}{node.id}"
        here = f"nodes[{i}]" if place is None else f"{place}.nodes[{i}]"
        yield node_id, node, (f"node {node_id!r}" if place is None else f"{here} (node {node_id!r})")
        b = node.behaviour
        if b is not None and b.kind is Kind.LOOP:
            yield from _all_nodes(b.nodes, f"{node_id}.", f"{here}.body")


BODY_FIELDS = {"nodes", "connections", "description"}


def parse_body(raw, where: str, problems: list) -> tuple[tuple[Node, ...], tuple[Edge, ...]]:
    """A loop's ``body`` (``nodes`` and ``connections``, as a workflow's) -> its nodes and edges, with
    the body's own ids; each problem is placed at ``where`` (``nodes[3].body``)."""
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "must be a mapping with 'nodes' and 'connections' (an inline workflow)"))
        return (), ()
    for key in raw:
        if key not in BODY_FIELDS:
            problems.append(Problem(f"{where}.{key}", f"unknown field of a body (known: {', '.join(sorted(BODY_FIELDS))})"))
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append(Problem(f"{where}.nodes", "must be a non-empty list of nodes"))
        raw_nodes = []
    raw_edges = raw.get("connections") or []
    if not isinstance(raw_edges, list):
        problems.append(Problem(f"{where}.connections", "must be a list of {from, to} mappings"))
        raw_edges = []
    nodes = [n for j, item in enumerate(raw_nodes)
             if (n := _parse_node(j, item, problems, place=f"{where}.nodes[{j}]")) is not None]
    edge_problems: list = []
    edges = [e for j, item in enumerate(raw_edges) if (e := _parse_edge(j, item, edge_problems)) is not None]
    problems.extend(Problem(f"{where}, {p.where}", p.message) for p in edge_problems)
    return tuple(nodes), tuple(edges)


# What checking a workflow built, kept for as long as the workflow lives: the graph (whose cap is
# the only thing that changes from run to run) and the node types' implementations.
_GRAPHS: "weakref.WeakKeyDictionary[Workflow, Graph]" = weakref.WeakKeyDictionary()
_IMPLS: "weakref.WeakKeyDictionary[Workflow, dict]" = weakref.WeakKeyDictionary()
# The folder of the file a workflow came from: its python nodes' calls are looked for there first.
_BASE_DIRS: "weakref.WeakKeyDictionary[Workflow, str]" = weakref.WeakKeyDictionary()


def compiled(workflow: Workflow, default_max_parallel: int = 8, max_parallel: int | None = None) -> Graph:
    """The workflow's graph with the cap in force: compiled once per workflow (checking a workflow
    compiles it already), then only the cap changes."""
    workflow = with_behaviours(workflow)
    cap = max_parallel or workflow.settings.max_parallel or default_max_parallel
    graph = _GRAPHS.get(workflow)
    if graph is None:
        graph = _GRAPHS[workflow] = compile_workflow(workflow, max_parallel=cap)
    return graph if graph.max_parallel == cap else attrs.evolve(graph, max_parallel=cap)


def build_invoker(workflow: Workflow, json_only: bool = False) -> NodeInvoker:
    """The runners' way to call the workflow's nodes, through the implementations checking it built."""
    impls = _IMPLS.get(workflow)
    if impls is None:  # built in code, or loaded without its node types' checks: they run now
        problems: list = []
        impls = _node_impls(workflow, problems, parsed=False)
        if problems:
            raise WorkflowError(f"workflow {workflow.name!r}", problems)
        _IMPLS[workflow] = impls
    return NodeInvoker(impls, json_only=json_only)


def parse(data: dict, default_name: str = "workflow") -> tuple[Workflow, list]:
    problems: list = []
    for key in data:
        if key not in TOP_FIELDS:
            problems.append(Problem(str(key), f"unknown top-level field (known: {', '.join(sorted(TOP_FIELDS))})"))
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append(Problem("nodes", "must be a non-empty list of nodes"))
        raw_nodes = []
    raw_edges = data.get("connections") or []
    if not isinstance(raw_edges, list):
        problems.append(Problem("connections", "must be a list of {from, to} mappings"))
        raw_edges = []
    nodes = [n for i, raw in enumerate(raw_nodes) if (n := _parse_node(i, raw, problems)) is not None]
    edges = [e for i, raw in enumerate(raw_edges) if (e := _parse_edge(i, raw, problems)) is not None]
    settings = _parse_settings(data.get("settings") or {}, problems)
    name = data.get("name") or default_name
    wf = Workflow(name=str(name), nodes=tuple(nodes), edges=tuple(edges), settings=settings, source=data)
    return wf, problems


@attrs.frozen
class _TypeFields:
    """A node type's fields as sets: ``required`` ones, and ``plain_keys``, the keys a node may have
    and still be parsed without per-field checks (id, type, description and the type's fields, but
    no common field that needs parsing)."""

    required: frozenset
    plain_keys: frozenset
    not_config: frozenset  # the plain keys that are not the type's fields


@functools.cache
def _type_fields(impl) -> _TypeFields:
    own = frozenset({"id", "type", "description"}) - impl.fields.keys()
    return _TypeFields(required=frozenset(key for key, required in impl.fields.items() if required),
                       plain_keys=frozenset({*own, *impl.fields}) - _PARSED_COMMON_FIELDS, not_config=own)


def _plain_node(raw) -> Node | None:
    """The usual node (a dict with an id, a known type and its required fields, and nothing that
    needs checking) parsed at once; None for any other, which ``_parse_node`` checks field by field."""
    node_id = raw.get("id") if type(raw) is dict else None
    if type(node_id) is not str or not node_id:
        return None
    ntype = raw.get("type")
    impl = _type_named(ntype)
    if impl is None or impl.nests:
        return None
    fields = _type_fields(impl)
    if not (raw.keys() <= fields.plain_keys and fields.required <= raw.keys()):
        return None
    config = dict(raw)  # a copy less what is not the type's (cheaper than picking the type's fields)
    for key in fields.not_config:
        config.pop(key, None)
    return Node(node_id, ntype, config, impl.behaviour(config))  # positional: one call per node


def _parse_node(i: int, raw, problems: list, place: str | None = None):
    """A node, or None; ``place`` is where a body's node is (``nodes[3].body.nodes[1]``)."""
    if (node := _plain_node(raw)) is not None:
        return node
    if not isinstance(raw, Mapping):
        problems.append(Problem(place or f"node #{i + 1}", "must be a mapping with at least 'id' and 'type'"))
        return None
    node_id = raw.get("id")
    where = f"node {node_id!r}" if isinstance(node_id, str) and node_id else f"node #{i + 1}"
    if place is not None:
        where = f"{place} ({where})"
    if isinstance(node_id, bool):
        problems.append(Problem(where, f"id {read_as_boolean(node_id)}"))
        return None
    if not isinstance(node_id, str) or not node_id:
        problems.append(Problem(where, "missing 'id' (a non-empty string)"))
        return None
    ntype = raw.get("type")
    impl = _type_named(ntype)
    _type_problems(where, ntype, impl, raw, problems)
    type_fields = set(impl.fields) if impl else set()
    config = {}
    for key, value in raw.items():
        if key in type_fields:
            config[key] = value
        elif key not in COMMON_FIELDS and impl is not None:
            problems.append(Problem(where, f"unknown field {key!r} for a {ntype} node"))
    timeout = None if owns_timeout(impl) else raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        problems.append(Problem(where, f"timeout must be a positive number of seconds, not {timeout!r}"))
        timeout = None
    behaviour = (impl.behaviour_reporting(config, f"{place or f'nodes[{i}]'}.body", problems)
                 if impl is not None and impl.nests else _behaviour(impl, config))
    return Node(id=node_id, type=str(ntype), config=config, timeout=timeout, retry=_parse_retry(where, raw, problems),
                pool=raw.get("pool"), estimate=_parse_estimate(where, raw, problems),
                behaviour=behaviour, join=_parse_join(where, raw, problems),
                cancel_rest=_parse_flag(where, raw, "cancel_rest", problems), cancel=_parse_cancel(where, raw, problems))


def _whole(value):
    """``value`` as a whole number (3.0 is 3), or None for anything else (a bool, 2.5, a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


def _parse_join(where, raw, problems):
    """``join``: all, any or {at_least: K} -> JOIN_ALL, JOIN_ANY or K (its bounds are the graph's to
    check: it knows the node's inputs)."""
    spec = raw.get("join", JOIN_ALL)
    if spec in (JOIN_ALL, JOIN_ANY) and type(spec) is str:
        return spec
    if isinstance(spec, Mapping) and set(spec) == {"at_least"}:
        k = _whole(spec["at_least"])
        if k is not None:
            return k
        problems.append(Problem(where, f"join at_least must be a whole number from 1, not {spec['at_least']!r}"))
        return JOIN_ALL
    problems.append(Problem(where, f"join must be all, any or {{at_least: K}}, not {spec!r}"))
    return JOIN_ALL


def _parse_flag(where, raw, field, problems) -> bool:
    value = raw.get(field, False)
    if type(value) is not bool:
        problems.append(Problem(where, f"{field} must be true or false, not {value!r}"))
        return False
    return value


def _parse_cancel(where, raw, problems) -> tuple:
    """``cancel``: a list of node ids (that they exist is the graph's to check)."""
    value = raw.get("cancel", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(type(v) is str for v in value):
        named = next((v for v in value if isinstance(v, bool)), None) if isinstance(value, list) else None
        hint = f" (an id {read_as_boolean(named)})" if named is not None else ""
        problems.append(Problem(where, f"cancel must be a list of node ids, not {value!r}{hint}"))
        return ()
    return tuple(value)


def _behaviour(impl, config):
    """What the core does with the node, as its type says; a placeholder for an unknown type (which
    is reported: the workflow will not run)."""
    return impl.behaviour(config) if impl is not None else RunTask()


_WITH_BEHAVIOURS: "weakref.WeakKeyDictionary[Workflow, Workflow]" = weakref.WeakKeyDictionary()


def with_behaviours(workflow: Workflow) -> Workflow:
    """A workflow built in code whose nodes lack the behaviour their type gives: the same workflow
    with it (the same one each time it is asked for, so what is cached per workflow stays)."""
    if all(node.behaviour is not None for node in workflow.nodes):
        return workflow
    done = _WITH_BEHAVIOURS.get(workflow)
    if done is None:
        nodes = tuple(node if node.behaviour is not None
                      else attrs.evolve(node, behaviour=_behaviour(_type_named(node.type), node.config))
                      for node in workflow.nodes)
        done = _WITH_BEHAVIOURS[workflow] = attrs.evolve(workflow, nodes=nodes)
    return done


def _type_problems(where: str, ntype, impl, fields, problems: list) -> None:
    """An unknown (or missing) node type, or a known type's required fields missing from ``fields``."""
    if impl is None:
        problems.append(Problem(where, f"unknown type {ntype!r} (known: {', '.join(sorted(NODE_TYPES))})"
                        if ntype is not None else "missing 'type'"))
        return
    for key, required in impl.fields.items():
        if required and key not in fields:
            problems.append(Problem(where, f"missing required field {key!r}"))


def _parse_retry(where, raw, problems) -> Retry:
    """The node's retry as given; its bounds are checked with the graph (``Retry.problem``)."""
    spec = raw.get("retry")
    if spec is None:
        return Retry()
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = {"max_attempts": spec}
    if not isinstance(spec, Mapping) or set(spec) - {"max_attempts", "delay", "backoff"}:
        problems.append(Problem(where, "retry must be a mapping of max_attempts, delay and backoff"))
        return Retry()
    if not all(is_number(value) for value in spec.values()):
        problems.append(Problem(where, "retry values must be numbers"))
        return Retry()
    attempts = spec.get("max_attempts", 1)
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)  # 3.0 is 3; 2.5, inf and nan stay as they are, and are refused
    return Retry(max_attempts=attempts, delay=float(spec.get("delay", 0.0)), backoff=float(spec.get("backoff", 1.0)))


def _parse_estimate(where, raw, problems) -> float:
    value = raw.get("estimate", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(Problem(where, f"estimate must be a number of seconds, not {value!r}"))
        return 1.0
    return float(value)


def _parse_edge(i: int, raw, problems: list):
    if (edge := _plain_edge(raw)) is not None:
        return edge
    if not isinstance(raw, Mapping) or "from" not in raw or "to" not in raw:
        problems.append(Problem(f"connection #{i + 1}", "must be a mapping with 'from' and 'to'"))
        return None
    _check_edge_fields(f"connection #{i + 1} ({raw['from']} -> {raw['to']})", raw, problems)
    select = raw.get("select")
    at_least = raw.get("at_least")
    if at_least is not None and (at_least := _whole(at_least)) is None:
        problems.append(Problem(f"connection #{i + 1} ({raw['from']} -> {raw['to']})",
                                f"at_least must be a whole number from 1, not {raw['at_least']!r}"))
    cancel_rest = _parse_flag(f"connection #{i + 1} ({raw['from']} -> {raw['to']})", raw, "cancel_rest", problems)
    return Edge(source=str(raw["from"]), target=str(raw["to"]), port=str(raw.get("port", "result")),
                map=bool(raw.get("map", False)), select=select if isinstance(select, str) else None,
                at_least=at_least, cancel_rest=cancel_rest)


def _plain_edge(raw) -> Edge | None:
    """The usual edge (a dict with 'from', 'to' and only known fields, of the right types) parsed at
    once; None for any other, which ``_parse_edge`` checks field by field."""
    if type(raw) is not dict or not raw.keys() <= PLAIN_EDGE_FIELDS or "from" not in raw or "to" not in raw:
        return None
    source, target, port = raw["from"], raw["to"], raw.get("port", "result")
    if type(source) is bool or type(target) is bool or type(port) is bool:
        return None  # a name YAML read as a boolean: told field by field
    is_map, select = raw.get("map", False), raw.get("select")
    if type(is_map) is not bool or select is not None and type(select) is not str:
        return None
    # positional: a keyword call to an attrs class costs half as much again, and there is one per edge
    return Edge(str(source), str(target), str(port), is_map, select)


NAMES_OF_EDGE = ("from", "to", "port")


def _check_edge_fields(where: str, raw, problems: list) -> None:
    for key in NAMES_OF_EDGE:
        if isinstance(raw.get(key), bool):
            problems.append(Problem(where, f"{key} {read_as_boolean(raw[key])}"))
    for key in raw:
        if key not in EDGE_FIELDS:
            problems.append(Problem(where, f"unknown field {key!r} (known: {', '.join(sorted(EDGE_FIELDS))})"))
    if not isinstance(raw.get("map", False), bool):
        problems.append(Problem(where, "map must be true or false"))
    select = raw.get("select")
    if select is not None and not isinstance(select, str):
        problems.append(Problem(where, "select must be a JMESPath expression (a string)"))


def _parse_settings(raw, problems: list) -> Settings:
    if not isinstance(raw, Mapping):
        problems.append(Problem("settings", "must be a mapping"))
        return Settings()
    for key in raw:
        if key not in SETTINGS_FIELDS:
            problems.append(Problem(f"settings.{key}", f"unknown setting (known: {', '.join(sorted(SETTINGS_FIELDS))})"))
    runner = raw.get("runner")
    if runner is not None and runner not in backend_names():
        problems.append(Problem("settings.runner", f"unknown runner {runner!r} (known: {', '.join(backend_names())})"))
    pools = raw.get("pools") or {}
    if not isinstance(pools, Mapping):
        problems.append(Problem("settings.pools", "must map pool names to sizes"))
        pools = {}
    address = raw.get("dask_address")
    if address is not None and (problem := dask_address_problem(address)):
        problems.append(Problem("settings.dask_address", problem))
        address = None
    return Settings(runner=raw.get("runner"), max_parallel=raw.get("max_parallel"), dask_address=address,
                    on_error=raw.get("on_error", "fail_fast"), pools=pools)


DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")  # the protocols distributed's schedulers listen on
_DASK_ADDRESS = re.compile(r"(?:(?P<scheme>[a-z]+)://)?(?:\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})")


def dask_address_problem(address) -> str | None:
    """What is wrong with a dask scheduler address (``tcp://HOST:PORT``), or None. Only its form:
    whether a scheduler answers there is the dask runner's to find out."""
    match = _DASK_ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if match is None:
        return f"{address!r} is not a dask scheduler address; give one like tcp://HOST:PORT"
    if match["scheme"] is not None and match["scheme"] not in DASK_SCHEMES:
        return f"{address!r}: unknown protocol {match['scheme']!r} (one of {', '.join(DASK_SCHEMES)})"
    if not 0 < int(match["port"]) < 65536:
        return f"{address!r}: the port must be from 1 to 65535"
    return None


def workflow_to_dict(wf: Workflow) -> dict:
    """The declared form of a workflow built in code, so it can be stored with its runs."""
    if wf.source is not None:
        return dict(wf.source)
    nodes = []
    for n in wf.nodes:
        spec = {"id": n.id, "type": n.type, **n.config}
        if n.timeout is not None:
            spec["timeout"] = n.timeout
        if n.retry != Retry():
            spec["retry"] = attrs.asdict(n.retry)
        if n.pool is not None:
            spec["pool"] = n.pool
        if n.estimate != 1.0:
            spec["estimate"] = n.estimate
        if n.join != JOIN_ALL:
            spec["join"] = n.join if isinstance(n.join, str) else {"at_least": n.join}
        if n.cancel_rest:
            spec["cancel_rest"] = True
        if n.cancel:
            spec["cancel"] = list(n.cancel)
        nodes.append(spec)
    edges = [{"from": e.source, "to": e.target, "port": e.port, "map": e.map, "select": e.select,
              **({"at_least": e.at_least} if e.at_least is not None else {}),
              **({"cancel_rest": True} if e.cancel_rest else {})} for e in wf.edges]
    s = wf.settings
    settings = {"on_error": s.on_error, "pools": dict(s.pools)}
    if s.runner:
        settings["runner"] = s.runner
    if s.max_parallel:
        settings["max_parallel"] = s.max_parallel
    if s.dask_address:
        settings["dask_address"] = s.dask_address
    return {"name": wf.name, "settings": settings, "nodes": nodes, "connections": edges}
