"""Outage traces in the compiled trace integration (issue 12's rule, ported to issue 14's kernels).

The hand-computed cases are issue 12's (``tests/test_grounded.py`` on main); here they run against the one
trace integration of this branch (``latency.link_*`` kernels), which every caller, the engine included, uses.
"""

from __future__ import annotations

import bisect

import numpy as np
import pytest

from orchlib.system import latency


def _outage_rate() -> latency.RateFunction:
    # 8 Mbit/s for 1 s, an outage of 2 s, then 4 Mbit/s (the last sample holds for the median interval, 1.5 s).
    return latency.trace_rate(np.array([0.0, 1.0, 3.0]), np.array([8.0, 0.0, 4.0]))


def test_outage_trace_integrates_exactly() -> None:
    rate = _outage_rate()
    assert rate.has_outages and not latency.trace_rate(np.array([0.0, 1.0]), np.array([1.0, 2.0])).has_outages
    # 1 MB = 8 Mbit from 0.5 s: 4 Mbit by 1 s, nothing until 3 s, 4 Mbit at 4 Mbit/s by 4 s: 3.5 s.
    assert latency.transfer_time_ms(rate, 1e6, 500.0) == pytest.approx(3500.0)
    # exactly the bits left before the outage: done when it starts, not when it ends
    assert latency.transfer_time_ms(rate, 0.5e6, 500.0) == pytest.approx(500.0)
    # starting inside the outage: wait until 3 s, then 4 Mbit at 4 Mbit/s
    assert latency.transfer_time_ms(rate, 0.5e6, 1500.0) == pytest.approx(2500.0)
    np.testing.assert_allclose(
        latency.transfer_time_ms_array(rate, np.array([1e6, 0.5e6, 0.5e6]), np.array([500.0, 500.0, 1500.0])),
        [3500.0, 500.0, 2500.0],
    )
    # a result ready during the outage waits for the link: 1 s, then 4004 B at 4 Mbit/s (downloads are
    # integrated exactly on this branch, so this is the same transfer rule)
    assert latency.transfer_time_ms(rate, 4004.0, 2000.0) == pytest.approx(1000.0 + 8.008)
    # the trace loops after 4.5 s: 8 + 0 + 6 = 14 Mbit in the first period, then 2 Mbit at 8 Mbit/s: 4.75 s
    assert latency.transfer_time_ms(rate, 2e6, 0.0) == pytest.approx(4750.0)
    assert latency.rate_mbps_array(rate, np.array([0.5, 2.0, 3.5])).tolist() == [8.0, 0.0, 4.0]


def test_time_of_bits_is_the_earliest_time_on_flat_runs() -> None:
    rate = _outage_rate()
    # 8 Mbit are carried by 1 s and still at 3 s: the earliest time is 1 s, in every period
    assert rate.time_of_bits(8e6) == 1.0
    assert rate.time_of_bits(8e6 + 14e6) == pytest.approx(4.5 + 1.0)
    # a period that ends in an outage: its total is reached when the outage starts, not at the period's end
    ends_dark = latency.trace_rate(np.array([0.0, 1.0]), np.array([2.0, 0.0]))
    assert ends_dark.time_of_bits(2e6) == 1.0
    assert ends_dark.time_of_bits(4e6) == pytest.approx(3.0)


def test_the_outage_rule_agrees_with_a_bisect_reference() -> None:
    """The kernel's inverse equals the earliest time found with ``bisect_left`` on the breakpoints."""
    rate = _outage_rate()
    times, bits = rate.tail_times_s.tolist(), rate.tail_bits.tolist()
    for b in bits:
        assert rate.time_of_bits(b) == times[bisect.bisect_left(bits, b)]


def test_an_all_zero_trace_is_refused() -> None:
    with pytest.raises(ValueError, match="every trace rate is 0"):
        latency.trace_rate(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match=">= 0"):
        latency.trace_rate(np.array([0.0, 1.0]), np.array([1.0, -1.0]))
