"""One plot function per figure. Each takes tidy DataFrames, returns a Figure, and never saves it.

:func:`save` writes a figure as PNG and PDF (``orchlib reproduce`` calls it). Error bars are 95% bootstrap
confidence intervals over independent runs (seaborn, ``seed=0`` so they do not change between runs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from orchlib.study.experiments import TIE_TOLERANCE, fastest_steady_tier
from orchlib.system.engine import RESPONSE_PARTS
from orchlib.system.scenario import TIERS

TIER_COLORS = {"end": "#4C72B0", "edge": "#DD8452", "cloud": "#55A868"}
_RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
#: the footnote every figure that shows our numbers carries.
RECONSTRUCTION_NOTE = (
    "orchlib reconstruction: scenario parameters are assumptions (docs/assumptions.md), not the paper's setup"
)


@contextmanager
def _style() -> Iterator[None]:
    with plt.rc_context(_RC):
        yield


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: table lacks column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what}: table is empty")


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as plain values, so unused categories never appear in legends or shift bars."""
    return df.astype({c: "object" for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})


def _note(fig: Figure, text: str = RECONSTRUCTION_NOTE) -> None:
    fig.text(0.01, -0.02, text, fontsize=7, color="0.4", ha="left", va="top")


def save(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as ``name.png`` and ``name.pdf`` in ``out_dir`` (created if missing); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        path = out / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp{suffix}")
        fig.savefig(tmp, bbox_inches="tight")
        tmp.replace(path)
        paths.append(path)
    return paths


# 1 ---------------------------------------------------------------------------------------------------------
def _option_colors(options: Sequence[str]) -> dict[str, str]:
    """A colour per option of figure 1: the tier's colour, edge sizes in lighter to darker oranges."""
    edges = [o for o in options if o.startswith("edge")]
    shades = (
        sns.light_palette(TIER_COLORS["edge"], n_colors=len(edges) + 1)[1:]
        if len(edges) > 1
        else [TIER_COLORS["edge"]]
    )
    colors = {o: TIER_COLORS[o] for o in options if o in TIER_COLORS}
    colors.update(dict(zip(edges, shades, strict=True)))
    return colors


def plot_motivation(table: pd.DataFrame) -> Figure:
    """Figure 1: steady-state response time of end / edge / cloud execution versus network, users and accuracy.

    One bar per option (the end device, the edge at each size of the table, the cloud). Each panel states
    under every setting which option is fastest among those with a steady state. A setting whose offered load
    is >= 1 (no steady state) is marked "overload" instead of drawing a bar; a tier that cannot run a variant
    meeting the requirement is marked "n/a". Tiers within :data:`~orchlib.study.experiments.TIE_TOLERANCE` of
    the fastest are named together ("end≈edge", :func:`~orchlib.study.experiments.fastest_steady_tier`). The
    title says, per device, which tiers are fastest somewhere (and if the edge never is), and whether the
    number of users changes the fastest tier.

    Args:
        table: from :func:`orchlib.study.experiments.motivation` (device, panel, x, tier, option,
            mean_latency_ms, overloaded).
    """
    _require(table, ["device", "panel", "x", "tier", "mean_latency_ms", "overloaded"], "plot_motivation")
    table = _plain(table)
    if "option" not in table.columns:
        table = table.assign(option=table["tier"])
    devices = list(dict.fromkeys(table["device"]))
    options = list(dict.fromkeys(table["option"]))
    colors = _option_colors(options)
    panels = [
        ("network", "access network level", "(a) network condition"),
        ("users", "users sharing access link and edge", "(b) number of users"),
        ("accuracy", "accuracy requirement, top-1 %", "(c) accuracy requirement"),
    ]
    winners: dict[tuple[str, str], list[str]] = {}
    with _style():
        fig, grid = plt.subplots(
            len(devices), 3, figsize=(15, 4.6 * len(devices)), constrained_layout=True, squeeze=False
        )
        cells = [
            (row, device, ax, panel_spec)
            for row, device in enumerate(devices)
            for ax, panel_spec in zip(grid[row], panels, strict=True)
        ]
        for device_row, device, ax, (panel, xlabel, title) in cells:
            part = table[(table["panel"] == panel) & (table["device"] == device)]
            order = list(dict.fromkeys(part["x"]))
            pos = np.arange(len(order))
            width = 0.84 / len(options)
            steady = part[~part["overloaded"].astype(bool) & part["mean_latency_ms"].notna()]
            top = float(steady["mean_latency_ms"].max()) * 3 if not steady.empty else 10.0
            for k, option in enumerate(options):
                rows = part[part["option"] == option].set_index("x").reindex(order)
                ok = ~rows["overloaded"].astype(bool) & rows["mean_latency_ms"].notna()
                offset = (k - (len(options) - 1) / 2) * width
                ax.bar(
                    (pos + offset)[ok.to_numpy()],
                    rows["mean_latency_ms"][ok],
                    width,
                    label=option,
                    color=colors[option],
                )
                for p, (_, row) in zip(pos, rows.iterrows(), strict=True):
                    if row["overloaded"] or pd.isna(row["mean_latency_ms"]):
                        ax.text(
                            p + offset,
                            1.0,
                            "overload" if row["overloaded"] else "n/a",
                            transform=ax.get_xaxis_transform(),
                            rotation=90,
                            ha="center",
                            va="bottom",
                            fontsize=7,
                            color=colors[option],
                        )
            fastest = fastest_steady_tier(part).set_index("x").loc[order, "fastest"].tolist()
            winners[(device, panel)] = fastest
            labels = [f"{x:g}" if isinstance(x, float) else str(x) for x in order]
            ax.set_xticks(
                pos, [f"{label}\n{w}" for label, w in zip(labels, fastest, strict=True)], fontsize=8
            )
            ax.set_yscale("log")
            ax.set_ylim(top=top)
            ax.set_xlabel(
                f"{xlabel}\n(below: fastest tier with a steady state; ≈: within {100 * TIE_TOLERANCE:.0f}%)"
                if device_row == len(devices) - 1
                else ""
            )
            ax.set_ylabel("steady-state mean response time (ms, log)")
            ax.set_title(f"{title}, end device {device}", fontsize=11)
        grid[0][0].legend(title="runs on", loc="upper left", fontsize=8)
        parts = []
        for device in devices:
            won = sorted(
                {t for (d, _), ws in winners.items() if d == device for w in ws for t in w.split("≈")}
                - {"none"},
                key=TIERS.index,
            )
            users_change = len(set(winners.get((device, "users"), [])) - {"none"}) > 1
            text = (
                f"{device}: {', '.join(won)} fastest somewhere"
                if len(won) > 1
                else f"{device}: {won[0] if won else 'none'} fastest everywhere"
            )
            text += "" if "edge" in won else " (the edge never)"
            text += "; users change the fastest tier" if users_change else "; users never change it"
            parts.append(text)
        fig.suptitle("Motivation, fastest tier with a steady state.\n" + "\n".join(parts), fontsize=11)
        _note(
            fig,
            RECONSTRUCTION_NOTE
            + "; edge sizes: AWS Wavelength instances, vCPUs / 2 workers of the measured x86 profile (S3a)",
        )
    return fig


# 2 ---------------------------------------------------------------------------------------------------------
#: figure 2's response-time axis turns logarithmic when the slowest policy's mean is this many times the fastest's.
HEADLINE_LOG_RATIO = 30.0


def plot_headline(
    runs: pd.DataFrame,
    comparison: pd.DataFrame,
    baseline: str,
    operating: pd.DataFrame | None = None,
    method: str = "q_learning",
) -> Figure:
    """Figure 2: mean response time and delivered accuracy per policy, with speedup and accuracy loss over
    ``baseline``; with ``operating``, a lower panel gives ``method``'s time reduction at the paper's accuracy
    budget beside the unconstrained one (95% CIs) and the paper's claim.

    Args:
        runs: one row per run: agent, replicate, mean_latency_ms, mean_accuracy_pct.
        comparison: one row per agent: agent, time_reduction, time_reduction_low, time_reduction_high,
            accuracy_loss_pp (from :func:`orchlib.study.metrics.compare_to_baseline`).
        baseline: the agent the comparison is against (the state-of-the-art stand-in).
        operating: :func:`orchlib.study.experiments.operating_point` (tolerance_pp, budget_pp, chosen and the
            comparison columns), or None for no lower panel.
        method: the agent of the lower panel (the paper's method).
    """
    _require(runs, ["agent", "replicate", "mean_latency_ms", "mean_accuracy_pct"], "plot_headline runs")
    _require(comparison, ["agent", "time_reduction", "accuracy_loss_pp"], "plot_headline comparison")
    if operating is not None:
        _require(
            operating, ["tolerance_pp", "budget_pp", "chosen", "time_reduction"], "plot_headline operating"
        )
    runs = _plain(runs)
    order = runs.groupby("agent")["mean_latency_ms"].mean().sort_values().index.tolist()
    with _style():
        fig = plt.figure(
            figsize=(14, 0.45 * len(order) + (4.4 if operating is not None else 2.2)), layout="constrained"
        )
        mosaic = [["time", "accuracy"]] + ([["point", "point"]] if operating is not None else [])
        axes = fig.subplot_mosaic(
            mosaic, height_ratios=[0.45 * len(order) + 1, 2.0][: len(mosaic)], sharey=False
        )
        ax_t, ax_a = axes["time"], axes["accuracy"]
        ax_a.sharey(ax_t)
        ax_a.tick_params(labelleft=False)
        colors = ["#C44E52" if a == baseline else "#4C72B0" for a in order]
        for ax, column in ((ax_t, "mean_latency_ms"), (ax_a, "mean_accuracy_pct")):
            sns.barplot(
                runs,
                y="agent",
                x=column,
                order=order,
                palette=colors,
                hue="agent",
                hue_order=order,
                dodge=False,
                legend=False,
                errorbar=("ci", 95),
                seed=0,
                ax=ax,
            )
        ax_t.set_xlabel("mean response time (ms)")
        means = runs.groupby("agent")["mean_latency_ms"].mean()
        if means.min() > 0 and means.max() / means.min() > HEADLINE_LOG_RATIO:
            # a policy whose queue never drains (e.g. the most accurate model on a slow phone) is orders of
            # magnitude slower than the rest: on a linear axis every other bar would be a sliver
            ax_t.set_xscale("log")
            ax_t.set_xlim(means.min() / 2, None)
            ax_t.set_xlabel("mean response time (ms, log scale)")
        ax_a.set_xlabel("delivered top-1 accuracy (%)")
        low = runs["mean_accuracy_pct"].min()
        ax_a.set_xlim(max(0.0, low - 5), runs["mean_accuracy_pct"].max() + 1)
        ax_t.set_ylabel("")
        by_agent = comparison.set_index("agent")
        for i, agent in enumerate(order):
            if agent in by_agent.index and agent != baseline:
                row = by_agent.loc[agent]
                ax_t.annotate(
                    f" {-100 * row['time_reduction']:+.0f}% time",
                    (1.0, i),
                    xycoords=("axes fraction", "data"),
                    va="center",
                    fontsize=8,
                )
                ax_a.annotate(
                    f" {-row['accuracy_loss_pp']:+.1f} pp",
                    (1.0, i),
                    xycoords=("axes fraction", "data"),
                    va="center",
                    fontsize=8,
                )
        ax_t.set_title(f"response time (red: baseline '{baseline}';\nright: change vs it)", fontsize=10)
        ax_a.set_title("accuracy\n(right: change vs baseline, percentage points)", fontsize=10)
        if operating is not None:
            _operating_panel(axes["point"], operating, comparison.set_index("agent").loc[method], method)
        _note(fig)
    return fig


def _operating_panel(ax: plt.Axes, operating: pd.DataFrame, unconstrained: pd.Series, agent: str) -> None:
    """Figure 2's lower panel: ``agent``'s time reduction over the stand-in at the paper's accuracy budget and
    unconstrained, with 95% CIs, and the paper's 35% at < 0.9% loss."""
    budget = float(operating["budget_pp"].iloc[0])
    chosen = operating[operating["chosen"].astype(bool)]
    rows = []
    if len(chosen):
        p = chosen.iloc[0]
        rows.append(
            (
                f"at the paper's budget: tolerance {p['tolerance_pp']:g} pp\n(largest with mean loss < {budget:g} pp)",
                p,
            )
        )
    rows.append(("unconstrained\n(requirement mix S8)", unconstrained))
    for i, (_, r) in enumerate(rows):
        value = 100 * r["time_reduction"]
        low, high = 100 * r.get("time_reduction_low", np.nan), 100 * r.get("time_reduction_high", np.nan)
        ax.barh(i, value, color="#4C72B0", height=0.6)
        if np.isfinite(low) and np.isfinite(high):
            ax.errorbar(value, i, xerr=[[value - low], [high - value]], color="k", capsize=4, lw=1)
        ax.annotate(
            f" {value:.1f}% [{low:.1f}, {high:.1f}] faster, accuracy loss {r['accuracy_loss_pp']:.2f} pp",
            (max(value, high if np.isfinite(high) else value), i),
            va="center",
            fontsize=9,
        )
    if not len(chosen):
        ax.annotate(
            f"no tolerance of figure 6's sweep keeps the mean accuracy loss below {budget:g} pp",
            (0, -0.6),
            fontsize=9,
        )
    ax.axvline(35, color="k", ls=":", lw=1)
    ax.annotate(
        "paper: 35% at < 0.9% accuracy loss",
        (35, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    highs = [100 * r.get("time_reduction_high", np.nan) for _, r in rows] + [
        100 * r["time_reduction"] for _, r in rows
    ]
    ax.set_xlim(min(0.0, float(np.nanmin(highs))), max(100.0, 1.3 * float(np.nanmax(highs))))
    ax.invert_yaxis()
    ax.set_xlabel(f"{agent} response-time reduction vs the stand-in, 1 − T/T_base (%), 95% CI")
    ax.set_title(
        "The paper's operating point: the same comparison at the paper's accuracy budget (figure 6's sweep)"
    )


# 3 ---------------------------------------------------------------------------------------------------------
def plot_learning_curves(curves: pd.DataFrame) -> Figure:
    """Figure 3: each agent's windowed mean response time relative to the oracle, over requests served.

    Args:
        curves: agent, replicate, request (window end), ratio_to_oracle (from :func:`orchlib.study.metrics.learning_curve`).
    """
    _require(curves, ["agent", "replicate", "request", "ratio_to_oracle"], "plot_learning_curves")
    curves = _plain(curves)
    with _style():
        fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
        sns.lineplot(
            curves,
            x="request",
            y="ratio_to_oracle",
            hue="agent",
            units="replicate",
            estimator=None,
            palette="tab20",
            alpha=0.15,
            legend=False,
            ax=ax,
            lw=0.6,
        )
        sns.lineplot(
            curves,
            x="request",
            y="ratio_to_oracle",
            hue="agent",
            errorbar=None,
            ax=ax,
            lw=1.8,
            palette="tab20",
        )
        ax.axhline(1.0, color="k", ls="--", lw=1, label="oracle")
        ax.set_yscale("log")
        ax.set_xlabel("requests served")
        ax.set_ylabel("mean response time / oracle's (log scale)")
        ax.set_title("Learning curves against the per-request clairvoyant oracle (thin: single runs)")
        ax.legend(loc="upper right", ncols=2)
        _note(fig)
    return fig


# 4 ---------------------------------------------------------------------------------------------------------
def plot_sensitivity(table: pd.DataFrame) -> Figure:
    """Figure 4: mean response time per agent versus bandwidth, number of users and accuracy requirement.

    Args:
        table: factor (bandwidth/users/accuracy), value, agent, replicate, mean_latency_ms.
    """
    _require(table, ["factor", "value", "agent", "replicate", "mean_latency_ms"], "plot_sensitivity")
    table = _plain(table)
    factors = [f for f in ("bandwidth", "users", "accuracy") if f in set(table["factor"])]
    labels = {
        "bandwidth": "access uplink median (Mbit/s)",
        "users": "number of users",
        "accuracy": "accuracy tolerance below best (pp)",
    }
    with _style():
        fig, axes = plt.subplots(
            1, len(factors), figsize=(5 * len(factors), 4.5), constrained_layout=True, squeeze=False
        )
        for ax, factor in zip(axes[0], factors, strict=True):
            part = table[table["factor"] == factor].astype({"value": float})
            sns.lineplot(
                part,
                x="value",
                y="mean_latency_ms",
                hue="agent",
                marker="o",
                errorbar=("ci", 95),
                seed=0,
                ax=ax,
                legend=ax is axes[0][0],
            )
            ax.set_xlabel(labels[factor])
            ax.set_ylabel("mean response time (ms)")
            ax.set_yscale("log")
            if factor == "bandwidth":
                ax.set_xscale("log")
        axes[0][0].legend(fontsize=8)
        fig.suptitle("Sensitivity of each policy to bandwidth, users and accuracy requirement")
        _note(fig)
    return fig


# 5 ---------------------------------------------------------------------------------------------------------
def plot_decision_maps(decisions: pd.DataFrame) -> Figure:
    """Figure 5: which tier and variant each agent picks per (bandwidth level, requirement class).

    Args:
        decisions: agent, bandwidth_level, requirement_pct, tier, variant, share (the most frequent choice in
            that cell and its share of the cell's requests).
    """
    _require(
        decisions,
        ["agent", "bandwidth_level", "requirement_pct", "tier", "variant", "share"],
        "plot_decision_maps",
    )
    decisions = _plain(decisions)
    agents = list(dict.fromkeys(decisions["agent"]))
    cols = min(3, len(agents))
    rows = int(np.ceil(len(agents) / cols))
    with _style():
        fig, axes = plt.subplots(
            rows, cols, figsize=(5.2 * cols, 3.6 * rows), constrained_layout=True, squeeze=False
        )
        for ax in axes.ravel()[len(agents) :]:
            ax.set_visible(False)
        for ax, agent in zip(axes.ravel(), agents, strict=False):
            part = decisions[decisions["agent"] == agent]
            levels = sorted(set(part["bandwidth_level"]))
            reqs = sorted(set(part["requirement_pct"]))
            grid = np.full((len(reqs), len(levels)), np.nan)
            for r in part.itertuples():
                i, j = reqs.index(r.requirement_pct), levels.index(r.bandwidth_level)
                grid[i, j] = TIERS.index(r.tier)
                short = r.variant.replace("mobilenet_v1_", "").replace("_quant", " q")
                ax.text(
                    j, i, f"{r.tier}\n{short}\n{100 * r.share:.0f}%", ha="center", va="center", fontsize=7
                )
            cmap = plt.matplotlib.colors.ListedColormap([TIER_COLORS[t] for t in TIERS])
            ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=2.5, alpha=0.55, aspect="auto")
            ax.set_xticks(range(len(levels)), [str(x) for x in levels])
            ax.set_yticks(range(len(reqs)), [f"{x:g}%" for x in reqs])
            ax.set_xlabel("access bandwidth level (0 = lowest)")
            ax.set_ylabel("required top-1")
            ax.set_title(agent)
        fig.suptitle("Decision maps: most frequent (tier, variant) per state in the second half of a run")
        _note(fig)
    return fig


# 6 ---------------------------------------------------------------------------------------------------------
def plot_tradeoff(table: pd.DataFrame, operating: pd.DataFrame | None = None) -> Figure:
    """Figure 6: time reduction versus accuracy loss over the state-of-the-art stand-in, as the tolerance varies.

    Args:
        table: agent, tolerance_pp, replicate, time_reduction (1 - T/T_base), accuracy_loss_pp.
        operating: :func:`orchlib.study.experiments.operating_point`; its chosen row (the paper's operating
            point) is ringed, with its 95% CIs. None: no ring.
    """
    _require(
        table, ["agent", "tolerance_pp", "replicate", "time_reduction", "accuracy_loss_pp"], "plot_tradeoff"
    )
    table = _plain(table)
    means = table.groupby(["agent", "tolerance_pp"], as_index=False)[
        ["time_reduction", "accuracy_loss_pp"]
    ].mean()
    with _style():
        fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
        for agent, part in means.groupby("agent"):
            part = part.sort_values("tolerance_pp")
            ax.plot(part["accuracy_loss_pp"], 100 * part["time_reduction"], marker="o", label=agent)
            for r in part.itertuples():
                ax.annotate(
                    f"{r.tolerance_pp:g}",
                    (r.accuracy_loss_pp, 100 * r.time_reduction),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
        ax.scatter(
            table["accuracy_loss_pp"],
            100 * table["time_reduction"],
            s=6,
            color="0.6",
            zorder=0,
            label="single runs",
        )
        ax.axhline(35, color="k", ls=":", lw=1)
        ax.axvline(0.9, color="k", ls=":", lw=1)
        ax.annotate(
            "paper: 35% faster, < 0.9% accuracy loss",
            (0.9, 35),
            textcoords="offset points",
            xytext=(5, -12),
            fontsize=8,
        )
        chosen = operating[operating["chosen"].astype(bool)] if operating is not None else operating
        if chosen is not None and len(chosen):
            p = chosen.iloc[0]
            ax.errorbar(
                p["accuracy_loss_pp"],
                100 * p["time_reduction"],
                xerr=[
                    [p["accuracy_loss_pp"] - p["accuracy_loss_pp_low"]],
                    [p["accuracy_loss_pp_high"] - p["accuracy_loss_pp"]],
                ],
                yerr=[
                    [100 * (p["time_reduction"] - p["time_reduction_low"])],
                    [100 * (p["time_reduction_high"] - p["time_reduction"])],
                ],
                fmt="o",
                ms=14,
                mfc="none",
                color="#C44E52",
                capsize=3,
                label=f"{p['agent']} at the paper's budget (tolerance {p['tolerance_pp']:g} pp), 95% CIs",
            )
        ax.set_xlabel("accuracy loss vs state-of-the-art stand-in (percentage points)")
        ax.set_ylabel("response-time reduction, 1 − T/T_base (%)")
        ax.set_title("Speed versus accuracy as the tolerated accuracy loss varies (labels: tolerance, pp)")
        ax.legend()
        _note(fig)
    return fig


# 7 ---------------------------------------------------------------------------------------------------------
def plot_hybrid(settle: pd.DataFrame, curves: pd.DataFrame, accel: pd.DataFrame) -> Figure:
    """Figure 7: hybrid learning as the companion paper measures it, one column per world.

    Top: each method's response time relative to the oracle's, pooled over runs, in sliding windows starting
    at every request (log scale of requests, so the first requests are resolved one by one), with a 95%
    bootstrap band and a mark where the method settles (stays within the tolerance of its own final level).
    Bottom: the real requests each method needs to settle, with 95% CIs; the title gives the hybrid's
    acceleration over Q-learning (ratio of the two counts, with its CI) beside the companion paper's
    "up to 166.6x".

    Args:
        settle, curves, accel: :func:`orchlib.study.experiments.hybrid`.
    """
    _require(
        settle,
        ["world", "agent", "settle_request", "settle_request_low", "settle_request_high", "final_ratio"],
        "plot_hybrid settle",
    )
    _require(
        curves,
        ["world", "agent", "request", "ratio_to_oracle", "ratio_low", "ratio_high"],
        "plot_hybrid curves",
    )
    _require(
        accel,
        ["world", "reference", "acceleration", "acceleration_low", "acceleration_high"],
        "plot_hybrid accel",
    )
    worlds = list(dict.fromkeys(settle["world"]))
    agents = list(dict.fromkeys(settle["agent"]))
    colors = dict(zip(agents, sns.color_palette("tab10", len(agents)), strict=True))
    with _style():
        fig, axes = plt.subplots(
            2,
            len(worlds),
            figsize=(6.5 * len(worlds), 8.5),
            constrained_layout=True,
            squeeze=False,
            gridspec_kw={"height_ratios": [1.6, 1]},
        )
        for column, world in enumerate(worlds):
            top, bottom = axes[0][column], axes[1][column]
            rows = settle[settle["world"] == world].set_index("agent")
            for agent in agents:
                part = curves[(curves["world"] == world) & (curves["agent"] == agent)]
                top.plot(part["request"], part["ratio_to_oracle"], color=colors[agent], lw=1.6, label=agent)
                top.fill_between(
                    part["request"], part["ratio_low"], part["ratio_high"], color=colors[agent], alpha=0.2
                )
                k = rows.loc[agent, "settle_request"]
                if np.isfinite(k):
                    top.axvline(k, color=colors[agent], ls=":", lw=1)
            top.axhline(1.0, color="k", ls="--", lw=0.8)
            top.set_xscale("log")
            top.set_yscale("log")
            window, tolerance = int(settle["window"].iloc[0]), float(settle["tolerance"].iloc[0])
            growth = float(settle["growth"].iloc[0])
            top.set_xlabel(f"request (start of a window of max({window}, {growth:.0%} of the request index))")
            top.set_ylabel("latency / oracle's, pooled over runs (log)")
            top.set_title(
                f"{world} world, steady Wi-Fi ({int(rows['n_runs'].iloc[0])} runs each); dotted: settles"
            )
            top.legend(fontsize=8, loc="upper right")
            y = np.arange(len(agents))
            values = rows.loc[agents, "settle_request"].to_numpy(float)
            low = rows.loc[agents, "settle_request_low"].to_numpy(float)
            high = rows.loc[agents, "settle_request_high"].to_numpy(float)
            bottom.barh(y, np.nan_to_num(values, nan=0.0), color=[colors[a] for a in agents], height=0.6)
            ok = np.isfinite(values) & np.isfinite(low) & np.isfinite(high)
            # a bootstrap interval need not contain the point (a count is a step function of the runs): draw it
            # as a segment, not as error bars around the point
            bottom.hlines(y[ok], low[ok], high[ok], color="k", lw=1.5)
            for i, agent in enumerate(agents):
                text = (
                    f" {values[i]:.0f} [{low[i]:.0f}, {high[i]:.0f}]; level {rows.loc[agent, 'final_ratio']:.3f}x oracle"
                    if np.isfinite(values[i])
                    else " does not settle within the run"
                )
                bottom.annotate(text, (1, i), va="center", fontsize=8)
            bottom.set_yticks(y, agents)
            bottom.invert_yaxis()
            bottom.set_xscale("log")
            bottom.set_xlim(0.8, max(10.0, float(np.nanmax(np.r_[high, values, 1.0])) * 3))
            bottom.set_xlabel(
                f"real requests until the curve stays within {tolerance:.0%} of its own final level (95% CI)"
            )
            acc = accel[(accel["world"] == world) & (accel["reference"] == "q_learning")]
            if len(acc) and np.isfinite(acc["acceleration"].iloc[0]):
                a = acc.iloc[0]
                head = "hybrid vs q_learning: {}x [{}, {}]".format(
                    *(
                        f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
                        for v in a[["acceleration", "acceleration_low", "acceleration_high"]]
                    )
                )
            else:
                head = "hybrid vs q_learning: not measured (a method does not settle)"
            bottom.set_title(f"{head}; companion paper: up to 166.6x", fontsize=10)
        fig.suptitle("Hybrid learning: real requests each method needs to reach and stay at its own level")
        _note(fig)
    return fig


# 8 ---------------------------------------------------------------------------------------------------------
def plot_nonstationary(
    curves: pd.DataFrame, change_time_s: float, recovery: pd.DataFrame | None = None
) -> Figure:
    """Figure 8: windowed response time around an abrupt bandwidth drop, with each agent's recovery time.

    Args:
        curves: agent, replicate, time_s, mean_latency_ms (windowed).
        change_time_s: when the drop happens.
        recovery: agent, recovery_s (median over replicates) for the legend; optional.
    """
    _require(curves, ["agent", "replicate", "time_s", "mean_latency_ms"], "plot_nonstationary")
    curves = _plain(curves)
    labels = {}
    if recovery is not None and not recovery.empty:
        for r in recovery.itertuples():
            labels[r.agent] = (
                f"{r.agent} (recovers in {r.recovery_s:.0f} s)"
                if np.isfinite(r.recovery_s)
                else f"{r.agent} (does not recover)"
            )
    data = curves.assign(agent=curves["agent"].map(lambda a: labels.get(a, a)))
    with _style():
        fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
        sns.lineplot(data, x="time_s", y="mean_latency_ms", hue="agent", errorbar=("ci", 95), seed=0, ax=ax)
        ax.axvline(change_time_s, color="k", ls="--", lw=1)
        ax.annotate(
            "bandwidth drop",
            (change_time_s, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14),
            textcoords="offset points",
            fontsize=9,
        )
        ax.set_yscale("log")
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("mean response time in window (ms, log scale)")
        ax.set_title("Non-stationary network: replayed trace with an abrupt bandwidth drop")
        _note(fig)
    return fig


def plot_q_sensitivity(table: pd.DataFrame) -> Figure:
    """Q-learning's sensitivity: ratio to the oracle against each hyperparameter varied alone (one panel each).

    Args:
        table: :func:`orchlib.study.tuning.q_learning_sensitivity` (``parameter``, ``value``, ``replicate``,
            ``ratio_to_oracle``).
    """
    _require(table, ["parameter", "value", "replicate", "ratio_to_oracle"], "plot_q_sensitivity")
    parameters = list(dict.fromkeys(table["parameter"]))
    with _style():
        fig, axes = plt.subplots(
            1, len(parameters), figsize=(3.2 * len(parameters), 3.2), sharey=True, squeeze=False
        )
        for ax, parameter in zip(axes[0], parameters, strict=True):
            part = _plain(table[table["parameter"] == parameter])
            sns.pointplot(
                data=part,
                x="value",
                y="ratio_to_oracle",
                errorbar=("ci", 95),
                seed=0,
                ax=ax,
                linestyle="none",
            )
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_title(parameter.replace("_", " "))
            ax.set_xlabel("")
            ax.tick_params(axis="x", rotation=30)
        axes[0][0].set_ylabel("latency / oracle, second half")
        fig.tight_layout()
        _note(fig)
    return fig


#: response-time parts, in stacking order (the request table's names); a real serving path measures all but
#: ``overhead_ms``, the simulator's fixed per-request protocol cost (L11), which it has inside the others.
_PARTS = RESPONSE_PARTS


def plot_sim_vs_real(table: pd.DataFrame) -> Figure:
    """Simulated against real response time per tier, variant and user count, and the parts behind them.

    Args:
        table: :func:`orchlib.testbed.compare.sim_vs_real` rows (one per user count, tier and variant) with
            ``real_/sim_median_ms``, ``real_/sim_p95_ms`` and ``real_/sim_<part>`` medians.

    Left: each (tier, variant, users) as a point, real on x and simulated on y, for the median (circles) and
    the p95 (triangles), with the identity and the issue's goals (median within 10%, p95 within 20%) shaded.
    Right, one panel per tier: the median of each part, real against simulated, summed over the tier's rows
    (the mean over variants and user counts), which shows which part of the model is off.
    """
    needed = ["n_users", "tier", "variant", "real_median_ms", "sim_median_ms", "real_p95_ms", "sim_p95_ms"]
    _require(table, needed + [f"{s}_{p}" for s in ("real", "sim") for p in _PARTS], "plot_sim_vs_real")
    df = _plain(table)
    tiers = [t for t in TIERS if t in set(df["tier"])]
    with _style():
        fig, axes = plt.subplots(
            1,
            1 + len(tiers),
            figsize=(4.6 + 3.2 * len(tiers), 4.4),
            gridspec_kw={"width_ratios": [1.5] + [1] * len(tiers)},
        )
        ax = axes[0]
        values = np.concatenate([df[c].to_numpy(float) for c in needed[3:]])
        low, high = np.nanmin(values) * 0.7, np.nanmax(values) * 1.4
        grid = np.geomspace(low, high, 50)
        ax.fill_between(grid, grid * 0.8, grid * 1.2, color="0.92", label="±20% (p95 goal)")
        ax.fill_between(grid, grid * 0.9, grid * 1.1, color="0.82", label="±10% (median goal)")
        ax.plot(grid, grid, color="0.3", lw=0.8)
        for tier in tiers:
            rows = df[df["tier"] == tier]
            for stat, marker, face in (("median", "o", TIER_COLORS[tier]), ("p95", "^", "none")):
                ax.scatter(
                    rows[f"real_{stat}_ms"],
                    rows[f"sim_{stat}_ms"],
                    marker=marker,
                    s=28,
                    edgecolors=TIER_COLORS[tier],
                    facecolors=face,
                    label=f"{tier} {stat}",
                )
        ax.set(
            xscale="log",
            yscale="log",
            xlim=(low, high),
            ylim=(low, high),
            xlabel="real response time (ms)",
            ylabel="simulated response time (ms)",
            title="simulator vs testbed",
        )
        ax.legend(loc="upper left", fontsize=7, ncol=2)
        for ax, tier in zip(axes[1:], tiers, strict=True):
            rows = df[df["tier"] == tier]
            real = [rows[f"real_{p}"].mean() for p in _PARTS]
            sim = [rows[f"sim_{p}"].mean() for p in _PARTS]
            y = np.arange(len(_PARTS))
            ax.barh(y - 0.2, real, height=0.4, color=TIER_COLORS[tier], label="real")
            ax.barh(y + 0.2, sim, height=0.4, color=TIER_COLORS[tier], alpha=0.45, label="simulated")
            ax.set_yticks(y, [p.removesuffix("_ms").replace("_", " ") for p in _PARTS])
            ax.invert_yaxis()
            ax.set(xlabel="median part (ms)", title=f"{tier}: where the time goes")
            ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        _note(
            fig,
            "orchlib live testbed on one shared machine; simulator with this machine's profile "
            "(docs/assumptions.md, T1-T11 and L11)",
        )
    return fig


def plot_testbed_choices(requests: pd.DataFrame) -> Figure:
    """An agent's decisions on the live testbed over time, and the response times they got.

    Args:
        requests: a testbed request table (:func:`orchlib.testbed.run.run_testbed`): ``time_s``, ``tier``,
            ``variant``, ``latency_ms``, ``status``.

    Top: the tier chosen for each request (jittered by variant), failed requests as black crosses. Bottom: the
    measured response time of each answered request, coloured by tier.
    """
    _require(requests, ["time_s", "tier", "variant", "latency_ms", "status"], "plot_testbed_choices")
    df = _plain(requests)
    variants = sorted(set(df["variant"]))
    offset = {v: (i - (len(variants) - 1) / 2) * 0.12 for i, v in enumerate(variants)}
    with _style():
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(9, 5.2), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]}
        )
        ok = df["status"] == "ok"
        for tier in TIERS:
            rows = df[(df["tier"] == tier) & ok]
            y = TIERS.index(tier) + rows["variant"].map(offset).astype(float)
            top.scatter(rows["time_s"], y, s=10, color=TIER_COLORS[tier])
            bottom.scatter(rows["time_s"], rows["latency_ms"], s=10, color=TIER_COLORS[tier], label=tier)
        failed = df[~ok]
        if len(failed):
            top.scatter(
                failed["time_s"], failed["tier"].map(TIERS.index), marker="x", color="k", s=20, label="failed"
            )
            top.legend(loc="upper right", fontsize=8)
        top.set_yticks(range(len(TIERS)), TIERS)
        top.set(
            ylabel="tier chosen", title="decisions on the live testbed (variants side by side in each row)"
        )
        bottom.set(xlabel="request time (s)", ylabel="response time (ms)", yscale="log")
        bottom.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
    return fig
