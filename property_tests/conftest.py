"""Hypothesis profiles for the property tests, chosen with ``HYPOTHESIS_PROFILE`` (default ``ci``).

``ci`` is fixed (derandomized) and fast enough that this whole directory runs in well under 90 s
on a slow two-core machine; ``dev`` tries many more examples, for a local hunt before a commit.
"""
import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("dev", max_examples=600, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_IS_FINE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
