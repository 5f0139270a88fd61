"""The snapshot format: any state the core makes comes back equal, however deep its values nest,
and text that is not a snapshot of this format and shape is refused, never run."""
import json
import math

import attrs
import pytest
from immutables import Map

from adapters import Engine, snapshots
from adapters.snapshots import SnapshotInvalid, SnapshotUnsupported, decode_state, encode_state
from scheduler_core.state import Record, Timer

WF = {"nodes": [{"id": "each", "type": "foreach", "max_parallel": 2}, {"id": "x", "type": "noop"},
                {"id": "ask", "type": "hil", "choices": ["go", "stop"], "timeout": 60},
                {"id": "all", "type": "merge"}],
      "connections": [{"from": "each", "to": "x", "port": "iteration"}, {"from": "x", "to": "all"},
                      {"from": "ask", "to": "all", "port": "go"}]}


def waiting_state():
    return Engine(runner="serial", linger=0).run(WF, trigger=[1, 2, 3]).state


def round_trip(state):
    return decode_state(encode_state(state), state.graph)


def test_a_state_comes_back_equal():
    state = waiting_state()
    assert len(state.awaiting) and len(state.timers)
    assert round_trip(state) == state


def test_a_state_holding_heaps_and_cons_lists_100000_deep_comes_back_equal():
    deep = None
    for i in range(100_000):
        deep = (i, deep)
    state = attrs.evolve(waiting_state(), trigger=deep)
    back = round_trip(state).trigger
    for i in reversed(range(100_000)):  # compared in a loop: == on such a value would recurse
        assert back[0] == i
        back = back[1]
    assert back is None


def test_floats_that_json_has_no_number_for_come_back():
    state = attrs.evolve(waiting_state(), trigger={"a": math.inf, "b": [-math.inf, math.nan], "c": 1.5})
    trigger = round_trip(state).trigger
    assert trigger["a"] == math.inf and trigger["b"][0] == -math.inf and math.isnan(trigger["b"][1])
    assert "NaN" not in encode_state(state) and "Infinity" not in encode_state(state)


def test_maps_keyed_by_instance_are_written_as_triples_and_records_by_column_with_their_typed_fields():
    state = waiting_state()
    text = encode_state(state)
    assert '"records":' not in text and '["records",{"r":["Record",' in text  # by column, not a tagged tuple per key
    assert '{"Status":' not in text and '{"Record":' not in text  # a record's status is its plain value
    assert round_trip(state).records == state.records
    mixed = Map({(0, ()): state.records[(0, ())], (1, (2,)): "not a record"})  # not all records: triples
    text = encode_state(attrs.evolve(state, trigger=mixed))
    assert '["trigger",{"k":[' in text and round_trip(attrs.evolve(state, trigger=mixed)).trigger == mixed


def _records_changed(state, **changes) -> str:
    """The snapshot text of ``state`` with columns of its records changed: field name -> old column -> new."""
    *lines, last = encode_state(state).split("\n")
    fields = json.loads(last)  # no hook: the tagged objects stay as they are written
    args = dict(fields)["records"]["r"]
    for name, change in changes.items():
        i = 3 + Record._fields.index(name)
        args[i] = change(args[i])
    return "\n".join([*lines, json.dumps(fields)])


def test_records_by_column_come_back_and_a_column_of_the_wrong_shape_is_refused():
    state = waiting_state()
    assert decode_state(_records_changed(state), state.graph).records == state.records
    for changes, message in [({"status": lambda c: ["no such status"] * len(c)}, "Record.status: 'no such status'"),
                             ({"item": lambda c: ["x"] * len(c)}, "Record.item must be a list"),
                             ({"ports": lambda c: [[1]] * len(c)}, "Record.ports must be null or"),
                             ({"node": lambda c: c[:-1]}, "one column per field")]:
        with pytest.raises(SnapshotInvalid, match=message):
            decode_state(_records_changed(state, **changes), state.graph)


def test_tuples_lists_dicts_and_maps_keep_their_types():
    value = {(1, (2,)): [(), []], "m": Map({(0, ()): Timer(kind="retry", key=(0, ()), attempt=1, due=2.0)})}
    back = round_trip(attrs.evolve(waiting_state(), trigger=value)).trigger
    assert back == value and type(back["m"]) is Map and type(back[(1, (2,))][0]) is tuple


def test_a_value_the_format_does_not_know_is_refused_when_writing():
    with pytest.raises(SnapshotUnsupported, match="set"):
        encode_state(attrs.evolve(waiting_state(), trigger={1, 2}))


@pytest.mark.parametrize("text", [
    b"\x80\x04K\x01.", "", "not json", '{"format": "flowcore-snapshot/0", "deep": 0}\n[]',
    '{"format": "%s", "deep": 1}\n[]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["status", {"os.system": ["true"]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["status", {"t": [], "d": []}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 1}\n{"@": 0}\n[]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["records", {"k": [0, "x", 1]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["records", {"k": [0, []]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["records", {"r": 5}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["records", {"r": ["os.system", [], []]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["records", {"r": ["Timer", [], []]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["records", {"r": ["Record", [0], ["x"]]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["x", {"Record": ["a", "not a list", "succeeded", 0, null, null, null, '
    'null, null, null, [], null]}]]' % snapshots.FORMAT,
    '{"format": "%s", "deep": 0}\n[["x", {"Record": ["a", [], "no such status", 0, null, null, null, '
    'null, null, null, [], null]}]]' % snapshots.FORMAT,
])
def test_text_that_is_not_a_snapshot_of_this_format_is_refused(text):
    with pytest.raises(SnapshotInvalid):
        decode_state(text, None)


def test_the_version_names_the_format_and_changes_with_the_states_shape(monkeypatch):
    before = snapshots.version()
    assert before.startswith(snapshots.FORMAT + ":")
    snapshots.version.cache_clear()
    monkeypatch.setattr(snapshots, "_STATE_FIELDS", snapshots._STATE_FIELDS + ("a_new_field",))
    try:
        assert snapshots.version() != before
    finally:
        snapshots.version.cache_clear()


def test_a_state_with_fired_joins_ignored_gather_items_and_cancel_regions_comes_back_equal():
    from step_helpers import Run, edge, graph, node

    g = graph("a -> j", "b -> j", "c -> j", "f.iteration -> w", edge("w -> t", at_least=1),
              nodes=[node("f", "foreach"), node("j", join=1, cancel_rest=True)], on_error="continue")
    run = Run(g)
    run.start()
    run.succeed("f", ports={"result": [1, 2, 3], "iteration": [1, 2, 3]}, at=1)
    run.succeed("w", "w0", item=(0,), at=2)  # the gather delivered: items 1 and 2 are to be ignored
    run.succeed("b", "B", at=3)  # j fired: a and c are cancelled, and nothing is left unreached
    state = run.state
    assert len(state.gathers) == 1 and next(iter(state.gathers.values()))[1] is None
    assert len(state.cancel_regions) == 0 and len(state.joined) == 0
    assert round_trip(state) == state
    g2 = graph("a -> j", "b -> j", "c -> j", nodes=[node("j", join=1)])
    run = Run(g2)
    run.start()
    run.succeed("a", "A", at=1)  # j fired without cancel_rest: b and c are still open
    assert dict(run.state.joined.items()) == {(g2.index["j"], ()): 2}
    assert round_trip(run.state) == run.state
    g3 = graph("a -> j", "b -> b2", "b2 -> j", nodes=[node("j", join=1, cancel_rest=True)])
    run = Run(g3)
    run.start()
    run.succeed("a", "A", at=1)  # b2 is not reached yet: a region waits for it
    assert dict(run.state.cancel_regions.items()) == {(g3.index["b2"], ()): "join 'j' fired (cancel_rest)"}
    assert round_trip(run.state) == run.state
