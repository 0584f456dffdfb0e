"""The orchestrator's measurement logs (H4, H5), written once: the compiled rules against their definitions written
here in Python, and the one-replicate entry points (the per-request path's) against the ``B``-replicate ones (the
batched path's), bit for bit, with the upload log trimmed often."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from orchlib.system import dynamics
from orchlib.system.measurements import HISTORY_DEPTH, RECENT_REQUESTS, UploadLog, UserHistory


def _history_reference(entries: list[tuple[float, float, float]], t: float) -> tuple[float, float]:
    """The H5 definition on one user's served requests in service order (completion time, on-device slowdown,
    response time): of the last ``HISTORY_DEPTH``, those finished by ``t``; the newest on-device slowdown (1:
    none) and the mean response time of the newest ``RECENT_REQUESTS``, added oldest first (0: none)."""
    finished = [e for e in entries[-HISTORY_DEPTH:] if e[0] <= t]
    on_device = [slowdown for _, slowdown, _ in finished if slowdown > 0]
    recent = [latency for _, _, latency in finished[-RECENT_REQUESTS:]]
    return (on_device[-1] if on_device else 1.0), (sum(recent) / len(recent) if recent else 0.0)


def test_the_user_history_is_its_definition_in_both_views() -> None:
    rng = np.random.default_rng(3)
    n_replicates, n_users = 3, 4
    history = UserHistory(n_replicates, n_users)
    served = [collections.defaultdict(list) for _ in range(n_replicates)]
    t = np.zeros(n_replicates)
    checked = 0
    for _ in range(600):
        t += rng.exponential(5.0, n_replicates)
        user = rng.integers(n_users, size=n_replicates)
        estimate, recent_ms = history.read(user, t)
        for b in range(n_replicates):
            expected = _history_reference(served[b][user[b]], t[b])
            assert (estimate[b], recent_ms[b]) == expected
            assert history.read_one(b, int(user[b]), float(t[b])) == expected
            checked += expected[0] != 1.0 and expected[1] != 0.0
        # completion times out of service order (a long on-device run finishes after later ones), some on the
        # device (slowdown > 0), the rest off it
        latency = rng.exponential(20.0, n_replicates)
        slowdown = np.where(rng.random(n_replicates) < 0.4, rng.uniform(0.9, 2.5, n_replicates), 0.0)
        if rng.random() < 0.5:
            history.record(user, t + latency, slowdown, latency)
        else:
            for b in range(n_replicates):
                history.record_one(
                    b, int(user[b]), float(t[b] + latency[b]), float(slowdown[b]), float(latency[b])
                )
        for b in range(n_replicates):
            served[b][user[b]].append((t[b] + latency[b], slowdown[b], latency[b]))
    assert checked > 500  # most reads saw both an on-device slowdown and finished requests
    assert history.n.sum() == 600 * n_replicates


def test_the_upload_log_is_its_definition_in_both_views_and_stays_bounded() -> None:
    rng = np.random.default_rng(4)
    n_replicates, window, nominal = 3, 5, 7.0
    log, one = (
        UploadLog(n_replicates, window, nominal, kept=8),
        UploadLog(n_replicates, window, nominal, kept=8),
    )
    done = [[] for _ in range(n_replicates)]
    mbps = [[] for _ in range(n_replicates)]
    last_done = np.zeros(n_replicates)
    t = np.zeros(n_replicates)
    for _ in range(400):
        t += rng.exponential(3.0, n_replicates)
        for b in range(n_replicates):
            j = int(np.searchsorted(done[b], t[b], side="right"))
            expected = (
                nominal
                if j == 0
                else float(dynamics.harmonic_mean_mbps(np.array(mbps[b][max(0, j - window) : j])))
            )
            assert one.estimate_one(b, float(t[b])) == expected
        expected_all = np.array([one.estimate_one(b, float(t[b])) for b in range(n_replicates)])
        np.testing.assert_array_equal(log.estimate_mbps(t), expected_all)
        # FIFO uploads: each completes after the previous one of its replicate
        which = rng.random(n_replicates) < 0.7
        last_done = np.maximum(last_done, t) + rng.exponential(1.0, n_replicates)
        rate = rng.uniform(1.0, 30.0, n_replicates)
        log.record(which, last_done, rate)
        for b in np.flatnonzero(which):
            one.record_one(int(b), float(last_done[b]), float(rate[b]))
            done[b].append(last_done[b])
            mbps[b].append(rate[b])
        assert log.n.max() <= 16 and one.n.max() <= 16  # between kept and 2 * kept
    assert np.all(log.dropped > 0) and np.array_equal(log.dropped, one.dropped)
    with pytest.raises(ValueError, match="before the uploads this simulator still keeps"):
        one.estimate_one(0, 0.0)
    with pytest.raises(ValueError, match="before the uploads this simulator still keeps"):
        log.estimate_mbps(np.zeros(n_replicates))
