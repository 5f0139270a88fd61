"""The dask runner's in-process clusters keep distributed's INFO lines off stderr, however many are open.

distributed logs every start and stop of a scheduler, worker and client at INFO, on a stream handler
of its own (on stderr; under pytest it installs none, so the test adds one, as it would be).
"""
import io
import logging

from runners.dask_runner import DaskBackend


def test_clusters_open_side_by_side_say_nothing_until_the_last_one_closes():
    """A worker drives runs side by side, each on a cluster of its own. LocalCluster quieted the
    handler for as long as the cluster that quieted it first was open: once that one closed, the
    others logged their shutdown (14 INFO lines a run) on stderr."""
    logger = logging.getLogger("distributed")
    stderr = io.StringIO()
    handler = logging.StreamHandler(stderr)
    logger.addHandler(handler)
    try:
        first = DaskBackend(None, "first")
        second = DaskBackend(None, "second")
        first.close(0)
        second.close(0)
    finally:
        logger.removeHandler(handler)
    assert stderr.getvalue() == ""
    assert handler.level == logging.NOTSET  # as it was: quiet only while a cluster of flowcore's is open
