"""Metrics: pure functions on the runner's tidy tables. Nothing here simulates.

Inputs are the tables of :mod:`orchlib.study.runner`: ``requests`` has one row per served request (columns
``request``, ``time_s``, ``latency_ms``, ``accuracy_pct``, ``met_requirement``, ``oracle_latency_ms``,
``regret_ms``, ...) and ``runs`` one row per run. A run is identified by :data:`RUN_KEYS`
(``agent`` = the legend label, ``scenario`` = the scenario name, ``replicate``).

Definitions used throughout (each function repeats the ones it uses):

* **ratio to oracle** of a set of requests = mean latency / mean oracle latency over the same requests (a
  ratio of means, so long requests weigh as much as they cost; 1 means as fast as the clairvoyant optimum).
* **windows** are consecutive, non-overlapping blocks of ``window`` requests of one run, in request order;
  a trailing partial block is dropped so every point averages exactly ``window`` requests.
* **p95** is linear interpolation between order statistics (``numpy.percentile``'s default).
* Confidence intervals are 95 % BCa bootstrap intervals over runs (``scipy.stats.bootstrap``); a sample
  with fewer than two runs, or one whose statistic does not vary, gets NaN bounds and a status column that
  says why (``"n<2"`` or ``"degenerate"``) instead of an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

#: columns that identify one run in every table.
RUN_KEYS: tuple[str, ...] = ("agent", "scenario", "replicate")

CI_OK, CI_TOO_FEW, CI_DEGENERATE = "ok", "n<2", "degenerate"

_SUMMARY_COLUMNS = (
    "request",
    "latency_ms",
    "accuracy_pct",
    "met_requirement",
    "oracle_latency_ms",
    "regret_ms",
)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def _check_fraction(name: str, value: float, *, allow_zero: bool, allow_one: bool) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    if not (isinstance(value, int | float) and np.isfinite(value) and low_ok and high_ok):
        interval = f"{'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be an integer >= 1 (requests), got {window!r}")


def _groupby_run(frame: pd.DataFrame, extra: Sequence[str] = ()) -> pd.core.groupby.DataFrameGroupBy:
    # observed=True: categorical keys would otherwise produce every combination of categories
    return frame.groupby([*RUN_KEYS, *extra], observed=True, sort=True)


# ----------------------------------------------------------------------------------------------------------
# Per-run summaries


def summarize_runs(requests: pd.DataFrame, from_fraction: float = 0.0) -> pd.DataFrame:
    """One row per run: latency, accuracy, violations and distance to the oracle.

    Args:
        requests: the per-request table of :func:`orchlib.study.runner.run_one` / ``SweepResult.requests``.
        from_fraction: keep only each run's requests with ``request >= from_fraction * n`` (``n`` = the
            run's number of rows), e.g. 0.5 for the second half, to measure performance after learning.

    Returns:
        Columns :data:`RUN_KEYS`, ``n_requests`` (in the window), ``mean_latency_ms``, ``p95_latency_ms``
        (linear interpolation), ``mean_accuracy_pct``, ``violation_rate`` (share of requests served below
        their accuracy requirement), ``mean_regret_ms``, ``mean_oracle_latency_ms`` and
        ``latency_ratio_to_oracle`` (mean latency / mean oracle latency; NaN without oracle columns).

    Raises:
        ValueError: a needed column is missing, or ``from_fraction`` is not in [0, 1).
    """
    _require(requests, [*RUN_KEYS, *_SUMMARY_COLUMNS], "requests")
    _check_fraction("from_fraction", from_fraction, allow_zero=True, allow_one=False)
    frame = requests
    if from_fraction > 0:
        n_run = _groupby_run(frame)["request"].transform("size")
        frame = frame[frame["request"].to_numpy() >= from_fraction * n_run.to_numpy()]
    grouped = _groupby_run(frame)
    out = grouped.agg(
        n_requests=("latency_ms", "size"),
        mean_latency_ms=("latency_ms", "mean"),
        mean_accuracy_pct=("accuracy_pct", "mean"),
        met_rate=("met_requirement", "mean"),
        mean_regret_ms=("regret_ms", "mean"),
        mean_oracle_latency_ms=("oracle_latency_ms", "mean"),
    )
    out.insert(2, "p95_latency_ms", grouped["latency_ms"].quantile(0.95))
    out.insert(4, "violation_rate", 1.0 - out.pop("met_rate").astype(float))
    out["latency_ratio_to_oracle"] = out["mean_latency_ms"] / out["mean_oracle_latency_ms"]
    return out.reset_index()


# ----------------------------------------------------------------------------------------------------------
# Confidence intervals


def _bootstrap_ci(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    paired: bool,
    rng: np.random.Generator,
    confidence_level: float,
    n_resamples: int,
) -> tuple[float, float, str]:
    """BCa interval of ``statistic(*samples, axis)``, or NaN bounds and the reason it cannot be computed."""
    if min(s.size for s in samples) < 2:
        return np.nan, np.nan, CI_TOO_FEW
    if all(np.ptp(s) == 0 for s in samples):
        return np.nan, np.nan, CI_DEGENERATE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.bootstrap(
            samples,
            statistic,
            n_resamples=n_resamples,
            paired=paired,
            vectorized=True,
            confidence_level=confidence_level,
            method="BCa",
            random_state=rng,
        )
    # A statistic that barely varies over resamples makes BCa divide by zero; scipy warns and returns NaN.
    degenerate = (stats.DegenerateDataWarning, RuntimeWarning)
    for w in caught:
        if not issubclass(w.category, degenerate):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if any(issubclass(w.category, degenerate) for w in caught) or not (
        np.isfinite(low) and np.isfinite(high)
    ):
        return np.nan, np.nan, CI_DEGENERATE
    return low, high, CI_OK


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def mean_ci(
    values: Sequence[float] | np.ndarray,
    rng: np.random.Generator | int | None = None,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
) -> tuple[float, float, float]:
    """Mean and BCa bootstrap confidence interval of the mean.

    Args:
        values: one number per run (NaN not allowed).
        rng: seeds the bootstrap resampling.
        confidence_level: e.g. 0.95.
        n_resamples: bootstrap resamples.

    Returns:
        ``(mean, low, high)``; ``low`` and ``high`` are NaN when there are fewer than two values or all are
        equal (no spread to resample).

    Raises:
        ValueError: empty input, NaN values, or ``confidence_level`` not in (0, 1).
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("values must contain at least one number")
    if np.isnan(x).any():
        raise ValueError("values must not contain NaN")
    _check_fraction("confidence_level", confidence_level, allow_zero=False, allow_one=False)
    low, high, _ = _bootstrap_ci(
        (x,),
        _mean,
        paired=False,
        rng=np.random.default_rng(rng),
        confidence_level=confidence_level,
        n_resamples=n_resamples,
    )
    return float(x.mean()), low, high


# Two-sample statistics, data order (baseline, agent); ``axis`` lets scipy evaluate all resamples at once.
def _speedup_ratio(base: np.ndarray, agent: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(base, axis=axis) / np.mean(agent, axis=axis) - 1.0


def _time_reduction(base: np.ndarray, agent: np.ndarray, axis: int = -1) -> np.ndarray:
    return 1.0 - np.mean(agent, axis=axis) / np.mean(base, axis=axis)


def _loss_pp(base: np.ndarray, agent: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(base, axis=axis) - np.mean(agent, axis=axis)


def _loss_rel_pct(base: np.ndarray, agent: np.ndarray, axis: int = -1) -> np.ndarray:
    base_mean = np.mean(base, axis=axis)
    return 100.0 * (base_mean - np.mean(agent, axis=axis)) / base_mean


def compare_to_baseline(
    runs: pd.DataFrame,
    baseline: str,
    metric: str = "mean_latency_ms",
    accuracy: str = "mean_accuracy_pct",
    rng: np.random.Generator | int | None = None,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
) -> pd.DataFrame:
    """Each agent against a named baseline, per scenario: speedup both ways and accuracy loss, with CIs.

    With ``T`` the mean of ``metric`` (lower is better, e.g. a latency) over an agent's runs and ``T_base``
    the baseline's, and ``A``/``A_base`` the means of ``accuracy``:

    * ``speedup_ratio = T_base / T - 1`` (0.5: the baseline takes 50 % longer);
    * ``time_reduction = 1 - T / T_base`` (0.33: the agent needs 33 % less time; the paper's "35 % lower
      average response time" is this form);
    * ``accuracy_loss_pp = A_base - A`` (percentage points; positive = the agent is less accurate);
    * ``accuracy_loss_rel_pct = 100 * (A_base - A) / A_base``.

    Each comes with a BCa bootstrap interval over runs (``*_low``, ``*_high``). When the agent and the
    baseline have exactly the same replicates, runs are paired by replicate (same seeds, so the same
    arrivals: common random numbers) and resampled jointly; otherwise the two groups are resampled
    independently. ``paired`` says which. NaN bounds come with ``latency_ci`` / ``accuracy_ci`` set to
    ``"n<2"`` (fewer than two runs) or ``"degenerate"`` (no spread), else ``"ok"``.

    Args:
        runs: one row per run with columns ``agent``, ``scenario``, ``replicate``, ``metric`` and
            ``accuracy`` (``SweepResult.runs`` or :func:`summarize_runs`).
        baseline: the ``agent`` label of the baseline.
        metric: the time-like column compared.
        accuracy: the accuracy column, percent.
        rng: seeds the bootstrap (the same seed gives the same intervals).
        confidence_level: e.g. 0.95.
        n_resamples: bootstrap resamples per interval.

    Returns:
        One row per (scenario, agent other than the baseline), in the order the runs table lists them.

    Raises:
        ValueError: missing columns, a scenario without baseline runs, NaN values, or duplicate replicates.
    """
    _require(runs, [*RUN_KEYS, metric, accuracy], "runs")
    _check_fraction("confidence_level", confidence_level, allow_zero=False, allow_one=False)
    if runs[[metric, accuracy]].isna().to_numpy().any():
        raise ValueError(f"runs has NaN in {metric!r} or {accuracy!r}; drop or fix those runs first")
    if runs.duplicated(list(RUN_KEYS)).any():
        raise ValueError(f"runs has several rows for the same {list(RUN_KEYS)}; expected one row per run")
    generator = np.random.default_rng(rng)
    rows = []
    for scenario, frame in runs.groupby("scenario", observed=True, sort=False):
        base = frame[frame["agent"] == baseline].sort_values("replicate")
        if base.empty:
            agents = sorted(map(str, frame["agent"].unique()))
            raise ValueError(
                f"baseline {baseline!r} has no runs in scenario {scenario!r}; agents there: {agents}"
            )
        for agent, own in frame.groupby("agent", observed=True, sort=False):
            if agent == baseline:
                continue
            own = own.sort_values("replicate")
            paired = own["replicate"].tolist() == base["replicate"].tolist()
            row: dict[str, object] = {
                "scenario": scenario,
                "agent": agent,
                "baseline": baseline,
                "metric": metric,
                "n_runs": len(own),
                "n_baseline_runs": len(base),
                "paired": paired,
            }
            for kind, column, quantities in (
                ("latency", metric, (("speedup_ratio", _speedup_ratio), ("time_reduction", _time_reduction))),
                (
                    "accuracy",
                    accuracy,
                    (("accuracy_loss_pp", _loss_pp), ("accuracy_loss_rel_pct", _loss_rel_pct)),
                ),
            ):
                samples = (base[column].to_numpy(float), own[column].to_numpy(float))
                prefix = "value" if kind == "latency" else "accuracy_pct"
                row[f"agent_{prefix}"] = samples[1].mean()
                row[f"baseline_{prefix}"] = samples[0].mean()
                status = CI_OK
                for name, statistic in quantities:
                    row[name] = float(statistic(*samples))
                    low, high, why = _bootstrap_ci(
                        samples,
                        statistic,
                        paired=paired,
                        rng=generator,
                        confidence_level=confidence_level,
                        n_resamples=n_resamples,
                    )
                    row[f"{name}_low"], row[f"{name}_high"] = low, high
                    status = why if status == CI_OK else status
                row[f"{kind}_ci"] = status
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# Learning over time


def _window_means(
    frame: pd.DataFrame, position: np.ndarray, window: int, extra: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean latency and oracle latency per full window of ``position`` (0-based order within the run)."""
    frame = frame.assign(window=position // window)
    grouped = _groupby_run(frame, [*extra, "window"])
    out = grouped.agg(
        n=("latency_ms", "size"),
        mean_latency_ms=("latency_ms", "mean"),
        mean_oracle_latency_ms=("oracle_latency_ms", "mean"),
    ).reset_index()
    out = out[out["n"] == window].drop(columns="n")
    out["latency_ratio_to_oracle"] = out["mean_latency_ms"] / out["mean_oracle_latency_ms"]
    return out.reset_index(drop=True)


def learning_curve(requests: pd.DataFrame, window: int = 500) -> pd.DataFrame:
    """Mean latency and ratio to oracle per window of ``window`` consecutive requests, per run.

    Returns:
        Columns :data:`RUN_KEYS`, ``window`` (0, 1, ...), ``request_start``, ``request_end`` (the window
        covers requests ``request_start <= request < request_end``), ``mean_latency_ms``,
        ``mean_oracle_latency_ms``, ``latency_ratio_to_oracle``. A trailing partial window is dropped.

    Raises:
        ValueError: missing columns or ``window`` < 1.
    """
    _require(requests, [*RUN_KEYS, "request", "latency_ms", "oracle_latency_ms"], "requests")
    _check_window(window)
    out = _window_means(requests, requests["request"].to_numpy(), window)
    out.insert(len(RUN_KEYS) + 1, "request_start", out["window"] * window)
    out.insert(len(RUN_KEYS) + 2, "request_end", (out["window"] + 1) * window)
    return out


def _settled_from(within: np.ndarray) -> int | None:
    """First index from which every entry of ``within`` is True, or None if the last one is False."""
    if within.size == 0 or not within[-1]:
        return None
    outside = np.flatnonzero(~within)
    return 0 if outside.size == 0 else int(outside[-1]) + 1


def requests_to_converge(
    requests: pd.DataFrame, tolerance: float = 0.05, window: int = 500, final_fraction: float = 0.2
) -> pd.DataFrame:
    """How many requests each run needs before its windowed mean latency settles at its final level.

    Definition: the run's *final latency* is the mean latency of its last ``final_fraction`` of requests
    (``request >= (1 - final_fraction) * n``; default the last 20 %). The run has *converged after* ``k``
    requests when every full window of ``window`` requests from request ``k`` on has a mean latency within
    ``tolerance`` of the final latency (``|w - final| <= tolerance * final``, both sides), and ``k`` is the
    smallest such window start. ``k`` counts real requests served, including those used for exploration.
    If even the last full window is outside the tolerance, ``requests_to_converge`` is NaN and ``converged``
    False.

    Returns:
        Columns :data:`RUN_KEYS`, ``n_requests``, ``final_latency_ms``, ``requests_to_converge``,
        ``converged``.

    Raises:
        ValueError: missing columns, ``window`` < 1, or ``tolerance``/``final_fraction`` out of range.
    """
    _require(requests, [*RUN_KEYS, "request", "latency_ms", "oracle_latency_ms"], "requests")
    _check_window(window)
    if not (isinstance(tolerance, int | float) and np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0 (a fraction, 0.05 = 5 %), got {tolerance!r}")
    _check_fraction("final_fraction", final_fraction, allow_zero=False, allow_one=True)
    n_run = _groupby_run(requests)["request"].transform("size").to_numpy()
    late = requests[requests["request"].to_numpy() >= (1.0 - final_fraction) * n_run]
    final = _groupby_run(late)["latency_ms"].mean()
    sizes = _groupby_run(requests).size()
    curve = _window_means(requests, requests["request"].to_numpy(), window)
    curves = {keys: frame.sort_values("window") for keys, frame in _groupby_run(curve)}
    no_windows = curve.iloc[:0]
    rows = []
    for keys, n in sizes.items():
        target = float(final.loc[keys])
        windows = curves.get(keys, no_windows)
        within = np.abs(windows["mean_latency_ms"].to_numpy() - target) <= tolerance * target
        start = _settled_from(within)
        rows.append(
            {
                **dict(zip(RUN_KEYS, keys, strict=True)),
                "n_requests": int(n),
                "final_latency_ms": target,
                "requests_to_converge": np.nan
                if start is None
                else float(windows["window"].to_numpy()[start] * window),
                "converged": start is not None,
            }
        )
    return _restore_categories(pd.DataFrame(rows), requests)


def requests_to_reach(
    requests: pd.DataFrame, target_latency_ms: float, window: int = 500, tolerance: float = 0.05
) -> pd.DataFrame:
    """How many requests each run needs before its windowed mean latency stays at or below a common target.

    Definition: the run *reaches* the target after ``k`` requests when every full window of ``window``
    requests from request ``k`` on has a mean latency ``<= (1 + tolerance) * target_latency_ms``, ``k``
    smallest (a window start). Unlike :func:`requests_to_converge`, the target is the same for every run, so
    ratios of ``k`` between agents are learning accelerations (e.g. the target is the level Q-learning ends
    at, and Dyna-Q's ``k`` is compared with Q-learning's). NaN and ``reached`` False when the last window is
    above the target.

    Returns:
        Columns :data:`RUN_KEYS`, ``n_requests``, ``target_latency_ms``, ``requests_to_reach``, ``reached``.

    Raises:
        ValueError: missing columns, ``window`` < 1, a target that is not a finite number > 0, or a negative
            tolerance.
    """
    _require(requests, [*RUN_KEYS, "request", "latency_ms", "oracle_latency_ms"], "requests")
    _check_window(window)
    if not (
        isinstance(target_latency_ms, int | float)
        and np.isfinite(target_latency_ms)
        and target_latency_ms > 0
    ):
        raise ValueError(f"target_latency_ms must be a finite number > 0, got {target_latency_ms!r}")
    if not (isinstance(tolerance, int | float) and np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    sizes = _groupby_run(requests).size()
    curve = _window_means(requests, requests["request"].to_numpy(), window)
    curves = {keys: frame.sort_values("window") for keys, frame in _groupby_run(curve)}
    no_windows = curve.iloc[:0]
    rows = []
    for keys, n in sizes.items():
        windows = curves.get(keys, no_windows)
        start = _settled_from(windows["mean_latency_ms"].to_numpy() <= (1 + tolerance) * target_latency_ms)
        rows.append(
            {
                **dict(zip(RUN_KEYS, keys, strict=True)),
                "n_requests": int(n),
                "target_latency_ms": float(target_latency_ms),
                "requests_to_reach": np.nan
                if start is None
                else float(windows["window"].to_numpy()[start] * window),
                "reached": start is not None,
            }
        )
    return _restore_categories(pd.DataFrame(rows), requests)


def recovery_time(
    requests: pd.DataFrame,
    change_time_s: float,
    window: int = 100,
    tolerance: float = 0.05,
    reference_fraction: float = 0.2,
    end_time_s: float | None = None,
) -> pd.DataFrame:
    """How long each run takes to recover after a scripted change (e.g. a bandwidth drop at ``change_time_s``).

    Definition: take the run's requests that arrive in ``[change_time_s, end_time_s)`` (to the end of the
    run if ``end_time_s`` is None), in order, and cut them into windows of ``window`` requests. Each window's
    *ratio to oracle* is its mean latency divided by its mean oracle latency, which removes the change's
    effect on what is achievable (after a bandwidth drop even the oracle is slower). The *reference* is the
    same ratio over the last ``reference_fraction`` of those requests: the level the agent settles at after
    the change. The run has *recovered after* ``k`` requests when every window from the ``k``-th
    post-change request on has a ratio within ``tolerance`` of the reference (both sides), ``k`` smallest.
    ``recovery_s`` is the arrival time of request ``k`` (counted from the change) minus ``change_time_s``,
    and 0 when ``k`` is 0. If the last window is outside the tolerance, both are NaN and ``recovered`` is
    False. Note that an agent that never adapts "recovers" at once to its own poor level: read
    ``reference_ratio_to_oracle`` (and ``pre_change_ratio_to_oracle``, the ratio over the last ``window``
    requests before the change) alongside.

    Returns:
        Columns :data:`RUN_KEYS`, ``change_time_s``, ``pre_change_ratio_to_oracle``,
        ``peak_ratio_to_oracle`` (the worst post-change window), ``reference_ratio_to_oracle``,
        ``recovery_requests``, ``recovery_s``, ``recovered``.

    Raises:
        ValueError: missing columns, bad parameters, or a run with no full window after the change.
    """
    _require(requests, [*RUN_KEYS, "request", "time_s", "latency_ms", "oracle_latency_ms"], "requests")
    _check_window(window)
    if not (isinstance(change_time_s, int | float) and np.isfinite(change_time_s) and change_time_s >= 0):
        raise ValueError(f"change_time_s must be a finite number >= 0 (seconds), got {change_time_s!r}")
    if end_time_s is not None and not end_time_s > change_time_s:
        raise ValueError(f"end_time_s must be > change_time_s ({change_time_s}), got {end_time_s!r}")
    if not (isinstance(tolerance, int | float) and np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0 (a fraction), got {tolerance!r}")
    _check_fraction("reference_fraction", reference_fraction, allow_zero=False, allow_one=True)
    rows = []
    for keys, run in _groupby_run(requests):
        run = run.sort_values("request")
        time_s = run["time_s"].to_numpy()
        latency = run["latency_ms"].to_numpy(float)
        oracle = run["oracle_latency_ms"].to_numpy(float)
        after = time_s >= change_time_s
        if end_time_s is not None:
            after &= time_s < end_time_s
        before = np.flatnonzero(time_s < change_time_s)[-window:]
        post = np.flatnonzero(after)
        n_windows = post.size // window
        if n_windows == 0:
            raise ValueError(
                f"run {dict(zip(RUN_KEYS, keys, strict=True))} has {post.size} requests after change_time_s="
                f"{change_time_s}, fewer than one window of {window}"
            )
        blocks = post[: n_windows * window].reshape(n_windows, window)
        ratios = latency[blocks].mean(axis=1) / oracle[blocks].mean(axis=1)
        tail = post[int(np.floor((1.0 - reference_fraction) * post.size)) :]
        reference = latency[tail].mean() / oracle[tail].mean()
        start = _settled_from(np.abs(ratios - reference) <= tolerance * reference)
        if start is None:
            n_req, seconds = np.nan, np.nan
        else:
            n_req = float(start * window)
            seconds = 0.0 if start == 0 else float(time_s[blocks[start, 0]] - change_time_s)
        rows.append(
            {
                **dict(zip(RUN_KEYS, keys, strict=True)),
                "change_time_s": float(change_time_s),
                "pre_change_ratio_to_oracle": latency[before].mean() / oracle[before].mean()
                if before.size
                else np.nan,
                "peak_ratio_to_oracle": float(ratios.max()),
                "reference_ratio_to_oracle": float(reference),
                "recovery_requests": n_req,
                "recovery_s": seconds,
                "recovered": start is not None,
            }
        )
    return _restore_categories(pd.DataFrame(rows), requests)


def _restore_categories(out: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """Give ``out``'s run-key columns the categorical dtype they have in ``like`` (legend order)."""
    for column in RUN_KEYS:
        if column in out and isinstance(like[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(like[column].dtype)
    return out
