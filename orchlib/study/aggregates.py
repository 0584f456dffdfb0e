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


def run_matrices(requests: pd.DataFrame, agent: str) -> tuple[np.ndarray, np.ndarray]:
    """Latency and oracle latency of ``agent``'s runs as ``(n_runs, n_requests)`` matrices (runs by replicate,
    columns by request index), ms.

    Raises:
        ValueError: no runs of ``agent``, or runs of different lengths (a matrix needs one length).
    """
    part = requests[requests["agent"].astype(str) == agent]
    if part.empty:
        raise ValueError(
            f"requests have no runs of agent {agent!r}; agents: {sorted(requests['agent'].astype(str).unique())}"
        )
    part = part.sort_values(["replicate", "request"])
    sizes = part.groupby("replicate", observed=True).size()
    if sizes.nunique() != 1:
        raise ValueError(f"runs of agent {agent!r} have different lengths {sorted(set(sizes))}; expected one")
    shape = (len(sizes), int(sizes.iloc[0]))
    return (
        part["latency_ms"].to_numpy(float).reshape(shape),
        part["oracle_latency_ms"].to_numpy(float).reshape(shape),
    )


def window_lengths(n: int, window: int, growth: float) -> np.ndarray:
    """Length of the window that starts at each 0-based request ``t`` of a run of ``n``: ``max(window,
    ceil(growth * (t + 1)))``, for every ``t`` whose window ends within the run (the curve's length)."""
    starts = np.arange(n)
    lengths = np.maximum(window, np.ceil(growth * (starts + 1)).astype(np.int64))
    return lengths[starts + lengths <= n]


def _settle_requests(
    latency: np.ndarray,
    oracle: np.ndarray,
    window: int,
    growth: float,
    tolerance: float,
    final_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The settling count of each row of pooled per-request sums (``latency``, ``oracle``: (B, n) sums over
    the runs of each resample).

    Returns ``(settle_request, final_ratio, ratio)``: the 1-based request from which every window (starting
    at each request, of :func:`window_lengths`) has a pooled ratio (latency / oracle latency) at or below
    ``(1 + tolerance) *`` the final ratio (NaN when the last window is above it), the final ratio (pooled over
    the last ``final_fraction`` of requests), and the window ratio curve (B, number of windows).
    """
    n = latency.shape[1]
    n_final = max(window, round(final_fraction * n))
    final = latency[:, -n_final:].sum(axis=1) / oracle[:, -n_final:].sum(axis=1)
    zeros = np.zeros((latency.shape[0], 1))
    cum_l = np.concatenate([zeros, np.cumsum(latency, axis=1)], axis=1)
    cum_o = np.concatenate([zeros, np.cumsum(oracle, axis=1)], axis=1)
    lengths = window_lengths(n, window, growth)
    starts = np.arange(lengths.size)
    ratio = (cum_l[:, starts + lengths] - cum_l[:, starts]) / (cum_o[:, starts + lengths] - cum_o[:, starts])
    above = ratio > (1 + tolerance) * final[:, None]
    last_above = np.where(above.any(axis=1), ratio.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1), -1)
    settle = np.where(last_above == ratio.shape[1] - 1, np.nan, last_above + 2.0)
    return settle, final, ratio


def _bootstrap_settle(
    latency: np.ndarray,
    oracle: np.ndarray,
    n_resamples: int,
    gen: np.random.Generator,
    points: np.ndarray | None = None,
    **rule,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Settling requests of ``n_resamples`` bootstrap resamples of the runs (rows of ``latency``, ``oracle``),
    and the resampled curves at ``points`` (column indices) when given. Resamples are evaluated 100 at a
    time (each is a weighted sum of the runs: the count of each run in the resample)."""
    n_runs = latency.shape[0]
    settles, curves = [], []
    for size in np.diff(np.linspace(0, n_resamples, max(2, n_resamples // 100 + 1)).astype(int)):
        weights = gen.multinomial(n_runs, np.full(n_runs, 1 / n_runs), size=size).astype(float)
        settle, _, ratio = _settle_requests(weights @ latency, weights @ oracle, **rule)
        settles.append(settle)
        if points is not None:
            curves.append(ratio[:, points])
    return np.concatenate(settles), (np.concatenate(curves) if points is not None else None)


def _check_settling(requests: pd.DataFrame, window: int, growth: float, tolerance: float) -> None:
    _check_window(window)
    if not (isinstance(growth, int | float) and np.isfinite(growth) and 0 <= growth < 1):
        raise ValueError(
            f"growth must be a number in [0, 1) (a window's length per request index), got {growth!r}"
        )
    _require(requests, [*RUN_KEYS, "request", "latency_ms", "oracle_latency_ms"], "requests")
    if not (isinstance(tolerance, int | float) and np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(
            f"tolerance must be a finite number >= 0 (a fraction, 0.05 = 5 %), got {tolerance!r}"
        )


def _settle_agent(
    requests: pd.DataFrame,
    agent: str,
    n_resamples: int,
    gen: np.random.Generator,
    curve_points: int | None = None,
    **rule,
) -> dict:
    """:func:`_settle_requests` of ``agent``'s pooled runs and of ``n_resamples`` bootstrap resamples of them."""
    latency, oracle = run_matrices(requests, agent)
    n_runs, n = latency.shape
    if window_lengths(n, rule["window"], rule["growth"]).size < 2:
        raise ValueError(
            f"runs of {agent!r} have {n} requests; settling needs at least 2 windows of {rule['window']}"
        )
    settle, final, ratio = _settle_requests(
        latency.sum(axis=0, keepdims=True), oracle.sum(axis=0, keepdims=True), **rule
    )
    points = (
        None
        if curve_points is None
        else np.unique(np.geomspace(1, ratio.shape[1], curve_points).astype(int)) - 1
    )
    boot, boot_ratio = _bootstrap_settle(latency, oracle, n_resamples, gen, points, **rule)
    return {
        "settle": float(settle[0]),
        "final": float(final[0]),
        "ratio": ratio[0],
        "points": points,
        "boot": boot,
        "boot_ratio": boot_ratio,
        "n_runs": n_runs,
        "n_requests": n,
    }


def settling(
    requests: pd.DataFrame,
    agents: Sequence[str] | None = None,
    window: int = 20,
    growth: float = 0.1,
    tolerance: float = 0.05,
    final_fraction: float = 0.2,
    n_resamples: int = 1000,
    curve_points: int = 200,
    rng: np.random.Generator | int | None = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How many real requests each agent needs to reach its own final level and stay there (per scenario).

    Definitions. An agent's *curve* is its response time relative to the per-request oracle's, pooled over its
    runs: at request ``t`` (1-based), the sum of its latencies over a window of requests from ``t`` on, in all
    runs, over the oracle's sum on the same requests. The ratio to the oracle on the same requests cancels
    what the network, the arrivals and the hidden conditions do to both (common random numbers). Windows start
    at every request and grow with it: ``max(window, growth * t)`` requests (:func:`window_lengths`), so the
    first requests are resolved one by one while late windows, where a curve moves slowly, pool enough
    requests that their noise stays well inside the band (fixed windows of 100 on the grounded world moved by
    more than 5 % at random to the end of the run). Its *final level* is the pooled ratio over its last
    ``final_fraction`` of requests. Its *settling request* is the first request ``t`` from which the curve is
    at or below ``(1 + tolerance) * final level`` for every later ``t``. An agent at its level from its first
    request settles at request 1. The 95% interval is a percentile bootstrap over the agent's runs (runs
    resampled with replacement and the curve, the level and the count recomputed); resamples whose last window
    is above the band are dropped and counted in ``settled_share``.

    Returns:
        ``(table, curves)``: ``table`` one row per (scenario, agent): ``final_ratio``, ``settle_request``,
        ``settle_request_low``, ``settle_request_high``, ``settled_share``, ``n_runs``, ``n_requests``,
        ``window``, ``growth``, ``tolerance``; ``curves`` the pooled curve at about ``curve_points`` log-spaced requests
        with a 95% band: ``scenario``, ``agent``, ``request``, ``ratio_to_oracle``, ``ratio_low``,
        ``ratio_high``.

    Raises:
        ValueError: missing columns, a bad ``window`` or ``tolerance``, runs of different lengths, or runs
            shorter than two windows.
    """
    _check_settling(requests, window, growth, tolerance)
    gen = np.random.default_rng(rng)
    rule = {"window": window, "growth": growth, "tolerance": tolerance, "final_fraction": final_fraction}
    rows, curve_rows = [], []
    for scenario, part in requests.groupby("scenario", observed=True):
        names = agents if agents is not None else sorted(part["agent"].astype(str).unique())
        for agent in names:
            got = _settle_agent(part, agent, n_resamples, gen, curve_points, **rule)
            settled = got["boot"][np.isfinite(got["boot"])]
            low, high = np.percentile(settled, [2.5, 97.5]) if settled.size else (np.nan, np.nan)
            rows.append(
                {
                    "scenario": str(scenario),
                    "agent": agent,
                    "final_ratio": got["final"],
                    "settle_request": got["settle"],
                    "settle_request_low": float(low),
                    "settle_request_high": float(high),
                    "settled_share": settled.size / n_resamples,
                    "n_runs": got["n_runs"],
                    "n_requests": got["n_requests"],
                    "window": window,
                    "growth": float(growth),
                    "tolerance": float(tolerance),
                }
            )
            band = np.percentile(got["boot_ratio"], [2.5, 97.5], axis=0)
            curve_rows.append(
                pd.DataFrame(
                    {
                        "scenario": str(scenario),
                        "agent": agent,
                        "request": got["points"] + 1,
                        "ratio_to_oracle": got["ratio"][got["points"]],
                        "ratio_low": band[0],
                        "ratio_high": band[1],
                    }
                )
            )
    return pd.DataFrame(rows), pd.concat(curve_rows, ignore_index=True)


def acceleration(
    requests: pd.DataFrame,
    agent: str,
    reference: str = "q_learning",
    window: int = 20,
    growth: float = 0.1,
    tolerance: float = 0.05,
    final_fraction: float = 0.2,
    n_resamples: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """Learning acceleration of ``agent`` over ``reference`` (the companion paper's measure), per scenario:
    the ratio of the real requests each needs to reach its own final level and stay there (the settling
    requests of :func:`settling`, one-request resolution), ``reference / agent``.

    The 95% interval is a percentile bootstrap: each resample draws both agents' runs with replacement,
    independently, and recomputes both counts; resamples in which either curve never settles are dropped and
    counted in ``settled_share``. An agent that settles at request 1 (at its level from the first request) is
    resolved to one request, the finest any count of requests has.

    Returns:
        One row per scenario: ``scenario``, ``reference_requests``, ``agent_requests``, ``acceleration``,
        ``acceleration_low``, ``acceleration_high``, ``reached`` (both settled), ``settled_share``,
        ``reference_final_ratio``, ``agent_final_ratio``.

    Raises:
        ValueError: as :func:`settling`.
    """
    _check_settling(requests, window, growth, tolerance)
    gen = np.random.default_rng(rng)
    rule = {"window": window, "growth": growth, "tolerance": tolerance, "final_fraction": final_fraction}
    rows = []
    for scenario, part in requests.groupby("scenario", observed=True):
        ref, mine = (_settle_agent(part, name, n_resamples, gen, **rule) for name in (reference, agent))
        ratios = ref["boot"] / mine["boot"]
        ratios = ratios[np.isfinite(ratios)]
        reached = bool(np.isfinite(ref["settle"]) and np.isfinite(mine["settle"]))
        low, high = np.percentile(ratios, [2.5, 97.5]) if ratios.size else (np.nan, np.nan)
        rows.append(
            {
                "scenario": str(scenario),
                "reference_requests": ref["settle"],
                "agent_requests": mine["settle"],
                "acceleration": ref["settle"] / mine["settle"] if reached else np.nan,
                "acceleration_low": float(low),
                "acceleration_high": float(high),
                "reached": reached,
                "settled_share": ratios.size / n_resamples,
                "reference_final_ratio": ref["final"],
                "agent_final_ratio": mine["final"],
            }
        )
    return pd.DataFrame(rows)
