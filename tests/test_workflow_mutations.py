"""Valid workflow files, mutated: ``validate`` and ``run`` answer every one cleanly (issue 15).

A random valid workflow (``property_tests.workflows``) is changed in one to three places: a field's
value replaced by a value of another type (NaN, infinities, huge and negative numbers, strings with
control characters and lone surrogates, lists, mappings), a value wrapped in a list or a mapping or
nested hundreds of levels deep, a field deleted or added, two values swapped; then written as YAML
or JSON, sometimes with a key given twice, cut short, or with bytes that are not UTF-8.

For each, ``flowcore validate`` and ``flowcore run`` (serial runner, a store of its own, no
lingering) must end within a bound, without a traceback, with an exit code that says what happened:
validate 0 or 2, run 0, 1 or 3 (a run status) or 2, and both agree on whether the file is valid. An
exit 2 says why in a message that starts with the command; no run is left ``running``.

The commands run in this process (``adapters.cli.main``) under a watchdog, as the bad-input corpus
does. Examples come from the project's hypothesis profiles (``HYPOTHESIS_PROFILE``: ``ci`` by
default, ``dev`` for a longer hunt) and the session seed (``FLOWCORE_TEST_SEED`` replays a run).
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import hypothesis
import yaml
from hypothesis import given
from hypothesis import strategies as st

from property_tests import conftest as _profiles  # noqa: F401 - registers the ci and dev profiles, loads one
from property_tests.seeds import seed_of
from property_tests.workflows import Vocabulary, workflow_definitions
from test_bad_inputs_corpus import _in_process, _runs_left_running

VOCABULARY = Vocabulary(max_nodes=6, delay_seconds=(0, 0.01), retry_delays=(0, 0.01), wait_seconds=(1, 3))
SAFE_CALLS = {"property_tests.pure_nodes:mix", "nodes_for_tests:echo", "nodes_for_tests:fail"}
FIELDS = ["id", "type", "timeout", "retry", "pool", "estimate", "params", "call", "seconds", "choices", "items",
          "condition", "select", "map", "port", "from", "to", "settings", "max_parallel", "pools", "runner",
          "on_error", "nodes", "connections", "name", "max_attempts", "delay", "backoff", "prompt", "description",
          "join", "at_least", "cancel_rest", "cancel", "message"]
WORDS = ["noop", "python", "delay", "hil", "wait", "if", "foreach", "merge", "bogus", "", "[/]", "\x1b[31m", "n0",
         "n1", "result", "iteration", "true", "@", "a[?", "length(@)", "abs(@)", "thread", "dask", "continue",
         "p1", "any", "all", "end", "fail", "nodes_for_tests:fail", "no_such_module:f", "nocolon", "(" * 300 + "@" + ")" * 300]


def _seeded(test):
    """The session's seed (as the property tests have it) and three times the profile's examples: an
    example here costs milliseconds."""
    test = hypothesis.settings(max_examples=3 * hypothesis.settings.default.max_examples)(test)
    return hypothesis.seed(seed_of(f"{__name__}.{test.__name__}"))(test)


# -- values of every kind ------------------------------------------------------------------------

ANY_CHARACTER = st.characters(categories=["L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co"])
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2 ** 70), 2 ** 70),
    st.sampled_from([0, -1, 1, 2, 10 ** 400, -(10 ** 400), 2 ** 63, 1e-300, 1e300, 1e10, -0.0, 31_536_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ANY_CHARACTER, max_size=12),
    st.sampled_from(WORDS),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(ANY_CHARACTER, max_size=6) | st.sampled_from(FIELDS),
                                                                        inner, max_size=3)),
                      max_leaves=6)
keys = st.sampled_from(FIELDS) | st.text(ANY_CHARACTER, max_size=8) | st.integers(-3, 3) | st.none()


def _places(value, path=()):
    """Every (container, key) in ``value``, in a stable order."""
    out = []
    if isinstance(value, dict):
        for k in list(value):
            out.append((value, k))
            out.extend(_places(value[k]))
    elif isinstance(value, list):
        for i in range(len(value)):
            out.append((value, i))
            out.extend(_places(value[i]))
    return out


def _nest(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


OPERATIONS = ("replace", "replace", "replace", "delete", "add", "in_a_list", "in_a_mapping", "nest", "swap",
              "as_text", "unwrap")


def _mutate(draw, definition):
    places = _places(definition)
    container, key = draw(st.sampled_from(places))
    operation = draw(st.sampled_from(OPERATIONS))
    value = container[key]
    if operation == "replace":
        container[key] = draw(values)
    elif operation == "delete":
        del container[key]
    elif operation == "add":
        if isinstance(container, dict):
            container[draw(keys)] = draw(values)
        else:
            container.insert(key, draw(values))
    elif operation == "in_a_list":
        container[key] = [value]
    elif operation == "in_a_mapping":
        container[key] = {draw(keys): value}
    elif operation == "nest":
        container[key] = _nest(value, draw(st.integers(2, 400)))
    elif operation == "swap":
        other, other_key = draw(st.sampled_from(places))
        if other is not container or other_key != key:
            try:
                container[key], other[other_key] = other[other_key], value
            except (KeyError, IndexError):  # one place is inside the other's value, moved by the swap
                pass
    elif operation == "as_text":
        container[key] = json.dumps(value, default=str) if not isinstance(value, str) else value + "x"
    elif operation == "unwrap" and isinstance(value, (list, dict)) and value:
        container[key] = next(iter(value.values())) if isinstance(value, dict) else value[0]


def _safe_calls(value):
    """No mutation makes a python node call anything but a harmless function (or one that is not there)."""
    for container, key in _places(value):
        if key == "call" and isinstance(container, dict):
            call = container[key]
            if isinstance(call, str) and call not in SAFE_CALLS:
                container[key] = "no_such_module_here:f"
    return value


def _yaml(definition) -> str:
    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=False, width=10_000)


@st.composite
def mutated_files(draw):
    """(file name, content) of a valid workflow changed in one to three places, as YAML or JSON."""
    definition = copy.deepcopy(draw(workflow_definitions(VOCABULARY)))
    for _ in range(draw(st.integers(1, 3))):
        _mutate(draw, definition)
    definition = _safe_calls(definition)
    if draw(st.booleans()):
        return "wf.json", json.dumps(definition, default=str)
    try:
        return "wf.yaml", _yaml(definition)
    except (yaml.YAMLError, RecursionError, ValueError):  # what PyYAML cannot write, JSON can (and YAML reads it)
        return "wf.yaml", json.dumps(definition, default=str)


@st.composite
def damaged_files(draw):
    """(file name, content) of a valid workflow whose text is damaged: a key given twice, cut short,
    bytes that are not UTF-8, or nesting thousands of levels deep."""
    definition = draw(workflow_definitions(VOCABULARY))
    as_json = draw(st.booleans())
    text = json.dumps(definition) if as_json else _yaml(definition)
    name = "wf.json" if as_json else "wf.yaml"
    damage = draw(st.sampled_from(["twice", "cut", "bytes", "deep"]))
    if damage == "twice":  # a key of the top level, or of the first node, given a second time
        key = draw(st.sampled_from(["nodes", "name", "settings", "id", "type"]))
        if as_json:
            where = text.index("{", text.index('"nodes"')) + 1 if key in ("id", "type") else 1
            text = text[:where] + f'"{key}": 1, ' + text[where:]
        else:
            text = text + f"{key}: []\n" if key not in ("id", "type") else \
                text.replace("- id:", f"- {key}: x\n  id:", 1).replace("  type:", f"  {key}: y\n  type:", 1)
        return name, text
    if damage == "cut":
        return name, text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if damage == "bytes":
        raw = text.encode()
        at = draw(st.integers(0, len(raw)))
        return name, raw[:at] + draw(st.binary(min_size=1, max_size=8).filter(_not_utf_8)) + raw[at:]
    depth = draw(st.integers(900, 6000))
    if as_json:
        return name, text[:-1] + ', "description": ' + "[" * depth + "]" * depth + "}"
    return name, text + "description: " + "[" * depth + "]" * depth + "\n"


def _not_utf_8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- what every file gets ------------------------------------------------------------------------

def _answered_cleanly(name: str, content) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        db = Path(folder) / "flowcore.db"
        checked = _in_process(["validate", str(path)])
        ran = _in_process(["run", str(path), "--db", str(db), "--runner", "serial", "--linger", "0",
                           "--grace", "0.1", "--trigger", "3"])
        for command, (code, out, err) in (("validate", checked), ("run", ran)):
            shown = f"flowcore {command}: exit {code}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-2000:]}"
            assert code != "hung", shown
            assert "Traceback" not in err, shown
            assert code in ((0, 2) if command == "validate" else (0, 1, 2, 3)), shown
            if code == 2:
                assert err.startswith(f"flowcore {command}: "), shown
                assert all(len(line) <= 1100 for line in err.splitlines()), shown  # the middle of a long one left out
        assert (checked[0] == 2) == (ran[0] == 2), f"validate and run disagree:\n{checked}\n{ran}"
        assert not _runs_left_running(db)


@_seeded
@given(mutated_files())
def test_a_mutated_workflow_is_validated_and_run_or_refused_with_a_message(file):
    _answered_cleanly(*file)


@_seeded
@given(damaged_files())
def test_a_damaged_workflow_file_is_refused_with_a_message(file):
    _answered_cleanly(*file)
