"""The copier behind "node code gets values of its own": what it copies, what it shares, what it hands on."""
import threading

from runners.private_values import private_copy, recorded_ports


def test_scalars_and_strings_are_handed_on_as_they_are():
    for value in (None, True, 3, 2.5, "text", b"bytes", (1, "a", None)):
        assert private_copy(value) is value


def test_nested_lists_and_dicts_are_copied_all_the_way_down():
    value = {"a": [1, {"b": [2]}], "t": (1, [3])}
    copied = private_copy(value)
    assert copied == value
    assert copied is not value and copied["a"] is not value["a"] and copied["a"][1]["b"] is not value["a"][1]["b"]
    assert copied["t"][1] is not value["t"][1]


def test_shared_parts_stay_shared_and_cycles_are_kept():
    part = [1]
    looped = [part, part]
    looped.append(looped)
    copied = private_copy(looped)
    assert copied[0] is copied[1] and copied[0] is not part
    assert copied[2] is copied


def test_a_list_or_dict_of_scalars_is_copied_shallowly():
    for value in ([None, 1, "a"], {"k": 1}, [], {}):
        copied = private_copy(value)
        assert copied == value and copied is not value


def test_other_values_are_deep_copied():
    value = {"s": {1, 2}}
    copied = private_copy(value)
    assert copied == value and copied["s"] is not value["s"]


def test_what_cannot_be_copied_is_handed_on_as_it_is():
    lock = threading.Lock()
    copied = private_copy({"lock": lock})
    assert copied["lock"] is lock


def test_recorded_ports_of_scalars_are_the_ports_themselves():
    ports = {"result": "x", "other": None}
    assert recorded_ports(ports) is ports
    listed = {"result": [1], "iteration": None}
    assert recorded_ports(listed) == listed and recorded_ports(listed)["result"] is not listed["result"]
