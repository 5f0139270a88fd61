"""Hypothesis property tests: random workflows, random interleavings, and the invariants they must keep."""
