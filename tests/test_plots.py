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
