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

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from orchlib.study import experiments, metrics, plots, targets, tuning, worlds
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
    "fig2_headline": "Headline: response time and accuracy per policy vs the state-of-the-art stand-in",
    "fig3_learning_curves": "Learning curves of every learning agent against the oracle",
    "fig4_sensitivity": "Sensitivity to bandwidth, number of users and accuracy requirement",
    "fig5_decision_maps": "Decision maps: tier and variant chosen per state",
    "fig6_tradeoff": "Trade-off: response-time reduction vs accuracy loss as the tolerance varies",
    "fig7_hybrid": "Hybrid learning: real requests to converge vs planning steps",
    "fig8_nonstationary": "Non-stationary network: abrupt bandwidth drop and recovery",
    "fig10_q_sensitivity": "Q-learning's sensitivity to gamma, step size, exploration and state resolution",
    "fig11_random_worlds": "Where learning pays: every method on randomly drawn grounded worlds",
}


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))


def _atomic_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic_text(path, frame.to_csv(index=False))


def summary_table(
    headline_runs: pd.DataFrame,
    comparison: pd.DataFrame,
    second_half: pd.DataFrame,
    hybrid: pd.DataFrame,
    rng: int = 0,
) -> pd.DataFrame:
    """Our headline numbers with 95% CIs, beside the paper's where it reports one.

    Args:
        headline_runs: per-run summary of the headline sweep (whole runs).
        comparison: :func:`orchlib.study.metrics.compare_to_baseline` against the stand-in.
        second_half: per-run summary over the second half of each run.
        hybrid: :func:`orchlib.study.experiments.hybrid`.
    """
    scenario = "paper (orchlib reconstruction, docs/assumptions.md S1-S10)"
    rows = []
    q = comparison.set_index("agent").loc["q_learning"]
    rows.append(
        (
            "q_learning response-time reduction vs state-of-the-art stand-in, 1 - T/T_base (%)",
            100 * q["time_reduction"],
            100 * q["time_reduction_low"],
            100 * q["time_reduction_high"],
            "time_reduction_vs_sota_pct",
        )
    )
    rows.append(
        (
            "q_learning speedup vs stand-in, T_base/T - 1 (%)",
            100 * q["speedup_ratio"],
            100 * q["speedup_ratio_low"],
            100 * q["speedup_ratio_high"],
            None,
        )
    )
    rows.append(
        (
            "q_learning accuracy loss vs stand-in (percentage points)",
            q["accuracy_loss_pp"],
            q["accuracy_loss_pp_low"],
            q["accuracy_loss_pp_high"],
            "accuracy_loss_vs_sota_pct",
        )
    )
    rows.append(
        (
            "q_learning accuracy loss vs stand-in (relative %)",
            q["accuracy_loss_rel_pct"],
            q["accuracy_loss_rel_pct_low"],
            q["accuracy_loss_rel_pct_high"],
            None,
        )
    )
    generator = np.random.default_rng(rng)
    for agent in ("q_learning", "dyna_q"):
        ratio = second_half.loc[second_half["agent"] == agent, "latency_ratio_to_oracle"].to_numpy()
        if ratio.size:
            mean, low, high = metrics.mean_ci(ratio, rng=generator)
            rows.append(
                (
                    f"{agent} mean latency / oracle's, second half of run (target <= 1.10)",
                    mean,
                    low,
                    high,
                    None,
                )
            )
    medians = hybrid.groupby("n_planning")["requests_to_reach"].median()
    base = medians.get(0, np.nan)
    planned = medians.drop(index=0, errors="ignore").dropna()
    target = float(hybrid["target_latency_ms"].iloc[0])
    for n, part in hybrid.groupby("n_planning"):
        label = "Q-learning" if n == 0 else f"Dyna-Q n={n}"
        rows.append(
            (
                f"{label}: median real requests to stay within 5% of Q-learning's final {target:.1f} ms (steady Wi-Fi); runs reaching it {part['reached'].mean():.0%}",
                medians[n],
                np.nan,
                np.nan,
                None,
            )
        )
        converged = part["requests_to_converge"]
        rows.append(
            (
                f"{label}: median real requests to come within 5% of its own final performance; runs converged {part['converged'].mean():.0%}",
                converged.median(),
                np.nan,
                np.nan,
                None,
            )
        )
    if len(planned) and np.isfinite(base):
        best_n = planned.idxmin()
        rows.append(
            (
                f"hybrid learning acceleration: Q-learning / Dyna-Q(n={best_n}) median requests to reach the same level (x)",
                base / planned[best_n],
                np.nan,
                np.nan,
                "hybrid_learning_acceleration_x",
            )
        )
    for agent, part in headline_runs.groupby("agent", observed=True, sort=False):
        for column, label in (
            ("mean_latency_ms", "mean response time (ms)"),
            ("mean_accuracy_pct", "delivered top-1 accuracy (%)"),
        ):
            mean, low, high = metrics.mean_ci(part[column].to_numpy(), rng=generator)
            rows.append((f"{agent}: {label}", mean, low, high, None))
    # the last item of each row is the PAPER_NUMBERS key of the paper's claim on that quantity, or None
    frame = pd.DataFrame([row[:4] for row in rows], columns=["quantity", "ours", "ci95_low", "ci95_high"])
    frame["paper"] = [PAPER_NUMBERS[row[4]] if row[4] else np.nan for row in rows]
    frame["paper_quote"] = [PAPER_QUOTES[row[4]] if row[4] else "" for row in rows]
    frame["scenario"] = scenario
    return frame


def targets_rows(learning: pd.DataFrame) -> pd.DataFrame:
    """The issue-13 targets (:func:`orchlib.study.targets.measure_targets`) as summary rows; the acceleration row
    stands beside the companion paper's 166.6x."""
    paper_column = [
        PAPER_NUMBERS["hybrid_learning_acceleration_x"] if "acceleration" in m else np.nan
        for m in learning["measure"]
    ]
    status = learning["met"].map({True: "met", False: "missed"}).fillna("")
    quantity = (
        "["
        + learning["world"]
        + "] "
        + learning["measure"]
        + " (target "
        + learning["target"]
        + "; "
        + status
        + ") "
        + learning["note"]
    )
    return pd.DataFrame(
        {
            "quantity": quantity.str.strip(),
            "ours": learning["value"].to_numpy(float),
            "ci95_low": learning["ci95_low"].to_numpy(float),
            "ci95_high": learning["ci95_high"].to_numpy(float),
            "paper": paper_column,
            "scenario": "learning targets of issue 13 (orchlib reconstruction; worlds in orchlib.study.targets)",
        }
    )


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
        f"Budget: {budget.n_replicates} runs x {budget.n_requests} requests (headline, hybrid), {budget.sweep_replicates} x {budget.sweep_requests} (sweeps); seed {budget.seed}.",
        "95% CIs: BCa bootstrap over independent runs (`scipy.stats.bootstrap`).",
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
        paper(), n_requests=300 if quick else 2000, devices=experiments.MOTIVATION_DEVICES
    )
    _atomic_csv(tables / "fig1_motivation.csv", motivation)
    plots.save(plots.plot_motivation(motivation), figures, "fig1_motivation")
    done()

    done = step("fig2/3/5 headline sweep")
    result = experiments.headline(budget, runs_dir, n_jobs=n_jobs, progress=progress, quick=quick)
    runs = metrics.summarize_runs(result.requests)
    second_half = metrics.summarize_runs(result.requests, from_fraction=0.5)
    comparison = metrics.compare_to_baseline(runs, experiments.SOTA, rng=0)
    _atomic_csv(tables / "fig2_runs.csv", runs)
    _atomic_csv(tables / "fig2_comparison.csv", comparison)
    plots.save(plots.plot_headline(runs, comparison, experiments.SOTA), figures, "fig2_headline")
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

    done = step("fig6 trade-off sweep")
    trade = experiments.tradeoff(budget, runs_dir, n_jobs=n_jobs, progress=progress)
    _atomic_csv(tables / "fig6_tradeoff.csv", trade)
    plots.save(plots.plot_tradeoff(trade), figures, "fig6_tradeoff")
    done()

    done = step("fig7 hybrid learning sweep")
    hyb = experiments.hybrid(budget, runs_dir, n_jobs=n_jobs, progress=progress)
    _atomic_csv(tables / "fig7_hybrid.csv", hyb)
    plots.save(plots.plot_hybrid(hyb), figures, "fig7_hybrid")
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
        # the field's aggregates need >= 10 runs; quick mode keeps its tiny budget
        n_replicates=budget.n_replicates if quick else max(budget.n_replicates, 10),
        seed=budget.seed,
        n_jobs=n_jobs,
        progress=progress,
        window=budget.window,
    )
    _atomic_csv(tables / "targets.csv", learning)
    done()

    done = step("fig11 random worlds")
    worlds_section = random_worlds(
        worlds.QUICK_STUDY if quick else worlds.FULL_STUDY, runs_dir, tables, figures, n_jobs, progress
    )
    done()

    summary = pd.concat([summary_table(runs, comparison, second_half, hyb), targets_rows(learning)])
    _atomic_csv(out / "summary.csv", summary)
    import matplotlib.pyplot as plt

    plt.close("all")
    if notebooks:
        done = step("executed notebooks")
        execute_notebooks(out, quick=quick, n_jobs=n_jobs)
        done()
    timings["total"] = time.perf_counter() - start_all
    text = _markdown(summary, budget, timings, quick) + "\n" + "\n".join(worlds_section) + "\n"
    _atomic_text(out / "summary.md", text)
    log(f"[orchlib reproduce] done in {timings['total']:.0f} s: {out / 'summary.md'}")
    return timings


def random_worlds(
    study: worlds.WorldStudy,
    runs_dir: str | Path,
    tables: Path,
    figures: Path,
    n_jobs: int | None = 2,
    progress: bool = True,
) -> list[str]:
    """Figure 11 and its tables (``tables/fig11_*.csv``, the study's settings as JSON beside them); returns the
    summary section (markdown lines)."""
    import json

    result = worlds.run_world_study(study, runs_dir, n_jobs=n_jobs, progress=progress)
    analysis = worlds.analyse(result)
    _atomic_csv(tables / "fig11_worlds.csv", result.worlds)
    _atomic_csv(tables / "fig11_runs.csv", result.runs)
    _atomic_csv(tables / "fig11_table.csv", analysis.table)
    _atomic_csv(tables / "fig11_comparison.csv", analysis.comparison)
    _atomic_csv(tables / "fig11_feature_effects.csv", analysis.effects)
    _atomic_csv(tables / "fig11_stumps.csv", analysis.stumps)
    settings = {**dataclasses.asdict(study), "ranges": study.ranges.to_dict()}
    _atomic_text(tables / "fig11_study.json", json.dumps(settings, indent=1, sort_keys=True))
    _atomic_csv(tables / "fig11_reference.csv", analysis.reference)
    fig = plots.plot_random_worlds(analysis.table, analysis.comparison, analysis.feature, analysis.reference)
    plots.save(fig, figures, "fig11_random_worlds")
    return worlds.summary_lines(analysis, study)


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
