"""Figure functions on small synthetic tables: what they draw depends on the data as documented."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from orchlib.study.plots import HEADLINE_LOG_RATIO, plot_headline


def _headline_inputs(slowest_ms: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    means = {
        "oracle": 10.0,
        "q_learning": 20.0,
        "sota_location_only": 40.0,
        "local_most_accurate": slowest_ms,
    }
    runs = pd.DataFrame(
        [
            {"agent": a, "replicate": r, "mean_latency_ms": m * (1 + 0.01 * r), "mean_accuracy_pct": 68.0 + r}
            for a, m in means.items()
            for r in range(3)
        ]
    )
    comparison = pd.DataFrame(
        [{"agent": a, "time_reduction": 1 - m / 40.0, "accuracy_loss_pp": 1.0} for a, m in means.items()]
    )
    return runs, comparison


@pytest.mark.parametrize(("slowest_ms", "scale"), [(80.0, "linear"), (10.0 * HEADLINE_LOG_RATIO * 2, "log")])
def test_headline_time_axis_turns_logarithmic_only_when_one_policy_dwarfs_the_rest(slowest_ms, scale) -> None:
    # a policy whose queue never drains made every other bar of figure 2 a sliver on a linear axis
    fig = plot_headline(*_headline_inputs(slowest_ms), baseline="sota_location_only")
    ax_time = fig.axes[0]
    assert ax_time.get_xscale() == scale
    assert ("log scale" in ax_time.get_xlabel()) == (scale == "log")
    if scale == "log":
        assert ax_time.get_xlim()[0] == pytest.approx(10.0 * 1.01 / 2, rel=0.02)  # half the fastest mean


def _operating(chosen: bool = True) -> pd.DataFrame:
    row = {
        "agent": "q_learning",
        "tolerance_pp": 0.9,
        "budget_pp": 0.9,
        "chosen": chosen,
        "accuracy_loss_pp": 0.7,
    }
    for name, value in (("time_reduction", 0.123), ("accuracy_loss_pp", 0.7)):
        row |= {name: value, f"{name}_low": value - 0.01, f"{name}_high": value + 0.01}
    return pd.DataFrame([row])


def test_headline_lower_panel_shows_the_paper_method_at_the_budget_and_unconstrained() -> None:
    runs, comparison = _headline_inputs(80.0)
    comparison = comparison.assign(time_reduction_low=comparison["time_reduction"] - 0.02)
    comparison = comparison.assign(time_reduction_high=comparison["time_reduction"] + 0.02)
    fig = plot_headline(runs, comparison, "sota_location_only", _operating())
    panel = fig.axes[2]
    labels = [t.get_text() for t in panel.get_yticklabels()]
    assert "tolerance 0.9 pp" in labels[0] and "unconstrained" in labels[1]
    texts = [t.get_text() for t in panel.texts]
    # q_learning's own numbers (50 % unconstrained here), not those of the agent drawn last in the upper panels
    assert any(t.startswith(" 12.3% [11.3, 13.3] faster") for t in texts)
    assert any(t.startswith(" 50.0% [48.0, 52.0] faster") for t in texts)
    fig = plot_headline(runs, comparison, "sota_location_only", _operating(chosen=False))
    assert any("no tolerance of figure 6's sweep" in t.get_text() for t in fig.axes[2].texts)


def _motivation_table(edge_ms: float) -> pd.DataFrame:
    rows = []
    for x, end_ms in (("wifi", 30.0), ("3g", 31.0)):
        for tier, option, ms in (
            ("end", "end", end_ms),
            ("edge", "edge small", edge_ms),
            ("cloud", "cloud", 60.0),
        ):
            rows.append(
                {"device": "d", "panel": "network", "x": x, "tier": tier, "option": option}
                | {"mean_latency_ms": ms, "overloaded": False}
            )
    return pd.DataFrame(rows)


def test_motivation_names_ties_and_says_when_the_edge_never_wins() -> None:
    from orchlib.study.experiments import fastest_steady_tier
    from orchlib.study.plots import plot_motivation

    tied = fastest_steady_tier(_motivation_table(edge_ms=30.9))  # within 5 % of the device's 30 ms
    assert tied["fastest"].tolist() == ["end≈edge", "end≈edge"]
    assert tied["fastest_option"].tolist() == ["end", "edge small"]  # 30.9 ms beats the 31 ms device on 3g
    slow_edge = _motivation_table(edge_ms=45.0)
    assert fastest_steady_tier(slow_edge)["fastest"].tolist() == ["end", "end"]
    title = plot_motivation(slow_edge)._suptitle.get_text()
    assert "the edge never" in title and "users never change it" in title
    assert "the edge never" not in plot_motivation(_motivation_table(edge_ms=30.9))._suptitle.get_text()
