"""The sensitivity widget: settings, their mapping onto the scenario, the simulation, the figure and the panel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from orchlib.envs.orchestration import DEFAULT_BANDWIDTH_EDGES_MBPS
from orchlib.study.experiments import SOTA
from orchlib.study.plots import RECONSTRUCTION_NOTE
from orchlib.study.runner import system_for
from orchlib.system.profiles import load_network_levels, load_variants
from orchlib.system.scenario import paper
from orchlib.ui import widgets
from orchlib.ui.widgets import (
    PAPER_NETWORK,
    SensitivityPanel,
    SensitivitySettings,
    decision_map_table,
    default_rtt_ms,
    scenario_from_settings,
    simulate,
    summary_figure,
)

#: small runs: every test simulates three agents in well under a second.
SMALL = SensitivitySettings(n_requests=600, seed=3)
A_TRACE = widgets.trace_names()[0]


@pytest.fixture(scope="module")
def small_requests() -> pd.DataFrame:
    return simulate(SMALL)


# -- settings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("network", "5g_dreams"),
        ("network", 3),
        ("rtt_ms", -1.0),
        ("rtt_ms", float("nan")),
        ("rtt_ms", "20"),
        ("n_users", 0),
        ("n_users", 2.5),
        ("n_users", True),
        ("tolerance_pp", -0.5),
        ("tolerance_pp", 101.0),
        ("edge_workers", 0),
        ("cloud_workers", -3),
        ("agent", "gpt"),
        ("n_requests", 0),
        ("seed", -1),
    ],
)
def test_invalid_setting_is_refused_naming_its_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"SensitivitySettings\.{field} must be"):
        SensitivitySettings(**{field: value})


def test_wan_level_is_not_offered_as_access_network() -> None:
    assert paper().wan.level not in widgets.network_names()
    with pytest.raises(ValueError, match=r"SensitivitySettings\.network"):
        SensitivitySettings(network=paper().wan.level)


def test_defaults_come_from_the_paper_preset() -> None:
    preset = paper()
    settings = SensitivitySettings()
    best = float(load_variants().column("top1_pct").max())
    assert settings.network == PAPER_NETWORK
    assert settings.rtt_ms == preset.access.rtt_ms
    assert settings.n_users == preset.n_users
    assert (settings.edge_workers, settings.cloud_workers) == (preset.edge.n_workers, preset.cloud.n_workers)
    assert settings.tolerance_pp == pytest.approx(best - np.mean(preset.accuracy.levels_pct))


def test_rtt_defaults_to_the_chosen_networks_rtt() -> None:
    levels = load_network_levels()
    assert SensitivitySettings(network="3g").rtt_ms == levels["3g"].rtt_ms
    assert SensitivitySettings(network=A_TRACE).rtt_ms == levels[widgets.trace_level(A_TRACE)].rtt_ms
    assert SensitivitySettings(network="3g", rtt_ms=5.0).rtt_ms == 5.0


# -- settings -> scenario -------------------------------------------------------------------------------------


def test_each_control_maps_onto_the_scenario() -> None:
    settings = SensitivitySettings(
        network="4g_weak", rtt_ms=33.0, n_users=5, tolerance_pp=2.5, edge_workers=3, cloud_workers=2
    )
    scenario = scenario_from_settings(settings)
    level = load_network_levels()["4g_weak"]
    best = float(load_variants().column("top1_pct").max())
    assert scenario.n_users == 5
    assert scenario.access.rtt_ms == 33.0
    assert (scenario.access.uplink_mbps, scenario.access.downlink_mbps) == (
        level.uplink_mbps,
        level.downlink_mbps,
    )
    assert scenario.access.trace is None
    assert (scenario.edge.n_workers, scenario.cloud.n_workers) == (3, 2)
    assert scenario.accuracy.levels_pct == pytest.approx((best - 2.5,))
    assert scenario.n_requests == settings.n_requests
    # everything the panel does not control stays the preset's
    preset = paper()
    for name in ("end", "wan", "arrivals", "variants", "compute_jitter"):
        assert getattr(scenario, name) == getattr(preset, name), name
    assert scenario.edge.profile == preset.edge.profile and scenario.cloud.profile == preset.cloud.profile


def test_trace_is_replayed_as_measured_and_paper_network_keeps_the_preset_link() -> None:
    traced = scenario_from_settings(SensitivitySettings(network=A_TRACE, rtt_ms=12.0)).access
    assert (traced.trace, traced.trace_rescale, traced.rtt_ms) == (A_TRACE, False, 12.0)
    system_for(scenario_from_settings(SensitivitySettings(network=A_TRACE, n_requests=10)))  # the file loads
    own = scenario_from_settings(SensitivitySettings(network=PAPER_NETWORK, rtt_ms=7.0)).access
    assert own == dataclasses.replace(paper().access, rtt_ms=7.0)


def test_scenario_from_settings_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="SensitivitySettings"):
        scenario_from_settings(paper())  # type: ignore[arg-type]


# -- simulation -----------------------------------------------------------------------------------------------


def test_simulate_runs_the_chosen_agent_the_stand_in_and_the_oracle_on_the_same_requests(
    small_requests: pd.DataFrame,
) -> None:
    agents = list(small_requests["agent"].cat.categories)
    assert agents == [SMALL.agent, SOTA, "oracle"]
    users = [part["user"].to_numpy() for _, part in small_requests.groupby("agent", observed=True)]
    assert all(len(u) == SMALL.n_requests for u in users)
    # common random numbers: every agent serves the same users in the same order
    assert all(np.array_equal(users[0], u) for u in users[1:])
    assert small_requests["user"].nunique() == SMALL.n_users
    assert set(small_requests["bandwidth_level"]) <= set(range(len(DEFAULT_BANDWIDTH_EDGES_MBPS) + 1))


def test_simulate_caches_in_out_dir_and_repeats_exactly(tmp_path, small_requests: pd.DataFrame) -> None:
    first = simulate(SMALL, out_dir=tmp_path)
    assert len(list(tmp_path.glob("*.parquet"))) == 3
    pd.testing.assert_frame_equal(first, small_requests)
    pd.testing.assert_frame_equal(simulate(SMALL, out_dir=tmp_path), first)


def test_more_users_raise_the_edge_latency_on_a_steady_link() -> None:
    # Steady link: the requests of every run cover the same conditions, so only the load differs. (With a
    # trace, fewer users stretch the same number of requests over a longer, different stretch of the trace.)
    base = SMALL.replace(network="wifi", agent="edge_most_accurate")
    means = [
        simulate(base.replace(n_users=n)).query("agent == 'edge_most_accurate'")["latency_ms"].mean()
        for n in (1, 4, 16)
    ]
    assert means[0] < means[1] < means[2], means


def test_rtt_adds_exactly_its_change_to_every_edge_request() -> None:
    base = SMALL.replace(network="wifi", agent="edge_most_accurate")
    near, far = (
        simulate(base.replace(rtt_ms=rtt)).query("agent == 'edge_most_accurate'")["latency_ms"].to_numpy()
        for rtt in (10.0, 60.0)
    )
    np.testing.assert_allclose(far - near, 50.0, atol=1e-9)


def test_decision_map_counts_every_late_request_once(small_requests: pd.DataFrame) -> None:
    table = decision_map_table(small_requests, from_fraction=0.5)
    late = small_requests[small_requests["request"] >= 0.5 * (SMALL.n_requests - 1)]
    assert set(table["agent"]) == {SMALL.agent, SOTA, "oracle"}
    assert (table["n"] <= table["n_cell"]).all() and table["share"].between(0, 1, inclusive="right").all()
    for agent, part in table.groupby("agent", observed=True):
        assert part["n_cell"].sum() == (late["agent"] == agent).sum()
        assert part["bandwidth_level"].is_unique


def test_decision_map_leaves_out_agents_without_discrete_state() -> None:
    requests = simulate(SMALL.replace(agent="linucb", n_requests=300))
    assert (requests.loc[requests["agent"] == "linucb", "bandwidth_level"] == -1).all()
    assert "linucb" not in set(decision_map_table(requests)["agent"])
    fig = summary_figure(requests)
    assert any("no discrete state: linucb" in ax.get_title() for ax in fig.axes)


def test_summary_figure_shows_four_panels_and_says_it_is_a_reconstruction(
    small_requests: pd.DataFrame,
) -> None:
    fig = summary_figure(small_requests, SMALL)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith(("(a)", "(b)", "(c)", "(d)")) for t in titles) == 4
    assert any(SMALL.agent in t for t in titles if t.startswith("(c)"))
    assert RECONSTRUCTION_NOTE in [t.get_text() for t in fig.texts]
    assert SMALL.describe() in fig.get_suptitle()


def test_summary_figure_refuses_an_empty_table(small_requests: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="empty"):
        summary_figure(small_requests.iloc[:0])


# -- the panel ------------------------------------------------------------------------------------------------


def test_panel_sliders_update_only_on_release_and_output_has_fixed_height() -> None:
    panel = SensitivityPanel(SMALL)
    sliders = [c for c in panel.controls if hasattr(c, "continuous_update")]
    assert len(sliders) == 5
    assert all(s.continuous_update is False for s in sliders)
    assert panel.output.layout.height == "620px"
    assert panel.settings() == SMALL


def test_setting_a_control_marks_stale_without_running_and_run_redraws(monkeypatch) -> None:
    panel = SensitivityPanel(SMALL)
    requests = panel.run()
    first_png = panel.output_png()
    assert first_png is not None and panel.status.value.startswith("fresh")
    # the status line says how far the studied agent is from the oracle, computed from the run shown
    ratio = widgets.distance_from_oracle(requests, SMALL.agent)
    assert ratio >= 1.0 - 1e-9
    assert panel.status.value.endswith(f"{SMALL.agent} at {ratio:.2f}x the oracle's mean response time")

    calls = []
    real_simulate = widgets.simulate
    monkeypatch.setattr(widgets, "simulate", lambda *a, **k: calls.append(a) or real_simulate(*a, **k))
    panel.n_users.value = SMALL.n_users + 3
    assert calls == [] and panel.n_runs == 1
    assert panel.status.value.startswith("stale") and panel.is_stale

    requests = panel.run()
    assert len(calls) == 1
    assert requests is panel.results
    assert panel.results["user"].nunique() == SMALL.n_users + 3
    assert panel.shown_settings.n_users == SMALL.n_users + 3
    assert panel.status.value.startswith("fresh") and not panel.is_stale
    assert panel.output_png() is not None and panel.output_png() != first_png
    assert len(panel.output.outputs) == 1  # replaced, not appended


def test_moving_a_control_back_makes_the_result_fresh_again() -> None:
    panel = SensitivityPanel(SMALL)
    panel.run()
    panel.tolerance_pp.value = SMALL.tolerance_pp + 1.0
    assert panel.status.value.startswith("stale")
    panel.tolerance_pp.value = SMALL.tolerance_pp
    assert panel.status.value.startswith("fresh")


def test_choosing_a_network_moves_the_rtt_slider_to_its_rtt() -> None:
    panel = SensitivityPanel(SMALL)
    panel.network.value = "3g"
    assert panel.rtt_ms.value == default_rtt_ms("3g") == load_network_levels()["3g"].rtt_ms
    assert panel.settings().network == "3g"


def test_run_button_reports_errors_in_the_status_line(monkeypatch) -> None:
    panel = SensitivityPanel(SMALL)

    def broken(*args, **kwargs):
        raise ValueError("no such profile")

    monkeypatch.setattr(widgets, "simulate", broken)
    panel.run_button.click()
    assert panel.status.value == "error: no such profile"
    assert panel.results is None and panel.output_png() is None


def test_panel_default_agent_is_the_hybrid_and_distance_needs_oracle_latencies() -> None:
    assert widgets.SensitivitySettings().agent == "hybrid"
    with pytest.raises(ValueError, match="no requests of agent"):
        widgets.distance_from_oracle(
            pd.DataFrame({"agent": ["x"], "latency_ms": [1.0], "oracle_latency_ms": [0.0]}), "x"
        )
