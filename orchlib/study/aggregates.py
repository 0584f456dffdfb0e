"""Reporting over many runs the way the field does: normalised scores, IQM with stratified bootstrap intervals,
probability of improvement, performance profiles (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021), and the companion paper's learning acceleration.

Scores. A run's *score* on a task (a scenario) is ``mean oracle latency / mean latency`` over the requests
from ``from_request`` on: 1 is the clairvoyant optimum, higher is better, and scores of different scenarios
are on one scale, as the aggregates need.

Libraries. The IQM and the probability of improvement are ``rliable.metrics`` (the reference implementation).
rliable's bootstrap (``rliable.library``) cannot be imported next to pandas 3: it needs ``arch`` < 8, and
arch 7.2 fails at import with pandas 3 (``deprecate_kwarg()`` changed), while arch 8 refuses rliable's
``random_state`` argument (checked 2026-12-01 with rliable 1.2.0). The stratified bootstrap is therefore
``scipy.stats.bootstrap`` with one sample per task: scipy resamples each sample independently, which is
exactly rliable's stratified bootstrap (runs resampled with replacement within each task); percentile
intervals, as rliable's default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from rliable import metrics as rly
from scipy import stats

from orchlib.study.metrics import RUN_KEYS, _check_window, _require


def run_scores(requests: pd.DataFrame, from_request: int = 0) -> pd.DataFrame:
    """One score per run: mean oracle latency / mean latency over requests ``>= from_request``.

    Returns:
        Columns :data:`~orchlib.study.metrics.RUN_KEYS` and ``score``.

    Raises:
        ValueError: missing columns, or a run with no request from ``from_request`` on.
    """
    _require(requests, [*RUN_KEYS, "request", "latency_ms", "oracle_latency_ms"], "requests")
    part = requests[requests["request"] >= from_request]
    sums = part.groupby(list(RUN_KEYS), observed=True)[["latency_ms", "oracle_latency_ms"]].sum()
    all_runs = requests.groupby(list(RUN_KEYS), observed=True).size()
    if len(sums) != len(all_runs):
        raise ValueError(f"some runs have no request with index >= {from_request} (from_request too large)")
    out = (sums["oracle_latency_ms"] / sums["latency_ms"]).rename("score").reset_index()
    return out


def score_matrix(scores: pd.DataFrame, agent: str, tasks: Sequence[str]) -> np.ndarray:
    """Scores of ``agent`` as rliable's ``(n_runs, n_tasks)`` matrix (runs matched by replicate).

    Raises:
        ValueError: the agent lacks a task, or has different replicates on different tasks.
    """
    mine = scores[scores["agent"].astype(str) == agent]
    wide = mine.pivot(index="replicate", columns="scenario", values="score")
    missing = [t for t in tasks if t not in wide.columns]
    if missing or wide[list(tasks)].isna().any().any():
        raise ValueError(f"agent {agent!r} lacks scores on task(s) {missing or 'some replicates'}")
    return wide[list(tasks)].to_numpy(dtype=float)


def _tasks(scores: pd.DataFrame) -> list[str]:
    return sorted(scores["scenario"].astype(str).unique())


def iqm(
    scores: pd.DataFrame,
    agents: Sequence[str] | None = None,
    confidence_level: float = 0.95,
    n_resamples: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """Interquartile mean of every agent's scores over all runs and tasks, with a stratified bootstrap CI.

    Returns:
        One row per agent: ``agent``, ``n_runs``, ``n_tasks``, ``iqm``, ``iqm_low``, ``iqm_high``.
    """
    tasks = _tasks(scores)
    agents = list(agents) if agents is not None else sorted(scores["agent"].astype(str).unique())
    gen = np.random.default_rng(rng)
    rows = []
    for agent in agents:
        matrix = score_matrix(scores, agent, tasks)

        def statistic(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
            # rliable's IQM: the 25% trimmed mean of all runs x tasks scores (flattened)
            return stats.trim_mean(np.concatenate(columns, axis=axis), 0.25, axis=axis)

        if matrix.shape[0] < 2 or np.ptp(matrix) == 0:
            low = high = np.nan
        else:
            ci = stats.bootstrap(
                tuple(matrix.T),
                statistic,
                n_resamples=n_resamples,
                confidence_level=confidence_level,
                method="percentile",
                vectorized=True,
                random_state=gen,
            ).confidence_interval
            low, high = float(ci.low), float(ci.high)
        rows.append(
            {
                "agent": agent,
                "n_runs": matrix.shape[0],
                "n_tasks": matrix.shape[1],
                "iqm": float(rly.aggregate_iqm(matrix)),
                "iqm_low": low,
                "iqm_high": high,
            }
        )
    return pd.DataFrame(rows)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(X > Y)`` of each batch of runs, shapes (..., n_x) and (..., n_y): pairs where x wins, ties counting
    half, over ``n_x * n_y`` (rliable's per-task Mann-Whitney statistic, 0.5 for identical runs)."""
    x, y = x[..., :, None], y[..., None, :]
    wins = np.sum(x > y, axis=(-2, -1)) + 0.5 * np.sum(x == y, axis=(-2, -1))
    return wins / (x.shape[-2] * y.shape[-1])


def probability_of_improvement(
    scores: pd.DataFrame,
    x: str,
    y: str,
    confidence_level: float = 0.95,
    n_resamples: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float, float]:
    """``P(X > Y)``: the chance a run of ``x`` scores higher than a run of ``y`` on a task, averaged over tasks.

    Returns:
        ``(probability, low, high)``, the interval from a stratified bootstrap over both agents' runs.
    """
    tasks = _tasks(scores)
    mx, my = score_matrix(scores, x, tasks), score_matrix(scores, y, tasks)
    point = float(rly.probability_of_improvement(mx, my))
    n_tasks = len(tasks)

    def statistic(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        # rliable's statistic for a batch of resamples at once (columns: (..., runs)): per task the Mann-Whitney
        # U of x over y (pairs won, ties half) over n_x * n_y, averaged over tasks. U is a count, exact in
        # floating point, so this equals rliable's rank-sum value bit for bit (tested); one call instead of one
        # per resample (the bootstrap took 14 of the learning targets' 120 s).
        columns = tuple(np.moveaxis(column, axis, -1) for column in columns)
        per_task = [_improvement(x, y) for x, y in zip(columns[:n_tasks], columns[n_tasks:], strict=True)]
        return np.mean(np.stack(per_task, axis=-1), axis=-1)

    ci = stats.bootstrap(
        (*mx.T, *my.T),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence_level,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(rng),
    ).confidence_interval
    return point, float(ci.low), float(ci.high)


def performance_profile(
    scores: pd.DataFrame, taus: Sequence[float] | np.ndarray, agents: Sequence[str] | None = None
) -> pd.DataFrame:
    """Fraction of runs whose score exceeds ``tau``, averaged over tasks (rliable's run-score profile).

    Returns:
        Tidy: ``agent``, ``tau``, ``fraction_above``.
    """
    tasks = _tasks(scores)
    agents = list(agents) if agents is not None else sorted(scores["agent"].astype(str).unique())
    taus = np.asarray(taus, dtype=float)
    rows = []
    for agent in agents:
        matrix = score_matrix(scores, agent, tasks)
        # per task: share of runs above tau; then the mean over tasks
        above = (matrix[None, :, :] > taus[:, None, None]).mean(axis=1).mean(axis=1)
        rows += [
            {"agent": agent, "tau": float(t), "fraction_above": float(f)}
            for t, f in zip(taus, above, strict=True)
        ]
    return pd.DataFrame(rows)


def _window_matrix(requests: pd.DataFrame, window: int) -> np.ndarray:
    """Mean latency per run (rows, by replicate) and full window of ``window`` requests (columns), ms."""
    position = requests["request"].to_numpy() // window
    frame = requests.assign(window=position)
    sizes = frame.groupby(["replicate", "window"])["latency_ms"].transform("size")
    frame = frame[sizes.to_numpy() == window]
    return frame.pivot_table(
        index="replicate", columns="window", values="latency_ms", aggfunc="mean"
    ).to_numpy()


def _settled_window(curve: np.ndarray, limit: float) -> int | None:
    """First window index from which every entry of ``curve`` is ``<= limit`` (None if the last is above)."""
    above = np.flatnonzero(curve > limit)
    if above.size == 0:
        return 0
    return None if above[-1] == curve.size - 1 else int(above[-1]) + 1


def acceleration(
    requests: pd.DataFrame,
    agent: str,
    reference: str = "q_learning",
    tolerance: float = 0.05,
    window: int = 500,
    final_fraction: float = 0.2,
    n_resamples: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """Learning acceleration of ``agent`` over ``reference`` (the companion paper's measure), per scenario.

    Definitions. The *learning curve* of an agent is its mean latency per window of ``window`` requests,
    averaged over its runs (the mean over runs, not each run: a single run's windows move by several percent
    on their own, which would make "stays within 5%" a test of noise). The *target* is the reference's
    converged level: its mean latency over the last ``final_fraction`` of its requests. An agent's *count* is
    the first request from which its curve stays at or below ``(1 + tolerance) * target`` to the end of the
    run. ``acceleration = reference count / agent count``. Counts are resolved to one window: a curve within
    the target from its first window is counted as one window (``window`` requests), and the acceleration is
    then a lower bound (``lower_bound`` True). The 95% interval resamples each agent's runs with replacement
    (percentile bootstrap; resamples in which a curve never settles are dropped, and counted in
    ``settled_share``).

    Returns:
        One row per scenario: ``scenario``, ``target_latency_ms``, ``reference_requests``, ``agent_requests``,
        ``acceleration``, ``acceleration_low``, ``acceleration_high``, ``lower_bound``, ``reached``,
        ``settled_share``.

    Raises:
        ValueError: missing columns, a bad ``window``, or an agent without runs.
    """
    _check_window(window)
    _require(requests, [*RUN_KEYS, "request", "latency_ms"], "requests")
    labels = requests["agent"].astype(str)
    for name in (agent, reference):
        if not (labels == name).any():
            raise ValueError(f"requests have no runs of agent {name!r}; agents: {sorted(labels.unique())}")
    gen = np.random.default_rng(rng)
    rows = []
    for scenario, part in requests.groupby("scenario", observed=True):
        ref = _window_matrix(part[part["agent"].astype(str) == reference], window)
        mine = _window_matrix(part[part["agent"].astype(str) == agent], window)
        n_final = max(1, round(final_fraction * ref.shape[1]))

        def counts(
            ref_rows: np.ndarray, agent_rows: np.ndarray, n_final: int = n_final
        ) -> tuple[float, int | None, int | None]:
            target = float(ref_rows[:, -n_final:].mean())
            limit = (1 + tolerance) * target
            return (
                target,
                _settled_window(ref_rows.mean(axis=0), limit),
                _settled_window(agent_rows.mean(axis=0), limit),
            )

        target, k_ref, k_agent = counts(ref, mine)
        reached = k_ref is not None and k_agent is not None
        row = {
            "scenario": str(scenario),
            "target_latency_ms": target,
            "reference_requests": np.nan if k_ref is None else float(k_ref * window),
            "agent_requests": np.nan if k_agent is None else float(k_agent * window),
            "acceleration": np.nan,
            "acceleration_low": np.nan,
            "acceleration_high": np.nan,
            "lower_bound": bool(k_agent == 0),
            "reached": reached,
            "settled_share": np.nan,
        }
        if reached:
            row["acceleration"] = max(k_ref, 1) / max(k_agent, 1)
            ratios = []
            for _ in range(n_resamples):
                r_rows = ref[gen.integers(ref.shape[0], size=ref.shape[0])]
                a_rows = mine[gen.integers(mine.shape[0], size=mine.shape[0])]
                _, kr, ka = counts(r_rows, a_rows)
                if kr is not None and ka is not None:
                    ratios.append(max(kr, 1) / max(ka, 1))
            row["settled_share"] = len(ratios) / n_resamples
            if ratios:
                row["acceleration_low"], row["acceleration_high"] = (
                    float(q) for q in np.percentile(ratios, [2.5, 97.5])
                )
        rows.append(row)
    return pd.DataFrame(rows)
