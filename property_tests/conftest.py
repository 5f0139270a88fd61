"""Hypothesis profiles for the property tests, and the seed each run draws its examples from.

Profiles, chosen with ``HYPOTHESIS_PROFILE`` (default ``ci``): ``ci`` is fast enough that this whole
directory runs in well under 90 s on a slow two-core machine; ``dev`` tries many more examples, for a
local hunt before a commit.

Every run draws new examples, from ``FLOWCORE_TEST_SEED`` when it is set and from a fresh random
seed otherwise (``seeds.py``). pytest prints the seed in its header and at the end of its report:
replay a run with ``FLOWCORE_TEST_SEED=N python -m pytest property_tests``.
"""
import os
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, settings

from .seeds import ANNOUNCEMENT, seed_of

_HERE = Path(__file__).parent
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile("ci", max_examples=30, deadline=None, print_blob=True, suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("dev", max_examples=600, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_IS_FINE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    return ANNOUNCEMENT


def pytest_collection_modifyitems(config, items):
    for item in items:
        function = getattr(item, "obj", None)
        if _HERE in Path(item.path).parents and function is not None and hypothesis.is_hypothesis_test(function):
            hypothesis.seed(seed_of(f"{item.module.__name__}.{item.originalname}"))(function)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Also at the end, where it shows under ``-q`` (which hides the header) and next to a failure."""
    terminalreporter.write_line(ANNOUNCEMENT)
