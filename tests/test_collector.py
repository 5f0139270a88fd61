"""collector_paused: the cyclic collector is off during flowcore's own bulk work and as before after it."""
import gc

import pytest

from runners.drive import collector_paused


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
