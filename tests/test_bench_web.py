"""The web section's contenders do what its report says (``bench/web.py``, small sizes): the served
GET returns the --json object of the run it names, the event latency follows every node of the
chain, and the page timing opens a page that has the run's bars (where Chromium can start)."""
import os
import resource

import pytest

pytest.importorskip("fastapi", reason="the web libraries are not installed: pip install -e '.[test]'")

from bench import web  # noqa: E402


def test_api_latency_times_the_served_run_object(tmp_path):
    db = str(tmp_path / "w.db")
    web.stored_fanout(db, 20, "api")
    http, local = web.api_latency(db, "api", 5)  # raises unless GET /api/runs/{id} is the --json object
    assert len(http) == len(local) == 5 and all(t > 0 for t in http + local)


def test_event_latency_sees_every_node_of_the_chain(tmp_path):
    lat = web.event_latency(str(tmp_path), 5)
    assert len(lat) == 5
    assert all(-0.05 < t < 10 for t in lat)  # measured after the node finished (clocks of one machine)


def test_page_times_opens_pages_with_their_bars(tmp_path):
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if not os.path.exists(web.CHROMIUM) or (limit != resource.RLIM_INFINITY and limit < 64 << 30):
        if os.environ.get("CI") == "true":
            raise AssertionError("Chromium must run in CI")
        pytest.skip("Chromium is missing or cannot start under an address-space limit")
    db = str(tmp_path / "w.db")
    web.stored_fanout(db, 30, "big")
    times = web.page_times(db, {"big": "big"}, 1)  # raises unless the page shows the bars
    assert len(times["big"]) == 1
