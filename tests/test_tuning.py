"""The Optuna study of Q-learning: seeded, stored, resumed, and the same values when rerun with the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchlib.study.tuning import STATE_RESOLUTIONS, tune_q_learning
from orchlib.system.scenario import tiny


def small_study(path: Path, sampler_seed: int = 0):
    return tune_q_learning(
        path, n_trials=3, scenario=tiny().replace(n_requests=200), n_seeds=1, sampler_seed=sampler_seed
    )


def test_study_reruns_to_the_same_values_with_the_same_seed(tmp_path: Path) -> None:
    first = small_study(tmp_path / "a.journal")
    second = small_study(tmp_path / "b.journal")
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]
    assert first.best_params == second.best_params
    assert set(first.best_params) == {"gamma", "alpha_exponent", "explore_per_action", "state_resolution"}
    assert first.best_params["state_resolution"] in STATE_RESOLUTIONS
    other = small_study(tmp_path / "c.journal", sampler_seed=1)
    assert [t.params for t in other.trials] != [t.params for t in first.trials]


def test_study_is_resumed_from_its_file_not_redone(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    first = small_study(path)
    again = small_study(path)  # already 3 finished trials: nothing runs
    assert len(again.trials) == 3
    assert [t.datetime_start for t in again.trials] == [t.datetime_start for t in first.trials]


def test_bad_counts_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_trials"):
        tune_q_learning(tmp_path / "x.journal", n_trials=0)


def test_sensitivity_sweep_and_figure_at_a_tiny_size(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from orchlib.study.plots import plot_q_sensitivity
    from orchlib.study.tuning import q_learning_sensitivity

    values = {
        "gamma": (0.0, 0.9),
        "step_size": ("1/n",),
        "exploration": ("textbook",),
        "state_resolution": ("2_levels",),
    }
    table = q_learning_sensitivity(
        tmp_path, n_requests=200, n_replicates=2, values=values, progress=False, scenario=tiny()
    )
    assert len(table) == 5 * 2
    assert (table["ratio_to_oracle"] >= 1.0 - 1e-9).all()
    fig = plot_q_sensitivity(table)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    with pytest.raises(ValueError, match="unknown sensitivity parameter"):
        q_learning_sensitivity(
            tmp_path, n_requests=200, n_replicates=1, values={"nope": (1,)}, progress=False
        )
