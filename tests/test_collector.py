"""The cyclic collector: off during flowcore's own bulk work, fewer passes while driving, and as before after it,
however many runs overlap in threads."""
import gc
import threading

import pytest

from runners import collector_paused, fewer_gc_passes


@pytest.fixture
def collector_restored():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_the_collector_is_off_inside_and_on_again_after_even_when_the_work_fails(collector_restored):
    gc.enable()
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():  # nested: the inner one leaves it to the outer
                pass
            assert not gc.isenabled()
            raise RuntimeError("work failed")
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off(collector_restored):
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def frozen(obj) -> bool:
    """Whether ``obj`` is in the permanent generation: the collector lists every tracked object but those."""
    return not any(o is obj for o in gc.get_objects())


def test_objects_the_application_froze_stay_frozen(collector_restored):
    gc.enable()
    kept = ["the application's", "long-lived object"]
    gc.freeze()
    assert frozen(kept)
    with collector_paused():
        built = [[i] for i in range(1000)]
    assert frozen(kept) and gc.isenabled() and len(built) == 1000


@pytest.fixture
def collector_settings_restored():
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def test_two_engines_running_at_once_leave_the_collector_as_they_found_it(collector_settings_restored):
    # The runs overlap as A in, B in, A out, B out: the order that left (50000, 20, 20) for good when
    # each run saved the thresholds it found and put them back when it ended.
    from adapters import Engine
    from nodes_for_tests import signals, task

    gc.set_threshold(1234, 11, 12)
    gc.enable()
    first = {"nodes": [task("a", "rendezvous", params={"mine": "a_in", "wait_for": "b_in"})]}
    second = {"nodes": [task("b", "rendezvous", params={"mine": "b_in", "wait_for": "a_out"})]}
    results = {}

    def run_first():
        results["a"] = Engine(runner="thread").run(first)
        signals["a_out"].set()

    def run_second():
        signals["a_in"].wait(10)
        results["b"] = Engine(runner="serial").run(second)

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["a"].status == results["b"].status == "succeeded"
    assert gc.get_threshold() == (1234, 11, 12)
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_leave_the_collector_on(collector_settings_restored):
    gc.enable()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with collector_paused():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second():
        a_in.wait(10)
        with fewer_gc_passes(), collector_paused():
            b_in.set()
            a_out.wait(10)
            seen.append(gc.isenabled())  # still paused for this holder after the other one left

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == [False] and gc.isenabled()
