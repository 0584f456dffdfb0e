"""The random-worlds study (figure 11): seeded draws within their ranges, clear errors for bad ranges, the study
end to end at a tiny size, the relation the ratios to the oracle obey, and the analysis on hand-made tables."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from orchlib.study import plots, worlds
from orchlib.study.worlds import (
    FEATURES,
    WorldRanges,
    WorldStudy,
    decision_stumps,
    draw_worlds,
    feature_effects,
    learner_comparison,
    world_table,
)
from orchlib.system.profiles import load_variants
from orchlib.system.scenario import paper
from orchlib.ui.worlds_panel import WorldsPanel, default_values, study_from_values

# ------------------------------------------------------------------------------------------------------------
# The draw


def test_same_seed_same_worlds_and_a_larger_draw_extends_a_smaller_one() -> None:
    ranges = WorldRanges()
    a, features_a = draw_worlds(ranges, 6, rng=11)
    b, features_b = draw_worlds(ranges, 6, rng=11)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    pd.testing.assert_frame_equal(features_a, features_b)
    c, _ = draw_worlds(ranges, 6, rng=12)
    assert [s.to_json() for s in a] != [s.to_json() for s in c]
    longer, _ = draw_worlds(ranges, 9, rng=11)
    assert [s.to_json() for s in longer[:6]] == [s.to_json() for s in a]


def test_drawn_worlds_respect_their_ranges_and_keep_the_rest_of_paper() -> None:
    ranges = WorldRanges(
        n_users=(3, 5),
        n_device_classes=(2, 3),
        uplink_mbps=(2.0, 8.0),
        rtt_ms=(30.0, 40.0),
        thermal_max_slowdown=(1.2, 1.4),
        background_slowdown=(1.5, 2.5),
        background_busy_share=(0.1, 0.3),
        cotenant_busy_share=(0.2, 0.4),
        tolerances_pp=(1.0, 3.0, 6.0),
        n_requirement_classes=(1, 2),
        traces=WorldRanges().traces[:3],
    )
    scenarios, features = draw_worlds(ranges, 40, rng=3, n_requests=123)
    base = paper()
    best = float(load_variants(base.variants).column("top1_pct").max())
    for s, row in zip(scenarios, features.itertuples(), strict=True):
        assert 3 <= s.n_users <= 5 and s.n_requests == 123
        assert 2 <= len(s.fleet.classes) <= 3 and set(s.fleet.classes) <= set(ranges.device_classes)
        assert abs(sum(s.fleet.probabilities) - 1) < 1e-9
        assert 2.0 <= s.access.uplink_mbps <= 8.0 and 30.0 <= s.access.rtt_ms <= 40.0
        assert s.access.trace in ranges.traces and s.access.trace_rescale
        assert 1.2 <= s.thermal.max_slowdown <= 1.4
        assert 1.5 <= s.background.slowdown <= 2.5
        busy = s.background.mean_on_s / (s.background.mean_on_s + s.background.mean_off_s)
        assert 0.1 - 1e-12 <= busy <= 0.3 + 1e-12
        busy = s.cotenant.mean_on_s / (s.cotenant.mean_on_s + s.cotenant.mean_off_s)
        assert 0.2 - 1e-12 <= busy <= 0.4 + 1e-12
        tolerances = {round(best - level, 6) for level in s.accuracy.levels_pct}
        assert 1 <= len(tolerances) <= 2 and tolerances <= {1.0, 3.0, 6.0}
        # what the study does not vary is the grounded preset's
        same = ("edge", "cloud", "wan", "arrivals", "cloud_accelerator", "payload", "bandwidth_estimate")
        assert all(getattr(s, name) == getattr(base, name) for name in same)
        assert row.n_users == s.n_users and row.uplink_mbps == s.access.uplink_mbps
    # the draw covers its ranges rather than sitting at one end
    assert features["n_users"].nunique() == 3
    assert features["uplink_mbps"].min() < 3.0 and features["uplink_mbps"].max() > 6.0


def test_a_range_of_one_value_fixes_the_factor_and_a_zero_share_switches_the_condition_off() -> None:
    ranges = WorldRanges(
        n_users=(4, 4),
        cotenant_busy_share=(0.0, 0.0),
        background_busy_share=(0.0, 0.0),
        uplink_mbps=(5.0, 5.0),
    )
    scenarios, _ = draw_worlds(ranges, 5, rng=0)
    assert {s.n_users for s in scenarios} == {4}
    assert all(s.cotenant is None and s.background is None for s in scenarios)
    assert {s.access.uplink_mbps for s in scenarios} == {5.0}


def test_features_of_the_paper_preset_are_its_documented_values() -> None:
    features = worlds.world_features(paper())
    assert features["n_users"] == 8 and features["n_device_classes"] == 5
    assert features["phone_share"] == pytest.approx(0.6) and features["slow_device_share"] == pytest.approx(
        0.2
    )
    assert features["thermal_max_slowdown"] == 1.9 and features["background_slowdown"] == 2.0
    assert features["background_busy_share"] == pytest.approx(0.2)  # H2: 10 s busy, 40 s quiet
    assert features["cotenant_busy_share"] == pytest.approx(0.4)  # H3: 0.1 s on, 0.15 s off
    assert features["mean_tolerance_pp"] == pytest.approx(5.0)
    assert features["min_tolerance_pp"] == pytest.approx(1.0)
    assert features["uplink_mbps"] == paper().access.uplink_mbps and features["trace_kind"] == "3g_bus"
    off = worlds.world_features(paper().without_grounding())
    assert off["cotenant_busy_share"] == 0.0 and off["thermal_max_slowdown"] == 1.0
    assert off["n_device_classes"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"n_users": (8, 2)},
            r"WorldRanges\.n_users must be a pair \(low, high\) of integers with 1 <= low <= high",
        ),
        ({"n_users": (0, 4)}, r"WorldRanges\.n_users"),
        ({"n_users": (2.5, 4)}, r"WorldRanges\.n_users .* integers"),
        ({"uplink_mbps": (0.0, 10.0)}, r"WorldRanges\.uplink_mbps"),
        ({"uplink_mbps": (1.0, float("nan"))}, r"WorldRanges\.uplink_mbps"),
        ({"rtt_ms": (5.0,)}, r"WorldRanges\.rtt_ms must be a pair"),
        ({"thermal_max_slowdown": (0.5, 2.0)}, r"WorldRanges\.thermal_max_slowdown .* 1 <= low"),
        ({"cotenant_busy_share": (0.2, 1.0)}, r"WorldRanges\.cotenant_busy_share .* high < 1"),
        ({"n_device_classes": (1, 6)}, r"WorldRanges\.n_device_classes .* high <= 5"),
        (
            {"device_classes": ("pixel3_cpu4", "no_such_phone"), "n_device_classes": (1, 2)},
            r"WorldRanges\.device_classes: 'no_such_phone'",
        ),
        ({"traces": ("no_such_trace.log",)}, r"WorldRanges\.traces: 'no_such_trace\.log'"),
        ({"traces": ()}, r"WorldRanges\.traces must be a non-empty tuple"),
        ({"tolerances_pp": (1.0, 1.0)}, r"WorldRanges\.tolerances_pp must be a tuple without repeats"),
        ({"tolerances_pp": (1.0, 200.0), "n_requirement_classes": (1, 2)}, r"WorldRanges\.tolerances_pp"),
        ({"n_requirement_classes": (1, 8)}, r"WorldRanges\.n_requirement_classes .* high <= 7"),
    ],
)
def test_bad_ranges_give_an_error_naming_the_field(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        WorldRanges(**change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_worlds": 0}, r"WorldStudy\.n_worlds must be an integer >= 1"),
        ({"methods": ("q_learning", "greedy_profiles")}, r"must include 'oracle'"),
        ({"methods": ("oracle", "dqn", "greedy_profiles")}, r"unknown \['dqn'\]"),
        ({"methods": ("oracle", "greedy_profiles")}, r"at least one fixed rule .* and one learner"),
        ({"ranges": {"n_users": (1, 2)}}, r"WorldStudy\.ranges must be a WorldRanges"),
    ],
)
def test_bad_study_settings_give_an_error_naming_the_field(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        WorldStudy(**change)


# ------------------------------------------------------------------------------------------------------------
# The study end to end

TINY = WorldStudy(
    n_worlds=3,
    n_replicates=2,
    n_requests=150,
    methods=("oracle", "q_learning", "hybrid", "greedy_profiles", "local_fastest", "edge_most_accurate"),
    seed=5,
)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("worlds_runs")
    return worlds.run_world_study(TINY, out, n_jobs=1, progress=False), out


def test_the_study_runs_end_to_end_and_reads_back_the_same_numbers(tiny_result) -> None:
    result, out = tiny_result
    assert len(result.worlds) == 3 and list(result.worlds.columns[: len(FEATURES) + 1]) == [
        "world",
        *FEATURES,
    ]
    assert len(result.runs) == 3 * len(TINY.methods) * 2
    again = worlds.run_world_study(TINY, out, n_jobs=1, progress=False)  # from the cache
    pd.testing.assert_frame_equal(result.runs, again.runs)
    # the paper preset runs beside the drawn worlds, as a reference outside them
    assert set(result.reference_runs["world"]) == {"paper"} and "paper" not in set(result.runs["world"])
    assert len(result.reference_runs) == len(TINY.methods) * 2
    assert result.reference_world["cotenant_busy_share"].iloc[0] == pytest.approx(0.4)


def test_ratios_to_the_clairvoyant_best_are_at_least_one_and_the_oracle_is_one(tiny_result) -> None:
    runs = pd.concat([tiny_result[0].runs, tiny_result[0].reference_runs])
    oracle = runs[runs["method"] == "oracle"]
    # the oracle's requests are each served at the evaluated best: ratio 1 up to rounding of the means
    np.testing.assert_allclose(oracle["latency_ratio_to_oracle"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(oracle["latency_ratio_to_oracle_run"], 1.0, rtol=0)
    others = runs[runs["method"] != "oracle"]
    assert (others["latency_ratio_to_oracle"] >= 1 - 1e-12).all()
    assert (others["latency_ratio_to_oracle_second_half"] >= 1 - 1e-12).all()
    # against the oracle *policy's* run no such bound holds (it is greedy per request); only positivity
    assert (others["latency_ratio_to_oracle_run"] > 0).all()


def test_world_table_ranks_methods_per_world(tiny_result) -> None:
    result = tiny_result[0]
    table = world_table(result.runs, result.worlds)
    assert len(table) == 3 * len(TINY.methods)
    assert set(table.loc[table["method"] == "oracle", "rank"]) == {1}
    for _, part in table.groupby("world"):
        expected = part["latency_ratio_to_oracle"].rank(method="min").astype(int)
        assert (part["rank"] == expected).all()
        assert part.loc[part["method"] != "oracle", "rank_among_non_oracle"].min() == 1
    assert {"latency_ratio_to_oracle", "mean_latency_ms", "uplink_mbps"} <= set(table.columns)
    analysis = worlds.analyse(result)
    fig = plots.plot_random_worlds(analysis.table, analysis.comparison, analysis.feature, analysis.reference)
    assert len(fig.axes) == 3
    plt.close(fig)
    text = "\n".join(worlds.summary_lines(analysis, TINY))
    assert "nan" not in text.lower() and "()" not in text


# ------------------------------------------------------------------------------------------------------------
# The analysis on hand-made tables


def _table(ratios: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {
            "world": f"w{i}",
            "method": method,
            "replicate": 0,
            "latency_ratio_to_oracle": r,
            "mean_latency_ms": r,
        }
        for method, values in ratios.items()
        for i, r in enumerate(values)
    ]
    return world_table(pd.DataFrame(rows))


def test_learner_comparison_takes_each_worlds_best_fixed_rule() -> None:
    table = _table(
        {
            "oracle": [1.0, 1.0],
            "greedy_profiles": [1.2, 1.5],
            "local_fastest": [1.4, 1.1],
            "q_learning": [1.3, 1.05],
            "hybrid": [1.1, 1.2],
        }
    )
    out = learner_comparison(table).set_index(["learner", "world"])
    assert out.loc[("q_learning", "w0"), "best_fixed_rule"] == "greedy_profiles"
    assert out.loc[("q_learning", "w1"), "best_fixed_rule"] == "local_fastest"
    assert out.loc[("q_learning", "w0"), "advantage_over_best_fixed"] == pytest.approx(1.2 / 1.3)
    assert not out.loc[("q_learning", "w0"), "beats_best_fixed"]
    assert out.loc[("q_learning", "w1"), "beats_best_fixed"] and out.loc[("hybrid", "w0"), "beats_best_fixed"]
    assert out.loc[("best learner", "w0"), "learner_ratio"] == pytest.approx(1.1)
    assert out.loc[("hybrid", "w1"), "advantage_over_greedy"] == pytest.approx(1.5 / 1.2)


def test_feature_effects_and_the_stump_find_a_feature_that_decides_the_outcome() -> None:
    generator = np.random.default_rng(0)
    n = 60
    worlds_frame = pd.DataFrame({"world": [f"w{i}" for i in range(n)]})
    for feature in FEATURES:
        worlds_frame[feature] = generator.uniform(0, 1, n)
    # the learner wins exactly where co-tenant load is above 0.5, by more the higher it is
    advantage = np.exp(worlds_frame["cotenant_busy_share"] - 0.5)
    comparison = pd.DataFrame(
        {
            "world": worlds_frame["world"],
            "learner": "hybrid",
            "advantage_over_best_fixed": advantage,
            "beats_best_fixed": advantage > 1,
        }
    )
    effects = feature_effects(comparison, worlds_frame)
    assert effects.iloc[0]["feature"] == "cotenant_busy_share"
    assert effects.iloc[0]["spearman_rho"] == pytest.approx(1.0)
    assert effects.iloc[0]["p_holm"] < 1e-6
    noise = effects[effects["feature"] != "cotenant_busy_share"]
    assert (noise["p_holm"] >= noise["p_value"]).all()
    stump = decision_stumps(comparison, worlds_frame).iloc[0]
    assert stump["feature"] == "cotenant_busy_share" and stump["wins_when"] == "above"
    assert stump["accuracy_in_sample"] == 1.0 and stump["accuracy_cv"] >= 0.9
    assert 0.4 < stump["threshold"] < 0.6


def test_holm_adjustment_matches_the_textbook_example() -> None:
    # Holm (1979) step-down: sorted p (0.01, 0.02, 0.03, 0.04) times (4, 3, 2, 1), made monotone
    adjusted = worlds._holm(np.array([0.03, 0.01, 0.04, 0.02]))
    np.testing.assert_allclose(adjusted, [0.06, 0.04, 0.06, 0.06])


# ------------------------------------------------------------------------------------------------------------
# The panel's callbacks


def test_panel_values_round_trip_to_the_study_and_bad_values_name_the_field() -> None:
    values = default_values(quick=True)
    assert study_from_values(values) == dataclasses.replace(worlds.QUICK_STUDY, seed=worlds.FULL_STUDY.seed)
    with pytest.raises(ValueError, match=r"WorldRanges\.rtt_ms"):
        study_from_values({**values, "rtt_ms": (50.0, 10.0)})
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['speed'\]"):
        study_from_values({**values, "speed": 3})


def test_panel_runs_when_asked_and_marks_a_changed_control_stale(tmp_path) -> None:
    values = {**default_values(quick=True), "n_worlds": 2, "n_replicates": 1, "n_requests": 100}
    panel = WorldsPanel(values, out_dir=tmp_path)
    assert panel.analysis is None and "press Run" in panel.status.value
    analysis = panel.run()
    assert analysis.table["world"].nunique() == 2 and panel.status.value.startswith("fresh")
    assert any("image/png" in o["data"] for o in panel.output.outputs)
    panel.controls["n_users"].value = (3, 6)
    assert panel.status.value.startswith("stale")


def test_reproduce_step_writes_the_figure_the_tables_and_the_summary_section(tiny_result, tmp_path) -> None:
    from orchlib.study.reproduce import random_worlds, summary_glitches

    _, runs_dir = tiny_result  # the runs are cached there, so this only reads and analyses them
    lines = random_worlds(TINY, runs_dir, tmp_path / "tables", tmp_path / "figures", n_jobs=1, progress=False)
    for name in ("worlds", "runs", "table", "comparison", "feature_effects", "stumps", "reference"):
        assert len(pd.read_csv(tmp_path / "tables" / f"fig11_{name}.csv")) >= 1
    assert (tmp_path / "figures" / "fig11_random_worlds.png").stat().st_size > 0
    assert lines[0].startswith("## Where learning pays") and f"{TINY.n_worlds} worlds" in lines[2]
    text = "\n".join(lines)
    assert "nan" not in text.lower() and summary_glitches(text) == [] and "In short:" in text
