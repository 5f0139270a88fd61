"""The random workflows and schedules reach every case the invariants are about.

An invariant checked only on runs where its case never happens cannot fail. Each test here asks
hypothesis to find one run that contains the case (a gather of several items, a retry after a
timeout, a duplicate, a crash...), so a change to the generators that loses a case fails here.
"""
import pytest
from hypothesis import HealthCheck, Phase, find, settings

from scheduler_core import CancelNode, NodeFailed, NodeSucceeded, StartNode
from scheduler_core.graph import GATHER
from scheduler_core.state import SKIPPED, SUCCEEDED

from .invariants import cap_size, delivered, key_of, walk
from .scenarios import traces
from .workflows import Vocabulary

# Finding one run is enough: no shrinking, which for whole traces would take minutes.
SEARCH = settings(max_examples=400, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
# find() prints the whole trace it found; that is what we want, only not as a warning.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def starts(trace):
    return [(s, c) for s in trace.steps for c in s.commands if type(c) is StartNode]


def gathers_several_items(trace) -> bool:
    g = trace.graph
    for s, c in starts(trace):
        for e, value in delivered(g, s.after.records, key_of(g, c)):
            if e.kind == GATHER and isinstance(value, list) and len(value) >= 2:
                return True
    return False


def joins_two_delivered_inputs(trace) -> bool:
    return any(len(c.values) >= 2 for _, c in starts(trace))


def skips_an_instance(trace) -> bool:
    return any(r.status == SKIPPED for r in trace.final.records.values())


def nests_fan_outs(trace) -> bool:
    return any(len(k[1]) == 2 for k in trace.final.records.keys())


def keeps_an_unexpanded_record(trace) -> bool:
    g = trace.graph
    return any(len(path) < g.depth[n] for n, path in trace.final.records.keys())


def fails_a_select(trace) -> bool:
    return any(r.error and r.error[0] == "select" for r in trace.final.records.values())


def starts_with_a_selected_value(trace) -> bool:
    g = trace.graph
    return any(any(g.edges[ei].select_text for ei in g.in_edges[key_of(g, c)[0]]) for _, c in starts(trace))


def completes_a_delay(trace) -> bool:
    g = trace.graph
    return any(g.nodes[n].type == "delay" and float(g.nodes[n].config["seconds"]) > 0 and r.status == SUCCEEDED
               for (n, _), r in trace.final.records.items())


def retries_after_a_timeout(trace) -> bool:
    timed_out = {(c.node, c.item) for s in trace.steps for c in s.commands
                 if type(c) is CancelNode and c.reason == "timeout"}
    return any(c.attempt > 1 and (c.node, c.item) in timed_out for _, c in starts(trace))


def retries_after_a_failure(trace) -> bool:
    failed = {(e.node, e.item) for s in trace.steps for e in s.events if type(e) is NodeFailed}
    return any(c.attempt > 1 and (c.node, c.item) in failed for _, c in starts(trace))


def delivers_a_duplicate(trace) -> bool:
    seen = set()
    for s in trace.steps:
        for e in s.events:
            if type(e) in (NodeSucceeded, NodeFailed):
                if (e.node, e.item, e.attempt) in seen:
                    return True
                seen.add((e.node, e.item, e.attempt))
    return False


def delivers_a_late_result(trace) -> bool:
    cancelled = set()
    for s in trace.steps:
        if any(type(e) in (NodeSucceeded, NodeFailed) and (e.node, e.item, e.attempt) in cancelled for e in s.events):
            return True
        cancelled |= {(c.node, c.item, c.attempt) for c in s.commands if type(c) is CancelNode}
    return False


def cancels_in_flight_siblings_on_failure(trace) -> bool:
    return any(type(c) is CancelNode and c.reason == "run failed" for s in trace.steps for c in s.commands)


def redispatches_after_a_crash(trace) -> bool:
    return any(c.redispatch for _, c in starts(trace))


def batches_several_events(trace) -> bool:
    return any(len(s.events) >= 3 for s in trace.steps)


def fills_a_cap(kind):
    def fills(trace) -> bool:
        full = []

        def after_step(step, ledger):
            counts = ledger.counts().items()
            full.extend(cap for cap, n in counts if cap != "run" and cap[0] == kind and n >= cap_size(trace.graph, cap))

        walk(trace, after_step=after_step)
        return bool(full)
    fills.__name__ = f"fills_a_{kind}_cap"
    return fills


CALM = {"fail_percents": (0,), "cancels": False, "crashes": False}  # runs that go all the way
CASES = [(gathers_several_items, CALM), (joins_two_delivered_inputs, {}), (skips_an_instance, {}),
         (nests_fan_outs, CALM), (keeps_an_unexpanded_record, {}), (completes_a_delay, {}),
         (retries_after_a_failure, {"fail_percents": (20,)}), (delivers_a_duplicate, {}),
         (delivers_a_late_result, {}), (cancels_in_flight_siblings_on_failure, {"fail_percents": (20,)}),
         (redispatches_after_a_crash, {}), (batches_several_events, {}), (fills_a_cap("pool"), {}),
         (fills_a_cap("foreach"), CALM), (fails_a_select, {}), (starts_with_a_selected_value, {}),
         (retries_after_a_timeout, {"vocab": Vocabulary(timeout_odds=2, retry_odds=2)})]


@pytest.mark.parametrize("case, options", CASES, ids=[case.__name__ for case, _ in CASES])
def test_random_runs_reach_the_case(case, options):
    find(traces(**options), case, settings=SEARCH)
