"""Hyperparameter search for tabular Q-learning with Optuna, on a named tuning scenario and tuning seeds only.

The split (written down here and in ``docs/assumptions.md``): the study tunes on :data:`TUNING_SCENARIO`
(``ideal`` at :data:`TUNING_REQUESTS` requests: the committed study ran when that world was the ``paper``
preset, before the grounded world took the name) with the sweep seed :data:`TUNING_SEED` (replicates
``0 .. n_seeds - 1``); every reported number uses other seeds (the headline's 2022 and up) or other scenarios.
The study is stored in an Optuna journal file (``JournalStorage``) and is resumed, not redone, when it is
asked for again: trials already in the file are reused, and only missing ones run. The sampler is Optuna's
``TPESampler`` with a fixed seed, and every objective evaluation is a seeded, deterministic simulation, so the
same call gives the same trials and the same best values.

Search space (:func:`suggest`): ``gamma`` in [0, 0.9]; the step-size schedule's exponent ``alpha_exponent``
in [0.5, 1] (with ``alpha = 1``: ``1 / n ** omega``); the exploration scale ``explore_per_action`` in
[0.001, 1] (log scale); the state resolution, the access-bandwidth level edges of the discrete state (one of
:data:`STATE_RESOLUTIONS`). The objective is the mean response time over the second half of each tuning run
(lower is better), averaged over the tuning seeds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from orchlib.agents.base import check_int
from orchlib.agents.catalogue import DERIVED_DEFAULTS
from orchlib.study.runner import RunSpec, run_one
from orchlib.system.scenario import Scenario, preset

#: the named tuning scenario: the world the committed study (``docs/tuning/q_learning_study.journal``) ran on,
#: called ``paper`` then and ``ideal`` since the grounded world took the name (issue 12).
TUNING_SCENARIO = "ideal"
#: requests per tuning run (second half scored).
TUNING_REQUESTS = 20_000
#: sweep seed of the tuning runs; reported results use other seeds.
TUNING_SEED = 7
#: access-bandwidth level edges (Mbit/s) the study chooses among, by name: coarser and finer than the default.
STATE_RESOLUTIONS: dict[str, tuple[float, ...]] = {
    "2_levels": (10.0,),
    "3_levels": (5.0, 15.0),
    "5_levels": (2.5, 5.0, 15.0, 30.0),
    "8_levels": (2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0),
}


#: the catalogue's defaults as a trial of the search space (enqueued first in a new study).
CATALOGUE_TRIAL: dict[str, Any] = {
    **{key: DERIVED_DEFAULTS[key] for key in ("gamma", "alpha_exponent", "explore_per_action")},
    # the state resolution before the study (the environment's default then: 3 levels, edges 5 and 15 Mbit/s)
    "state_resolution": "3_levels",
}


def suggest(trial: optuna.Trial) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(agent_kwargs, env_kwargs)`` of one trial (the search space in the module docstring)."""
    agent_kwargs = {
        "alpha": 1.0,
        "gamma": trial.suggest_float("gamma", 0.0, 0.9),
        "alpha_exponent": trial.suggest_float("alpha_exponent", 0.5, 1.0),
        "explore_per_action": trial.suggest_float("explore_per_action", 1e-3, 1.0, log=True),
    }
    resolution = trial.suggest_categorical("state_resolution", list(STATE_RESOLUTIONS))
    return agent_kwargs, {"bandwidth_edges_mbps": STATE_RESOLUTIONS[resolution], "oracle": False}


def objective_ms(
    scenario: Scenario, agent_kwargs: dict[str, Any], env_kwargs: dict[str, Any], seed: int, n_seeds: int
) -> float:
    """Mean response time over the second half of ``n_seeds`` Q-learning runs, ms (the study minimises it)."""
    values = []
    for replicate in range(n_seeds):
        spec = RunSpec(
            scenario=scenario,
            agent="q_learning",
            agent_kwargs=agent_kwargs,
            env_kwargs=env_kwargs,
            seed=seed,
            replicate=replicate,
        )
        frame, _ = run_one(spec)
        values.append(float(frame.loc[frame["request"] >= scenario.n_requests // 2, "latency_ms"].mean()))
    return float(np.mean(values))


def tune_q_learning(
    storage_path: str | Path,
    n_trials: int = 80,
    scenario: Scenario | None = None,
    n_seeds: int = 4,
    seed: int = TUNING_SEED,
    sampler_seed: int = 0,
    study_name: str = "q_learning",
) -> optuna.Study:
    """Run (or resume) the Q-learning study stored in ``storage_path`` until it holds ``n_trials`` finished trials.

    Args:
        storage_path: the journal file (created with its folder if needed).
        n_trials: finished trials wanted in the study, >= 1.
        scenario: the tuning scenario (default :data:`TUNING_SCENARIO` at :data:`TUNING_REQUESTS` requests).
        n_seeds: tuning runs per trial (replicates of ``seed``), >= 1.
        seed: the tuning runs' sweep seed.
        sampler_seed: the ``TPESampler`` seed.
        study_name: the study's name inside the file.

    Returns:
        The study (``study.best_params``, ``study.trials_dataframe()``).

    Raises:
        ValueError: a count out of range (named).
    """
    check_int("n_trials", n_trials, 1)
    check_int("n_seeds", n_seeds, 1)
    scenario = scenario or preset(TUNING_SCENARIO).replace(n_requests=TUNING_REQUESTS)
    path = Path(storage_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        load_if_exists=True,
    )
    if not study.trials:
        # The first trial is the catalogue's problem-derived setting, so the study reports how far tuning moved it.
        study.enqueue_trial(CATALOGUE_TRIAL)
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if done < n_trials:
        # A resumed TPE sampler sees the stored trials, so the continuation is the same as an uninterrupted run
        # only up to the sampler's own random state; the trials already stored are never recomputed.
        study.optimize(
            lambda trial: objective_ms(scenario, *suggest(trial), seed=seed, n_seeds=n_seeds),
            n_trials=n_trials - done,
        )
    return study


#: one-at-a-time values around the catalogue defaults (figure: Q-learning's sensitivity). The state
#: resolution names a key of :data:`STATE_RESOLUTIONS`; the step-size schedule is ``1 / n ** omega``, and
#: "constant 0.1" is the textbook constant rate.
SENSITIVITY_VALUES: dict[str, tuple[Any, ...]] = {
    "gamma": (0.0, 0.01, 0.3, 0.9),
    "step_size": ("1/n", "1/n^0.75", "1/n^0.5", "constant 0.1"),
    "exploration": (0.003, 0.03, 0.3, "textbook"),
    "state_resolution": tuple(STATE_RESOLUTIONS),
}


def _sensitivity_setting(parameter: str, value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(agent overrides, env options) of one point of the one-at-a-time sweep."""
    if parameter == "gamma":
        return {"gamma": value}, {}
    if parameter == "step_size":
        if value == "constant 0.1":
            return {"alpha": 0.1, "alpha_exponent": 0.0}, {}
        omega = 1.0 if value == "1/n" else float(value.split("^")[1])
        return {"alpha": 1.0, "alpha_exponent": omega}, {}
    if parameter == "exploration":
        if value == "textbook":  # the earlier global schedule: 1 x 0.999 per request, floor 0.01
            return {"explore_per_action": None, "epsilon_decay": 0.999, "epsilon_min": 0.01}, {}
        return {"explore_per_action": value}, {}
    if parameter == "state_resolution":
        return {}, {"bandwidth_edges_mbps": STATE_RESOLUTIONS[value]}
    raise ValueError(f"unknown sensitivity parameter {parameter!r}; valid: {sorted(SENSITIVITY_VALUES)}")


def q_learning_sensitivity(
    out_dir: str | Path,
    n_requests: int = 20_000,
    n_replicates: int = 3,
    seed: int = 2022,
    values: dict[str, tuple[Any, ...]] | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    scenario: Scenario | None = None,
):
    """Q-learning's ratio to the oracle (second half of each run) as each hyperparameter varies alone.

    Runs on ``scenario`` (default the tuning scenario, :data:`TUNING_SCENARIO`) at ``n_requests`` requests with an evaluation seed (not the tuning
    seed); every other hyperparameter keeps its catalogue default.

    Returns:
        Tidy table: ``parameter``, ``value`` (as text), ``replicate``, ``ratio_to_oracle``.
    """
    from orchlib.study.aggregates import run_scores
    from orchlib.study.runner import grid, run_sweep

    values = values or SENSITIVITY_VALUES
    scenario = (scenario or preset(TUNING_SCENARIO)).replace(n_requests=n_requests)
    choices, lookup = [], {}
    for parameter, options in values.items():
        for value in options:
            agent_kwargs, env_kwargs = _sensitivity_setting(parameter, value)
            label = f"{parameter}={value}"
            lookup[label] = (parameter, str(value))
            choices.append(
                {
                    "agent": "q_learning",
                    "label": label,
                    "agent_kwargs": agent_kwargs,
                    "env_kwargs": env_kwargs,
                }
            )
    result = run_sweep(
        grid([scenario], choices, n_replicates=n_replicates, seed=seed),
        out_dir,
        n_jobs=n_jobs,
        progress=progress,
    )
    scores = run_scores(result.requests, from_request=n_requests // 2)
    return scores.assign(
        parameter=scores["agent"].astype(str).map(lambda s: lookup[s][0]),
        value=scores["agent"].astype(str).map(lambda s: lookup[s][1]),
        ratio_to_oracle=1.0 / scores["score"],
    )[["parameter", "value", "replicate", "ratio_to_oracle"]]
