"""``orchlib reproduce``: run every experiment, draw every figure, write the summary and executed notebooks.

Output layout (``out``, default ``results/``)::

    figures/fig1_motivation.png|pdf ... fig8_nonstationary.png|pdf
    tables/*.csv            the tidy data behind each figure
    runs/                   cached runs (reused by later calls and by the notebooks)
    summary.md, summary.csv our headline numbers with 95% CIs beside the paper's
    notebooks/*.ipynb       executed copies of notebooks/ (with outputs; not committed), only with
                            ``notebooks=True`` or from :func:`execute_notebooks` (``make notebooks``)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from orchlib.study import experiments, metrics, plots, targets, tuning
from orchlib.study.runner import atomic_write
from orchlib.system.scenario import paper

#: The paper's reported numbers (abstract and companion abstract); everything else here is ours. The number
#: is for computing with (the ``paper`` column of summary.csv); the quote is the claim exactly as the paper
#: words it (the ``paper_quote`` column and summary.md): "< 0.9%" is a bound, not a measurement of 0.9.
PAPER_NUMBERS = {
    "time_reduction_vs_sota_pct": 35.0,
    "accuracy_loss_vs_sota_pct": 0.9,
    "hybrid_learning_acceleration_x": 166.6,
}
PAPER_QUOTES = {
    # arXiv 2202.10541 abstract: "Our solution provides 35% speedup in the average response time compared to
    # the state-of-the-art with less than 0.9% accuracy reduction"
    "time_reduction_vs_sota_pct": "35%",
    "accuracy_loss_vs_sota_pct": "< 0.9%",
    # arXiv 2202.11098 (ISQED 2022) abstract: "our HL strategy accelerates the learning process by up to 166.6x"
    "hybrid_learning_acceleration_x": "up to 166.6x",
}

FIGURES: dict[str, str] = {
    "fig1_motivation": "Motivation: end/edge/cloud response time vs network, users, accuracy requirement",
    "fig2_headline": "Headline: response time and accuracy per policy vs the stand-in, and the paper's operating point",
    "fig3_learning_curves": "Learning curves of every learning agent against the oracle",
    "fig4_sensitivity": "Sensitivity to bandwidth, number of users and accuracy requirement",
    "fig5_decision_maps": "Decision maps: tier and variant chosen per state",
    "fig6_tradeoff": "Trade-off: response-time reduction vs accuracy loss as the tolerance varies",
    "fig7_hybrid": "Hybrid learning: real requests each method needs to settle at its own level, and the acceleration",
    "fig8_nonstationary": "Non-stationary network: abrupt bandwidth drop and recovery",
    "fig10_q_sensitivity": "Q-learning's sensitivity to gamma, step size, exploration and state resolution",
}


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))


def _atomic_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic_text(path, frame.to_csv(index=False))


def _row(quantity: str, estimate: tuple[float, float, float], paper_key: str | None = None) -> tuple:
    """A summary row: quantity, (ours, low, high) and the PAPER_NUMBERS key of the paper's claim on it, or None."""
    return (quantity, *(float(x) for x in estimate), paper_key)


def _comparison_rows(row: pd.Series, agent: str, setting: str) -> list[tuple]:
    """The time reduction, speedup and accuracy loss of one :func:`~orchlib.study.metrics.compare_to_baseline` row."""

    def ci(name: str, scale: float = 1.0) -> tuple[float, float, float]:
        return tuple(scale * row[f"{name}{end}"] for end in ("", "_low", "_high"))

    return [
        _row(
            f"{agent} response-time reduction vs state-of-the-art stand-in, {setting}, 1 - T/T_base (%)",
            ci("time_reduction", 100),
            "time_reduction_vs_sota_pct",
        ),
        _row(f"{agent} speedup vs stand-in, {setting}, T_base/T - 1 (%)", ci("speedup_ratio", 100)),
        _row(
            f"{agent} accuracy loss vs stand-in, {setting} (percentage points)",
            ci("accuracy_loss_pp"),
            "accuracy_loss_vs_sota_pct",
        ),
        _row(f"{agent} accuracy loss vs stand-in, {setting} (relative %)", ci("accuracy_loss_rel_pct")),
    ]


def summary_table(
    headline_runs: pd.DataFrame,
    comparison: pd.DataFrame,
    second_half: pd.DataFrame,
    hybrid: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    operating: pd.DataFrame,
    ceiling: pd.DataFrame | None = None,
    rng: int = 0,
) -> pd.DataFrame:
    """Our headline numbers with 95% CIs, beside the paper's where it reports one.

    Args:
        headline_runs: per-run summary of the headline sweep (whole runs).
        comparison: :func:`orchlib.study.metrics.compare_to_baseline` against the stand-in.
        second_half: per-run summary over the second half of each run.
        hybrid: :func:`orchlib.study.experiments.hybrid` (settling table, curves, accelerations).
        operating: :func:`orchlib.study.experiments.operating_point` (the paper's operating point, X7).
        ceiling: the same for the oracle (``operating_point(runs, agent="oracle")``): its reduction at the
            tolerance chosen for Q-learning is the most any policy gets there. None: no such row.
    """
    scenario = "paper (orchlib reconstruction, docs/assumptions.md S1-S10)"
    rows: list[tuple] = []
    chosen = operating[operating["chosen"]]
    budget_pp = float(operating["budget_pp"].iloc[0])
    if len(chosen):
        point = chosen.iloc[0]
        rows += _comparison_rows(
            point,
            str(point["agent"]),
            f"at the paper's accuracy budget (every request tolerates {point['tolerance_pp']:g} pp: the largest "
            f"tolerance of figure 6's sweep with mean accuracy loss < {budget_pp:g} pp, X7)",
        )
        best = None if ceiling is None else ceiling[ceiling["tolerance_pp"] == point["tolerance_pp"]]
        if best is not None and len(best):
            b = best.iloc[0]
            rows.append(
                _row(
                    f"oracle (clairvoyant) response-time reduction vs stand-in at the same tolerance "
                    f"({point['tolerance_pp']:g} pp; accuracy loss {b['accuracy_loss_pp']:.2f} pp): the most any "
                    "policy gets there, 1 - T/T_base (%)",
                    tuple(100 * b[f"time_reduction{end}"] for end in ("", "_low", "_high")),
                )
            )
    else:
        rows.append(
            _row(
                f"q_learning at the paper's accuracy budget: no tolerance of figure 6's sweep keeps the mean "
                f"accuracy loss below {budget_pp:g} pp (X7)",
                (np.nan, np.nan, np.nan),
            )
        )
    q = comparison.set_index("agent").loc["q_learning"]
    rows += _comparison_rows(q, "q_learning", "unconstrained (the requirement mix S8)")
    generator = np.random.default_rng(rng)
    for agent in ("q_learning", "dyna_q", "hybrid", "adaptive_greedy"):
        ratio = second_half.loc[second_half["agent"] == agent, "latency_ratio_to_oracle"].to_numpy()
        if ratio.size:
            rows.append(
                _row(
                    f"{agent} mean latency / oracle's, second half of run",
                    metrics.mean_ci(ratio, rng=generator),
                )
            )
    settle, _, accel = hybrid
    for r in settle.itertuples():
        settled = np.isfinite(r.settle_request)
        rows.append(
            _row(
                f"[{r.world}, steady Wi-Fi] {r.agent}: real requests until its latency stays within "
                f"{r.tolerance:.0%} of its own final level ({r.final_ratio:.3f}x the oracle; windows of "
                f"max({r.window}, {r.growth:.0%} of the request index) from every request, {r.n_runs} runs)"
                + ("" if settled else ": does not settle within the run"),
                (r.settle_request, r.settle_request_low, r.settle_request_high),
            )
        )
    for r in accel.itertuples():
        rows.append(
            _row(
                f"[{r.world}, steady Wi-Fi] hybrid learning acceleration: requests to settle, {r.reference} / hybrid (x)"
                + (
                    f": {r.reference_requests:.0f} / {r.agent_requests:.0f}"
                    + (
                        " (the hybrid is at its level from its first request: the ratio is the reference's count)"
                        if r.agent_requests == 1
                        else ""
                    )
                    if r.reached
                    else ": a method does not settle within the run"
                ),
                (r.acceleration, r.acceleration_low, r.acceleration_high),
                "hybrid_learning_acceleration_x",
            )
        )
    for agent, part in headline_runs.groupby("agent", observed=True, sort=False):
        for column, label in (
            ("mean_latency_ms", "mean response time (ms)"),
            ("mean_accuracy_pct", "delivered top-1 accuracy (%)"),
        ):
            rows.append(_row(f"{agent}: {label}", metrics.mean_ci(part[column].to_numpy(), rng=generator)))
    frame = pd.DataFrame([row[:4] for row in rows], columns=["quantity", "ours", "ci95_low", "ci95_high"])
    frame["paper"] = [PAPER_NUMBERS[row[4]] if row[4] else np.nan for row in rows]
    frame["paper_quote"] = [PAPER_QUOTES[row[4]] if row[4] else "" for row in rows]
    frame["scenario"] = scenario
    return frame


def targets_rows(learning: pd.DataFrame) -> pd.DataFrame:
    """The issue-13 targets (:func:`orchlib.study.targets.measure_targets`) as summary rows.

    A row with a target reads ``[world] measure (target T; met|missed|undetermined) note``; a row whose
    ``target`` column is a parenthesised remark (no target) reads ``[world] measure (remark) note``.
    """
    status = learning["met"].map({True: "met", False: "missed"}).fillna("undetermined")
    remark = learning["target"].str.startswith("(")
    quantity = (
        "["
        + learning["world"]
        + "] "
        + learning["measure"]
        + " "
        + learning["target"].where(remark, "(target " + learning["target"] + "; " + status + ")")
        + " "
        + learning["note"]
    )
    return pd.DataFrame(
        {
            "quantity": quantity.str.strip(),
            "ours": learning["value"].to_numpy(float),
            "ci95_low": learning["ci95_low"].to_numpy(float),
            "ci95_high": learning["ci95_high"].to_numpy(float),
            "paper": np.nan,
            "paper_quote": "",
            "scenario": "learning targets of issue 13 (orchlib reconstruction; worlds in orchlib.study.targets)",
        }
    )


#: fragments that mean a summary row was assembled wrongly: a missing number printed as "nan"/"None", empty
#: parentheses, a parenthesis closed right after a separator, a doubled separator.
_GLITCHES = re.compile(r"\bnan\b|\bNone\b|\(\s*\)|[;,]\s*\)|\(\s*[;,]|;\s*;|\[\s*,|,\s*\]", re.IGNORECASE)


def summary_glitches(markdown: str) -> list[str]:
    """The lines of a summary (``summary.md``) that contain a glitch: ``nan``/``None`` where a number or text
    belongs, empty parentheses, or an unreplaced fragment such as ``(target (before); )``. Empty list: clean."""
    return [line for line in markdown.splitlines() if _GLITCHES.search(line)]


def format_estimate(value: float, low: float = np.nan, high: float = np.nan) -> tuple[str, str]:
    """``value`` and its 95% CI as text, to the precision the CI justifies.

    With a CI, the half-width is kept to two significant digits and the value and both bounds to the same
    decimal place (e.g. 34.52 in [32.1, 36.9] -> "34.5", "[32.1, 36.9]"). Without one, three significant
    digits (numbers of 1000 and more as whole numbers).

    Returns:
        ``(value_text, ci_text)``; ``ci_text`` is empty without a CI, both are empty for a missing value.
    """
    if not np.isfinite(value):
        return "", ""
    half = (high - low) / 2 if np.isfinite(low) and np.isfinite(high) else np.nan
    if not (np.isfinite(half) and half > 0):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return text, f"[{low:.3g}, {high:.3g}]" if np.isfinite(low) and np.isfinite(high) else ""
    decimals = max(0, 1 - math.floor(math.log10(half)))
    return f"{value:.{decimals}f}", f"[{low:.{decimals}f}, {high:.{decimals}f}]"


def _markdown(
    summary: pd.DataFrame, budget: experiments.Budget, timings: dict[str, float], quick: bool
) -> str:
    lines = [
        "# orchlib reproduction summary" + (" (QUICK: tiny budget, not for conclusions)" if quick else ""),
        "",
        "**Our numbers come from a reconstructed scenario** (the paper's full text is not public; every choice is",
        "numbered in `docs/assumptions.md`). The paper column quotes the papers' abstracts exactly, and nothing",
        "else. Our numbers are given to the precision their 95% CI justifies (two significant digits of its",
        "half-width); numbers without a CI (medians over runs) to three significant digits.",
        "The state-of-the-art stand-in is RL offloading that chooses only the location, always with the most",
        "accurate model (`sota_location_only`), because the paper's baseline is not named publicly.",
        "",
        f"Budget: {budget.n_replicates} runs x {budget.n_requests} requests (headline, trade-off), "
        f"{budget.learning_replicates} x {budget.n_requests} (hybrid learning, learning targets), "
        f"{budget.sweep_replicates} x {budget.sweep_requests} (other sweeps); seed {budget.seed}.",
        "95% CIs: BCa bootstrap over independent runs (`scipy.stats.bootstrap`) for means and comparisons;",
        "percentile bootstrap over runs for the requests to settle and the acceleration (figure 7).",
        "",
        "| quantity | ours | 95% CI | paper |",
        "|---|---|---|---|",
    ]
    for r in summary.itertuples():
        ours, ci = format_estimate(r.ours, r.ci95_low, r.ci95_high)
        lines.append(f"| {r.quantity} | {ours} | {ci} | {r.paper_quote} |")
    lines += ["", "## Figures", ""]
    lines += [f"- `figures/{name}.png`: {text}" for name, text in FIGURES.items()]
    lines += ["", "## Wall time per step (s)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in timings.items()]
    return "\n".join(lines) + "\n"


def reproduce(
    out: str | Path = "results",
    quick: bool = False,
    n_jobs: int | None = 2,
    notebooks: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Regenerate every figure and the summary; with ``notebooks``, also executed copies of the notebooks
    (:func:`execute_notebooks`; ``make notebooks`` runs that step alone). Returns wall times (s)."""
    out = Path(out)
    budget = experiments.QUICK if quick else experiments.FULL
    runs_dir = str(out / "runs")
    figures, tables = out / "figures", out / "tables"
    timings: dict[str, float] = {}
    start_all = time.perf_counter()

    def step(name: str) -> Callable[[], None]:
        start = time.perf_counter()
        log(f"[orchlib reproduce] {name} ...")
        return lambda: timings.__setitem__(name, time.perf_counter() - start)

    done = step("fig1 motivation")
    motivation = experiments.motivation(
        paper(),
        n_requests=300 if quick else 2000,
        devices=experiments.MOTIVATION_DEVICES,
        edges=experiments.MOTIVATION_EDGES,
    )
    _atomic_csv(tables / "fig1_motivation.csv", motivation)
    plots.save(plots.plot_motivation(motivation), figures, "fig1_motivation")
    done()

    # the trade-off sweep first: figure 2 shows the paper's operating point it gives (X7)
    done = step("fig6 trade-off sweep")
    trade_runs = experiments.tradeoff_runs(budget, runs_dir, n_jobs=n_jobs, progress=progress)
    trade = experiments.paired_tradeoff(trade_runs)
    operating = experiments.operating_point(trade_runs)
    ceiling = experiments.operating_point(trade_runs, agent="oracle")
    _atomic_csv(tables / "fig6_tradeoff.csv", trade)
    _atomic_csv(tables / "fig6_operating_point.csv", operating)
    plots.save(plots.plot_tradeoff(trade, operating), figures, "fig6_tradeoff")
    done()

    done = step("fig2/3/5 headline sweep")
    result = experiments.headline(budget, runs_dir, n_jobs=n_jobs, progress=progress, quick=quick)
    runs = metrics.summarize_runs(result.requests)
    second_half = metrics.summarize_runs(result.requests, from_fraction=0.5)
    comparison = metrics.compare_to_baseline(runs, experiments.SOTA, rng=0)
    _atomic_csv(tables / "fig2_runs.csv", runs)
    _atomic_csv(tables / "fig2_comparison.csv", comparison)
    plots.save(plots.plot_headline(runs, comparison, experiments.SOTA, operating), figures, "fig2_headline")
    curves = metrics.learning_curve(result.requests, window=budget.window)
    curves = curves[curves["agent"].isin([*experiments.CURVE_AGENTS, "q_learning_per_user"])].rename(
        columns={"request_end": "request", "latency_ratio_to_oracle": "ratio_to_oracle"}
    )
    _atomic_csv(tables / "fig3_learning_curves.csv", curves)
    plots.save(plots.plot_learning_curves(curves), figures, "fig3_learning_curves")
    decisions = experiments.decision_table(result.requests)
    _atomic_csv(tables / "fig5_decisions.csv", decisions)
    plots.save(plots.plot_decision_maps(decisions), figures, "fig5_decision_maps")
    done()

    done = step("fig4 sensitivity sweep")
    sens = experiments.sensitivity(budget, runs_dir, n_jobs=n_jobs, progress=progress)
    _atomic_csv(tables / "fig4_sensitivity.csv", sens)
    plots.save(plots.plot_sensitivity(sens), figures, "fig4_sensitivity")
    done()

    done = step("fig7 hybrid learning sweep")
    hyb = experiments.hybrid(budget, runs_dir, n_jobs=n_jobs, progress=progress)
    for name, table in zip(("fig7_settling", "fig7_curves", "fig7_acceleration"), hyb, strict=True):
        _atomic_csv(tables / f"{name}.csv", table)
    plots.save(plots.plot_hybrid(*hyb), figures, "fig7_hybrid")
    done()

    done = step("fig8 non-stationary sweep")
    ns_curves, recovery, change_s = experiments.nonstationary(
        budget, runs_dir, n_jobs=n_jobs, progress=progress
    )
    _atomic_csv(tables / "fig8_curves.csv", ns_curves)
    _atomic_csv(tables / "fig8_recovery.csv", recovery)
    rec = recovery.groupby("agent", observed=True, as_index=False)["recovery_s"].median()
    plots.save(plots.plot_nonstationary(ns_curves, change_s, rec), figures, "fig8_nonstationary")
    done()

    done = step("fig10 Q-learning sensitivity sweep")
    q_sens = tuning.q_learning_sensitivity(
        runs_dir,
        n_requests=budget.n_requests if not quick else budget.sweep_requests,
        n_replicates=budget.sweep_replicates,
        seed=budget.seed,
        n_jobs=n_jobs,
        progress=progress,
    )
    _atomic_csv(tables / "fig10_q_sensitivity.csv", q_sens)
    plots.save(plots.plot_q_sensitivity(q_sens), figures, "fig10_q_sensitivity")
    done()

    done = step("learning targets (issue 13)")
    learning = targets.measure_targets(
        runs_dir,
        n_requests=budget.n_requests,
        # the field's aggregates need >= 10 runs (budget.learning_replicates); quick mode keeps its tiny budget
        n_replicates=budget.learning_replicates,
        seed=budget.seed,
        n_jobs=n_jobs,
        progress=progress,
        window=budget.window,
    )
    _atomic_csv(tables / "targets.csv", learning)
    done()

    summary = pd.concat(
        [summary_table(runs, comparison, second_half, hyb, operating, ceiling), targets_rows(learning)],
        ignore_index=True,
    )
    _atomic_csv(out / "summary.csv", summary)
    import matplotlib.pyplot as plt

    plt.close("all")
    if notebooks:
        done = step("executed notebooks")
        execute_notebooks(out, quick=quick, n_jobs=n_jobs)
        done()
    timings["total"] = time.perf_counter() - start_all
    markdown = _markdown(summary, budget, timings, quick)
    _atomic_text(out / "summary.md", markdown)
    for line in summary_glitches(markdown):
        log(f"[orchlib reproduce] WARNING: a summary line has a glitch (nan, empty parentheses): {line}")
    log(f"[orchlib reproduce] done in {timings['total']:.0f} s: {out / 'summary.md'}")
    return timings


def execute_notebooks(out: str | Path = "results", quick: bool = False, n_jobs: int | None = 2) -> list[Path]:
    """Execute every notebook against the runs cached in ``out/runs`` and write the executed copies to
    ``out/notebooks/`` (atomically). Runs that ``reproduce`` cached are reused, so after it this takes about as
    long as reading them; without them, each notebook computes its own. Returns the written paths."""
    from joblib import Parallel, delayed

    from orchlib.study.notebooks import execute_notebook, notebook_paths

    out = Path(out)
    paths = notebook_paths()
    # Kernels are separate processes, so two notebooks at a time use both cores.
    Parallel(n_jobs=n_jobs or 1)(
        delayed(execute_notebook)(
            path, out / "notebooks" / path.name, quick=quick, timeout_s=600, results=out
        )
        for path in paths
    )
    return [out / "notebooks" / path.name for path in paths]
