"""Streaming: the alerts do not depend on how the data was cut into batches."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.analytics.vehicle_harness import LAT0, LON0, Harness

values = st.lists(
    st.tuples(
        st.sampled_from(["b1", "b2"]),
        st.sampled_from([80.0, 99.0, 103.0, 107.0, 112.0, float("nan")]),
        st.sampled_from([0.0, 25.0, 85.0, 95.0]),
    ),
    min_size=1,
    max_size=60,
)


def _run(rows: list[tuple[str, float, float]], cuts: list[int]) -> list[tuple[str, str, str, int]]:
    h = Harness()
    bounds = sorted({0, len(rows), *(c % (len(rows) + 1) for c in cuts)})
    for a, b in itertools.pairwise(bounds):
        part = rows[a:b]
        h.readings([(bus, "coolant_c", 10.0 * (a + i), v) for i, (bus, v, _) in enumerate(part)])
        h.fixes([(bus, 10.0 * (a + i), LAT0, LON0, s / 3.6) for i, (bus, _, s) in enumerate(part)])
    # within a batch alerts come rule by rule, so compare them as a set; stale and
    # offline follow the clock, not the data, so they rightly depend on the batching
    clocked = ("stale", "offline")
    return sorted(
        (a.id, a.kind, a.state.value, a.opened_at) for a in h.alerts if a.kind not in clocked
    )


@settings(max_examples=60, deadline=None)
@given(values, st.lists(st.integers(min_value=0, max_value=60), max_size=5))
def test_batch_boundaries_do_not_change_alerts(
    rows: list[tuple[str, float, float]], cuts: list[int]
) -> None:
    whole = _run(rows, [])
    assert _run(rows, cuts) == whole
    # each alert id opens at most once and clears at most once
    for state in ("opened", "cleared"):
        ids = [a[0] for a in whole if a[2] == state]
        assert len(ids) == len(set(ids))
