"""The seed a run of the property tests draws its examples from, and each test's own seed made of it.

``FLOWCORE_TEST_SEED`` when it is set (to replay a run), a fresh random seed otherwise: every run
draws new examples. Kept apart from ``conftest.py`` so a test that draws examples by hand (not
through a collected ``@given`` test) can use the same seed.
"""
import os

SEED_VARIABLE = "FLOWCORE_TEST_SEED"


def _session_seed() -> int:
    given = os.environ.get(SEED_VARIABLE, "").strip()
    if not given:
        return int.from_bytes(os.urandom(4), "big")
    try:
        return int(given)
    except ValueError:
        raise SystemExit(f"{SEED_VARIABLE} must be a whole number (the one a run printed), not {given!r}") from None


SEED = _session_seed()
ANNOUNCEMENT = (f"property tests draw from {SEED_VARIABLE}={SEED}; "
                f"replay with {SEED_VARIABLE}={SEED} python -m pytest ...")


def seed_of(test_name: str) -> str:
    """The seed one test draws from: this run's, and the test's own name (so tests that share a
    strategy still see different examples)."""
    return f"{SEED}:{test_name}"
