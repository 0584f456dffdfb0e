"""Metrics on hand-made tables whose answers are computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchlib.study.metrics import (
    CI_DEGENERATE,
    CI_OK,
    CI_TOO_FEW,
    compare_to_baseline,
    learning_curve,
    mean_ci,
    recovery_time,
    requests_to_converge,
    summarize_runs,
)


def requests_table(
    latency_ms,
    oracle_ms=None,
    agent="a",
    scenario="s",
    replicate=0,
    accuracy_pct=None,
    met=None,
    time_s=None,
) -> pd.DataFrame:
    """One run's per-request table with only the columns metrics read."""
    latency = np.asarray(latency_ms, dtype=float)
    n = latency.size
    oracle = np.ones(n) if oracle_ms is None else np.asarray(oracle_ms, dtype=float)
    return pd.DataFrame(
        {
            "request": np.arange(n),
            "time_s": np.arange(n, dtype=float) if time_s is None else np.asarray(time_s, dtype=float),
            "latency_ms": latency,
            "accuracy_pct": np.full(n, 70.0) if accuracy_pct is None else np.asarray(accuracy_pct, float),
            "met_requirement": np.ones(n, bool) if met is None else np.asarray(met, bool),
            "oracle_latency_ms": oracle,
            "regret_ms": latency - oracle,
            "agent": agent,
            "scenario": scenario,
            "replicate": replicate,
        }
    )


def categorical(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    frame["agent"] = pd.Categorical(frame["agent"], categories=order)
    return frame


# ---------------------------------------------------------------- summarize_runs


@pytest.fixture
def two_runs() -> pd.DataFrame:
    first = requests_table(
        [10, 20, 30, 40],
        oracle_ms=[10, 10, 20, 20],
        accuracy_pct=[70, 70, 60, 60],
        met=[True, True, True, False],
    )
    second = requests_table([5, 5, 5, 5], oracle_ms=[5, 5, 5, 5], agent="b", replicate=3)
    return categorical(pd.concat([second, first], ignore_index=True), ["b", "a"])


def test_summarize_runs_by_hand(two_runs):
    out = summarize_runs(two_runs)
    assert out["agent"].tolist() == ["b", "a"]  # legend (category) order, not alphabetical
    a = out[out["agent"] == "a"].iloc[0]
    assert a["n_requests"] == 4
    assert a["mean_latency_ms"] == 25.0
    assert a["p95_latency_ms"] == pytest.approx(38.5)  # position 0.95 * 3 = 2.85: 30 + 0.85 * 10
    assert a["mean_accuracy_pct"] == 65.0
    assert a["violation_rate"] == 0.25
    assert a["mean_regret_ms"] == 10.0  # regrets 0, 10, 10, 20
    assert a["mean_oracle_latency_ms"] == 15.0
    assert a["latency_ratio_to_oracle"] == pytest.approx(25 / 15)
    b = out[out["agent"] == "b"].iloc[0]
    assert (b["replicate"], b["latency_ratio_to_oracle"], b["violation_rate"]) == (3, 1.0, 0.0)


def test_summarize_runs_on_the_second_half(two_runs):
    a = summarize_runs(two_runs, from_fraction=0.5).set_index("agent").loc["a"]
    # requests 2 and 3: latency 30, 40; oracle 20, 20; accuracy 60; one violation
    assert a["n_requests"] == 2
    assert a["mean_latency_ms"] == 35.0
    assert a["p95_latency_ms"] == pytest.approx(39.5)
    assert (a["mean_accuracy_pct"], a["violation_rate"], a["mean_regret_ms"]) == (60.0, 0.5, 15.0)
    assert a["latency_ratio_to_oracle"] == pytest.approx(35 / 20)


def test_summarize_runs_refuses_bad_input(two_runs):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['regret_ms'\]"):
        summarize_runs(two_runs.drop(columns="regret_ms"))
    with pytest.raises(ValueError, match="from_fraction"):
        summarize_runs(two_runs, from_fraction=1.0)
    with pytest.raises(TypeError, match="DataFrame"):
        summarize_runs(two_runs.to_dict())


# ---------------------------------------------------------------- mean_ci and compare_to_baseline


def test_mean_ci_matches_scipy_bca_and_handles_small_samples():
    values = [1.0, 2.0, 4.0, 8.0, 9.0]
    mean, low, high = mean_ci(values, rng=3)
    expected = stats.bootstrap(
        (np.array(values),), np.mean, method="BCa", random_state=np.random.default_rng(3)
    ).confidence_interval
    assert mean == 4.8
    assert (low, high) == pytest.approx((expected.low, expected.high))
    assert low < mean < high
    one = mean_ci([2.5], rng=0)
    assert one[0] == 2.5 and np.isnan(one[1]) and np.isnan(one[2])
    same = mean_ci([2.0, 2.0, 2.0], rng=0)
    assert same[0] == 2.0 and np.isnan(same[1]) and np.isnan(same[2])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def runs_table(rows: list[tuple[str, int, float, float]], scenario: str = "s") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"agent": a, "scenario": scenario, "replicate": r, "mean_latency_ms": t, "mean_accuracy_pct": acc}
            for a, r, t, acc in rows
        ]
    )


def test_compare_to_baseline_point_estimates_by_hand():
    runs = runs_table(
        [
            ("base", 0, 100.0, 70.0),
            ("base", 1, 120.0, 72.0),
            ("rl", 0, 80.0, 69.0),
            ("rl", 1, 80.0, 70.0),
        ]
    )
    row = compare_to_baseline(runs, baseline="base", rng=0).iloc[0]
    assert (row["agent"], row["baseline"], row["n_runs"], bool(row["paired"])) == ("rl", "base", 2, True)
    assert (row["agent_value"], row["baseline_value"]) == (80.0, 110.0)
    assert row["speedup_ratio"] == pytest.approx(110 / 80 - 1)  # 0.375: the baseline takes 37.5 % longer
    assert row["time_reduction"] == pytest.approx(1 - 80 / 110)  # 0.2727: the agent needs 27.3 % less time
    assert row["accuracy_loss_pp"] == pytest.approx(71.0 - 69.5)  # 1.5 percentage points
    assert row["accuracy_loss_rel_pct"] == pytest.approx(100 * 1.5 / 71)  # 2.11 % of the baseline's accuracy
    # the two speedup forms describe the same pair of means
    assert row["time_reduction"] == pytest.approx(1 - 1 / (1 + row["speedup_ratio"]))


def test_compare_to_baseline_confidence_intervals_are_paired_bca():
    base_t = np.array([100.0, 120.0, 90.0, 110.0, 105.0, 95.0])
    rl_t = np.array([80.0, 85.0, 70.0, 82.0, 79.0, 75.0])
    base_a = np.array([70.0, 71.0, 70.5, 70.2, 70.8, 70.1])
    rl_a = np.array([69.0, 70.4, 69.9, 69.0, 70.1, 69.5])
    rows = [("base", r, t, a) for r, (t, a) in enumerate(zip(base_t, base_a, strict=True))]
    rows += [("rl", r, t, a) for r, (t, a) in enumerate(zip(rl_t, rl_a, strict=True))]
    row = compare_to_baseline(runs_table(rows), baseline="base", rng=42).iloc[0]
    assert row["latency_ci"] == CI_OK and row["accuracy_ci"] == CI_OK
    # the first interval computed is the speedup's: reproduce it with scipy directly, same seed
    expected = stats.bootstrap(
        (base_t, rl_t),
        lambda b, a, axis=-1: b.mean(axis=axis) / a.mean(axis=axis) - 1,
        paired=True,
        method="BCa",
        random_state=np.random.default_rng(42),
    ).confidence_interval
    assert (row["speedup_ratio_low"], row["speedup_ratio_high"]) == pytest.approx(
        (expected.low, expected.high)
    )
    for name in ("speedup_ratio", "time_reduction", "accuracy_loss_pp", "accuracy_loss_rel_pct"):
        assert row[f"{name}_low"] < row[name] < row[f"{name}_high"], name
    # same seed, same intervals
    again = compare_to_baseline(runs_table(rows), baseline="base", rng=42).iloc[0]
    pd.testing.assert_series_equal(row, again)


def test_compare_to_baseline_flags_what_it_cannot_bootstrap():
    runs = runs_table(
        [
            ("base", 0, 100.0, 70.0),
            ("base", 1, 120.0, 70.0),
            ("base", 2, 110.0, 70.0),
            ("single", 0, 80.0, 69.0),  # one run: no interval
            ("same_acc", 0, 90.0, 70.0),  # accuracy constant in both groups: degenerate
            ("same_acc", 1, 95.0, 70.0),
            ("same_acc", 2, 85.0, 70.0),
            ("unpaired", 5, 90.0, 69.0),
            ("unpaired", 6, 99.0, 68.0),
        ]
    )
    out = compare_to_baseline(runs, baseline="base", rng=0).set_index("agent")
    assert list(out.index) == ["single", "same_acc", "unpaired"]
    single = out.loc["single"]
    assert single["latency_ci"] == CI_TOO_FEW and single["accuracy_ci"] == CI_TOO_FEW
    assert single["speedup_ratio"] == pytest.approx(110 / 80 - 1)
    assert np.isnan(single["speedup_ratio_low"]) and np.isnan(single["accuracy_loss_pp_high"])
    same = out.loc["same_acc"]
    assert same["accuracy_ci"] == CI_DEGENERATE and same["accuracy_loss_pp"] == 0.0
    assert np.isnan(same["accuracy_loss_pp_low"])
    assert same["latency_ci"] == CI_OK and bool(same["paired"])
    unpaired = out.loc["unpaired"]
    assert not unpaired["paired"] and unpaired["latency_ci"] == CI_OK
    assert unpaired["time_reduction"] == pytest.approx(1 - 94.5 / 110)


def test_compare_to_baseline_refuses_bad_input():
    runs = runs_table([("base", 0, 100.0, 70.0), ("rl", 0, 80.0, 69.0)])
    with pytest.raises(ValueError, match=r"baseline 'greedy' has no runs in scenario 's'.*'base', 'rl'"):
        compare_to_baseline(runs, baseline="greedy")
    with pytest.raises(ValueError, match="missing column"):
        compare_to_baseline(runs, baseline="base", metric="p95_latency_ms")
    with pytest.raises(ValueError, match="one row per run"):
        compare_to_baseline(pd.concat([runs, runs]), baseline="base")


def test_compare_to_baseline_compares_within_each_scenario():
    runs = pd.concat(
        [
            runs_table([("base", 0, 100.0, 70.0), ("rl", 0, 50.0, 70.0)], scenario="fast"),
            runs_table([("base", 0, 100.0, 70.0), ("rl", 0, 200.0, 70.0)], scenario="slow"),
        ]
    )
    out = compare_to_baseline(runs, baseline="base").set_index("scenario")
    assert out.loc["fast", "time_reduction"] == pytest.approx(0.5)
    assert out.loc["slow", "time_reduction"] == pytest.approx(-1.0)
    assert out.loc["slow", "speedup_ratio"] == pytest.approx(-0.5)


# ---------------------------------------------------------------- learning over time


def test_learning_curve_by_hand():
    frame = requests_table(np.arange(1.0, 11.0), oracle_ms=np.full(10, 2.0))
    curve = learning_curve(frame, window=4)
    # windows cover requests 0-3 and 4-7; requests 8-9 are a partial window and dropped
    assert curve["window"].tolist() == [0, 1]
    assert curve["request_start"].tolist() == [0, 4] and curve["request_end"].tolist() == [4, 8]
    assert curve["mean_latency_ms"].tolist() == [2.5, 6.5]
    assert curve["latency_ratio_to_oracle"].tolist() == [1.25, 3.25]
    with pytest.raises(ValueError, match="window"):
        learning_curve(frame, window=0)


def test_requests_to_converge_by_hand():
    # windows of 2: means 45, 11, 10, 20, 10; final = mean of the last 20 % (requests 8, 9) = 10
    late_spike = requests_table([50, 40, 12, 10, 10.4, 9.6, 30, 10, 10, 10], replicate=0)
    # windows of 2: means 45, 11, 10.2, 9.9, 10: within 5 % of 10 from window 2 on
    settles = requests_table([50, 40, 12, 10, 10.2, 10.2, 9.8, 10, 10, 10], replicate=1)
    out = requests_to_converge(pd.concat([late_spike, settles]), tolerance=0.05, window=2)
    assert out["final_latency_ms"].tolist() == [10.0, 10.0]
    assert out["requests_to_converge"].tolist() == [8.0, 4.0]
    assert out["converged"].tolist() == [True, True]
    # windows of 4 (requests 0-7) never reach the final level: window 1 of late_spike averages 15
    wide = requests_to_converge(late_spike, tolerance=0.05, window=4)
    assert np.isnan(wide["requests_to_converge"].iloc[0]) and not wide["converged"].iloc[0]


def test_recovery_time_by_hand():
    # one request per second; at 10 s the oracle doubles (10 -> 20 ms) and the agent needs 4 requests
    before = [12.0] * 10  # ratio 1.2 before the change
    after = [60, 60, 40, 40, 24, 24, 24, 24, 24, 24]  # windowed ratios 3, 2, 1.2, 1.2, 1.2
    slow = requests_table(before + after, oracle_ms=[10.0] * 10 + [20.0] * 10, replicate=0)
    instant = requests_table([12.0] * 10 + [24.0] * 10, oracle_ms=[10.0] * 10 + [20.0] * 10, replicate=1)
    out = recovery_time(pd.concat([slow, instant]), change_time_s=10.0, window=2).set_index("replicate")
    assert out.loc[0, "pre_change_ratio_to_oracle"] == pytest.approx(1.2)
    assert out.loc[0, "peak_ratio_to_oracle"] == pytest.approx(3.0)
    assert out.loc[0, "reference_ratio_to_oracle"] == pytest.approx(1.2)
    assert out.loc[0, "recovery_requests"] == 4.0
    assert out.loc[0, "recovery_s"] == 4.0  # request 14 arrives at 14 s
    assert out.loc[1, "recovery_requests"] == 0.0 and out.loc[1, "recovery_s"] == 0.0
    assert out["recovered"].all()
    # an end time limits the post-change segment: requests 10-13 only, reference = their last 20 % (request 13)
    early = recovery_time(slow, change_time_s=10.0, window=2, end_time_s=14.0).iloc[0]
    assert early["reference_ratio_to_oracle"] == pytest.approx(2.0)
    assert early["recovery_requests"] == 2.0
    with pytest.raises(ValueError, match="fewer than one window"):
        recovery_time(slow, change_time_s=19.5, window=2)
    with pytest.raises(ValueError, match="end_time_s"):
        recovery_time(slow, change_time_s=10.0, end_time_s=5.0)


def test_time_metrics_keep_the_legend_order():
    frame = categorical(
        pd.concat([requests_table(np.ones(20), agent="z"), requests_table(np.ones(20), agent="y")]),
        ["z", "y"],
    )
    assert requests_to_converge(frame, window=5)["agent"].tolist() == ["z", "y"]
    assert recovery_time(frame, change_time_s=5.0, window=5)["agent"].tolist() == ["z", "y"]
    assert learning_curve(frame, window=5)["agent"].cat.categories.tolist() == ["z", "y"]


def test_requests_to_reach_a_common_target_by_hand() -> None:
    from orchlib.study.metrics import requests_to_reach

    # one run, windows of 2 requests: means 10, 6, 4, 5 -> at or below 5 * 1.0 from window 2 on (request 4)
    latency = [12, 8, 7, 5, 4, 4, 5, 5]
    frame = pd.DataFrame(
        {
            "agent": "a",
            "scenario": "s",
            "replicate": 0,
            "request": range(8),
            "latency_ms": latency,
            "oracle_latency_ms": 1.0,
        }
    )
    out = requests_to_reach(frame, target_latency_ms=5.0, window=2, tolerance=0.0)
    assert out["requests_to_reach"].tolist() == [4.0]
    assert out["reached"].tolist() == [True]
    never = requests_to_reach(frame, target_latency_ms=3.0, window=2, tolerance=0.0)
    assert never["reached"].tolist() == [False] and np.isnan(never["requests_to_reach"].iloc[0])
    with pytest.raises(ValueError, match="target_latency_ms"):
        requests_to_reach(frame, target_latency_ms=0.0)


def test_most_frequent_choice_by_hand() -> None:
    from orchlib.study.experiments import most_frequent_choice

    frame = pd.DataFrame(
        {
            "agent": ["a", "a", "a", "a", "b"],
            "level": [0, 0, 0, 1, 0],
            "tier": ["end", "edge", "end", "cloud", "edge"],
            "variant": ["v1", "v2", "v1", "v3", "v2"],
        }
    )
    out = most_frequent_choice(frame, ["agent", "level"])
    assert out[["agent", "level", "tier", "variant", "n", "n_cell"]].values.tolist() == [
        ["a", 0, "end", "v1", 2, 3],
        ["a", 1, "cloud", "v3", 1, 1],
        ["b", 0, "edge", "v2", 1, 1],
    ]
    assert out["share"].tolist() == pytest.approx([2 / 3, 1.0, 1.0])
