"""Aggregates over runs (IQM, stratified bootstrap, probability of improvement, performance profiles) and the
learning acceleration, on small hand-built tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchlib.study.aggregates import (
    acceleration,
    iqm,
    performance_profile,
    probability_of_improvement,
    run_scores,
    score_matrix,
    settling,
    window_lengths,
)


def requests_table(curves: dict[tuple[str, str, int], np.ndarray], oracle_ms: float = 10.0) -> pd.DataFrame:
    frames = []
    for (agent, scenario, replicate), latency in curves.items():
        frames.append(
            pd.DataFrame(
                {
                    "agent": agent,
                    "scenario": scenario,
                    "replicate": replicate,
                    "request": np.arange(latency.size),
                    "latency_ms": latency,
                    "oracle_latency_ms": oracle_ms,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def scores_table(values: dict[str, np.ndarray]) -> pd.DataFrame:
    """values[agent]: (n_runs, n_tasks) matrix of scores, tasks named t0, t1, ..."""
    rows = []
    for agent, matrix in values.items():
        for run, task in np.ndindex(matrix.shape):
            rows.append(
                {"agent": agent, "scenario": f"t{task}", "replicate": run, "score": matrix[run, task]}
            )
    return pd.DataFrame(rows)


def test_run_scores_by_hand() -> None:
    table = requests_table({("a", "s", 0): np.array([40.0, 20.0, 20.0, 20.0])})
    assert run_scores(table)["score"].item() == pytest.approx(40 / 100)
    assert run_scores(table, from_request=2)["score"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="from_request"):
        run_scores(table, from_request=10)


def test_iqm_is_the_trimmed_mean_with_a_covering_reproducible_interval() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.uniform(0.5, 1.0, size=(12, 3))
    scores = scores_table({"a": matrix})
    assert np.array_equal(score_matrix(scores, "a", ["t0", "t1", "t2"]), matrix)
    row = iqm(scores, rng=1).iloc[0]
    flat = np.sort(matrix.ravel())
    assert row["iqm"] == pytest.approx(flat[9:27].mean())  # middle 50% of 36 scores
    assert row["iqm_low"] < row["iqm"] < row["iqm_high"]
    assert iqm(scores, rng=1).equals(iqm(scores, rng=1))


def test_probability_of_improvement_and_profiles() -> None:
    better, worse = np.full((10, 2), 0.9), np.full((10, 2), 0.5)
    better[0, 0] = 0.95  # some spread, so the bootstrap has something to resample
    scores = scores_table({"x": better, "y": worse})
    point, low, high = probability_of_improvement(scores, "x", "y", n_resamples=200)
    assert point == 1.0 and low == 1.0 and high == 1.0
    assert probability_of_improvement(scores, "y", "x", n_resamples=200)[0] == 0.0
    profile = performance_profile(scores, [0.4, 0.7, 0.92])
    got = profile.set_index(["agent", "tau"])["fraction_above"]
    assert got[("x", 0.7)] == 1.0 and got[("y", 0.7)] == 0.0 and got[("y", 0.4)] == 1.0
    assert got[("x", 0.92)] == pytest.approx(0.05)  # one run of ten on one task of two


def test_settling_counts_single_requests_to_the_own_level() -> None:
    n, window = 4000, 100
    # latency / oracle: 3 until request 2,000 (0-based), then 1; the other agent from request 200.
    slow = np.where(np.arange(n) < 2000, 30.0, 10.0)
    fast = np.where(np.arange(n) < 200, 30.0, 10.0)
    table = requests_table({("q", "s", r): slow for r in range(3)} | {("h", "s", r): fast for r in range(3)})
    settle, curves = settling(table, window=window, growth=0.0, n_resamples=50)
    rows = settle.set_index("agent")
    # a window starting at 0-based t holds 2000 - t slow requests; its ratio (1 + 2k/100) is within 5% of 1
    # for k <= 2, so the last window above the band starts at 1997 and the curve settles at request 1999
    assert rows.loc["q", "settle_request"] == 1999 and rows.loc["h", "settle_request"] == 199
    assert rows.loc["q", "final_ratio"] == pytest.approx(1.0)
    # identical runs: every resample gives the same count
    assert rows.loc["q", "settle_request_low"] == rows.loc["q", "settle_request_high"] == 1999
    assert set(curves["agent"]) == {"q", "h"} and curves["request"].min() == 1
    row = acceleration(table, "h", reference="q", window=window, growth=0.0, n_resamples=50).iloc[0]
    assert row["reference_requests"] == 1999 and row["agent_requests"] == 199
    assert row["acceleration"] == pytest.approx(1999 / 199) and row["reached"]
    # an agent at its level from its first request settles at request 1: the ratio is resolved to one request
    table = requests_table(
        {("q", "s", r): slow for r in range(3)} | {("h", "s", r): np.full(n, 9.0) for r in range(3)}
    )
    row = acceleration(table, "h", reference="q", window=window, growth=0.0, n_resamples=50).iloc[0]
    assert row["agent_requests"] == 1 and row["acceleration"] == pytest.approx(1999.0)
    with pytest.raises(ValueError, match="no runs of agent"):
        acceleration(table, "missing", reference="q")
    with pytest.raises(ValueError, match="at least 2 windows"):
        settling(table, window=4000, growth=0.0)
    with pytest.raises(ValueError, match="growth"):
        settling(table, growth=1.5)


def test_windows_grow_with_the_request_index() -> None:
    lengths = window_lengths(1000, 20, 0.1)
    assert lengths[0] == 20 and lengths[199] == 20 and lengths[200] == 21  # ceil(0.1 * 201)
    assert lengths.size == 910 and 909 + lengths[-1] <= 1000  # every window ends within the run
    assert (window_lengths(300, 100, 0.0) == 100).all() and window_lengths(300, 100, 0.0).size == 201


def test_settling_interval_covers_noisy_runs_and_is_reproducible() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    runs = {}
    for r in range(8):
        switch = rng.integers(800, 1200)  # each run learns at a different request
        runs[("a", "s", r)] = np.where(np.arange(n) < switch, 20.0, 10.0) * rng.uniform(0.98, 1.02, n)
    table = requests_table(runs)
    first = settling(table, window=50, n_resamples=200, rng=3)[0].iloc[0]
    assert first["settle_request_low"] < first["settle_request"] < first["settle_request_high"]
    assert first["settle_request_low"] >= 800 and first["settle_request_high"] <= 1250
    again = settling(table, window=50, n_resamples=200, rng=3)[0].iloc[0]
    assert first.equals(again)


def test_the_batched_improvement_statistic_is_rliables_bit_for_bit() -> None:
    # the bootstrap evaluates P(X > Y) for all resamples in one call; it must be rliable's per-task Mann-Whitney
    # value exactly (ties, identical runs, unequal run counts)
    import rliable.metrics as rly

    from orchlib.study.aggregates import _improvement

    rng = np.random.default_rng(3)
    for n_x, n_y in ((10, 10), (7, 12), (3, 5)):
        for _ in range(50):
            x = rng.integers(0, 6, size=(n_x, 3)) / 4.0  # coarse values: many ties
            y = rng.integers(0, 6, size=(n_y, 3)) / 4.0
            if n_x == n_y and rng.random() < 0.2:
                y = x.copy()  # rliable's shortcut for identical runs
            ours = np.mean(np.stack([_improvement(x[:, t], y[:, t]) for t in range(3)], axis=-1), axis=-1)
            assert ours == rly.probability_of_improvement(x, y)
    # batched: each resample's value is the one-by-one value
    xs, ys = rng.random((4, 9)), rng.random((4, 6))
    np.testing.assert_array_equal(
        _improvement(xs, ys), [_improvement(a, b) for a, b in zip(xs, ys, strict=True)]
    )
