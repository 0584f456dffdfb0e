"""Interactive sensitivity study: change the network, RTT, users, accuracy tolerance, workers or agent, press Run.

The science is in pure functions that tests call directly:

* :class:`SensitivitySettings` — what the controls say (frozen, validated);
* :func:`scenario_from_settings` — the ``ideal`` preset (``paper`` before issue 12) with those settings applied;
* :func:`simulate` — the chosen agent, the clairvoyant oracle and the state-of-the-art stand-in
  (:data:`orchlib.study.experiments.SOTA`) on the same seed through :mod:`orchlib.study.runner` (cached when given a folder);
* :func:`decision_map_table` and :func:`summary_figure` — the tables and the figure drawn from the result.

:class:`SensitivityPanel` lays the controls out with ipywidgets 8 and calls those functions when Run is pressed
(:meth:`SensitivityPanel.run`, callable without a browser). Moving a control only marks the shown result stale;
nothing is simulated until Run. The scenario is the project's reconstruction (``docs/assumptions.md``), not the
paper's testbed, and every figure says so.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import itertools
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from orchlib.agents.catalogue import agent_names
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.study import experiments, metrics
from orchlib.study.plots import RECONSTRUCTION_NOTE, TIER_COLORS
from orchlib.study.runner import grid, run_sweep, system_for
from orchlib.system.profiles import DATA_DIR, load_network_levels, load_variants
from orchlib.system.scenario import TIERS, AccuracyRequirement, LinkSpec, Scenario, ideal

#: ``SensitivitySettings.network`` value meaning "the ``paper`` preset's own access link" (assumption S5: the
#: ``wifi`` level's magnitudes with the time course of a measured 3G bus trace).
PAPER_NETWORK = "paper"

#: the scenario name of every widget run (the cache key covers all settings, so one name is enough).
SCENARIO_NAME = "sensitivity_widget"

#: requests per agent of a full-size run: the sensitivity sweeps' size (figure 4), about 3 s for three agents.
DEFAULT_N_REQUESTS = experiments.FULL.sweep_requests
#: requests per agent in quick mode (notebook tests, ``ORCHLIB_QUICK=1``).
QUICK_N_REQUESTS = experiments.QUICK.sweep_requests


# ----------------------------------------------------------------------------------------------------------
# What the network control offers


@functools.cache
def _paper() -> Scenario:
    # The panel varies the full-information world's factors (the ``paper`` preset before issue 12, now
    # ``ideal``), where each control means exactly what it says; the grounded ``paper`` preset shares every
    # default the panel reads (users, links, requirement classes, worker counts).
    return ideal()


@functools.cache
def _trace_index() -> pd.DataFrame:
    """``data/traces/index.csv``: one row per shipped trace (file, kind, median_mbps, ...)."""
    return pd.read_csv(DATA_DIR / "traces" / "index.csv", comment="#")


def access_levels() -> tuple[str, ...]:
    """Named steady levels of ``data/network/levels.csv`` usable as the access link (all but the preset's WAN)."""
    wan = _paper().wan.level
    return tuple(name for name in load_network_levels() if name != wan)


def trace_names() -> tuple[str, ...]:
    """File names of the measured throughput traces shipped in ``data/traces`` (from its ``index.csv``)."""
    return tuple(_trace_index()["file"])


def network_names() -> tuple[str, ...]:
    """Every valid ``SensitivitySettings.network``: :data:`PAPER_NETWORK`, the access levels, the traces."""
    return (PAPER_NETWORK, *access_levels(), *trace_names())


def trace_level(trace: str) -> str:
    """The named level of a trace's kind (``3g_bus`` -> ``3g``, ``broadband_fcc`` -> ``broadband_fcc``).

    Raises:
        ValueError: unknown trace, or no level matches its kind.
    """
    index = _trace_index().set_index("file")
    if trace not in index.index:
        raise ValueError(f"unknown trace {trace!r}; shipped traces: {list(index.index)}")
    kind = str(index.loc[trace, "kind"])
    for name in access_levels():
        if kind == name or kind.startswith(f"{name}_"):
            return name
    raise ValueError(f"trace {trace!r} has kind {kind!r}, which matches no level in {access_levels()}")


def default_rtt_ms(network: str) -> float:
    """The RTT that goes with a network choice, ms.

    The preset's access RTT for :data:`PAPER_NETWORK`; the level's RTT for a level; for a trace, the RTT of
    the level of its kind (``levels.csv`` gives 3G and FCC traces Pensieve's 80 ms; the traces carry none).

    Raises:
        ValueError: ``network`` is not one of :func:`network_names`.
    """
    if network == PAPER_NETWORK:
        return float(_paper().access.rtt_ms)
    levels = load_network_levels()
    if network in levels:
        return float(levels[network].rtt_ms)
    if network in trace_names():
        return float(levels[trace_level(network)].rtt_ms)
    raise ValueError(f"unknown network {network!r}; valid: {list(network_names())}")


def network_label(network: str) -> str:
    """A short human label for a network choice (the dropdown's text)."""
    if network == PAPER_NETWORK:
        access = _paper().access
        return f"paper preset (S5): {access.level} magnitudes, time course of a 3G bus trace"
    levels = load_network_levels()
    if network in levels:
        level = levels[network]
        return f"{network}: steady {level.uplink_mbps:g} up / {level.downlink_mbps:g} down Mbit/s"
    row = _trace_index().set_index("file").loc[network]
    return f"trace {row['kind']} (as measured, median {row['median_mbps']:.2f} Mbit/s): {network}"


def best_top1_pct(variants: str | None = None) -> float:
    """Top-1 accuracy (%) of the best variant of the preset's model table: what tolerances count down from."""
    return float(load_variants(variants or _paper().variants).column("top1_pct").max())


def _paper_mean_tolerance_pp() -> float:
    """The mean tolerance of the ``paper`` preset's requirement classes (S8), in percentage points."""
    accuracy = _paper().accuracy
    mean_requirement = sum(
        level * p for level, p in zip(accuracy.levels_pct, accuracy.probabilities, strict=True)
    )
    return round(best_top1_pct() - mean_requirement, 6)


# ----------------------------------------------------------------------------------------------------------
# Settings


def _fail(name: str, valid: str, value: Any) -> None:
    raise ValueError(f"SensitivitySettings.{name} must be {valid}, got {value!r}")


def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        _fail(name, f"an integer >= {low}", value)
    return int(value)


def _number_in(name: str, value: Any, low: float, high: float) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.integer | np.floating)
        and math.isfinite(value)
        and low <= value <= high
    )
    if not ok:
        _fail(name, f"a finite number in [{low:g}, {high:g}]", value)
    return float(value)


@dataclass(frozen=True)
class SensitivitySettings:
    """What the sensitivity panel's controls say. Defaults come from the ``paper`` preset (docs/assumptions.md).

    Raises:
        ValueError: a field out of range or of the wrong type; the message names the field
            (``SensitivitySettings.<field>``) and what is valid.
    """

    #: access link: :data:`PAPER_NETWORK` (the preset's, S5), a level of ``data/network/levels.csv`` (steady at
    #: its rates), or a trace file of ``data/traces`` (replayed as measured, both directions).
    network: str = PAPER_NETWORK
    #: access-link round-trip propagation time, ms; None: the network's own (:func:`default_rtt_ms`).
    rtt_ms: float | None = None
    #: number of users sharing the access link and the edge server.
    n_users: int = field(default_factory=lambda: _paper().n_users)
    #: accuracy requirement as a TOLERANCE: every request accepts this many percentage points of ImageNet
    #: top-1 below the best variant (70.9 %), e.g. 1.0 -> at least 69.9 %. Default: the mean of the preset's
    #: equally likely classes (S8: 1, 3, 6, 10 pp -> 5 pp).
    tolerance_pp: float = field(default_factory=_paper_mean_tolerance_pp)
    #: parallel inference workers of the edge server.
    edge_workers: int = field(default_factory=lambda: _paper().edge.n_workers)
    #: parallel inference workers of the cloud server.
    cloud_workers: int = field(default_factory=lambda: _paper().cloud.n_workers)
    #: the orchestrator studied (a name of ``orchlib.agents.catalogue.agent_names()``). Default: the hybrid, the
    #: learner that is useful within the panel's request budget (Q-learning spends most of a short run
    #: exploring; the status line shows each run's distance from the oracle).
    agent: str = "hybrid"
    #: requests each agent serves.
    n_requests: int = DEFAULT_N_REQUESTS
    #: base seed; every agent gets the same stream (common random numbers: the same requests).
    seed: int = experiments.FULL.seed

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or self.network not in network_names():
            _fail("network", f"one of {list(network_names())}", self.network)
        rtt_ms = default_rtt_ms(self.network) if self.rtt_ms is None else self.rtt_ms
        object.__setattr__(self, "rtt_ms", _number_in("rtt_ms", rtt_ms, 0.0, math.inf))
        object.__setattr__(self, "n_users", _int_at_least("n_users", self.n_users, 1))
        object.__setattr__(self, "tolerance_pp", _number_in("tolerance_pp", self.tolerance_pp, 0.0, 100.0))
        object.__setattr__(self, "edge_workers", _int_at_least("edge_workers", self.edge_workers, 1))
        object.__setattr__(self, "cloud_workers", _int_at_least("cloud_workers", self.cloud_workers, 1))
        if not isinstance(self.agent, str) or self.agent not in agent_names():
            _fail("agent", f"one of {list(agent_names())}", self.agent)
        object.__setattr__(self, "n_requests", _int_at_least("n_requests", self.n_requests, 1))
        object.__setattr__(self, "seed", _int_at_least("seed", self.seed, 0))

    def replace(self, **changes: Any) -> SensitivitySettings:
        """``dataclasses.replace`` (for chaining)."""
        return dataclasses.replace(self, **changes)

    def describe(self, run: bool = True) -> str:
        """One line naming the settings (figure titles; the panel's status line leaves out the run size)."""
        network = "paper access (S5)" if self.network == PAPER_NETWORK else self.network
        text = (
            f"{network}, RTT {self.rtt_ms:g} ms, {self.n_users} users, tolerance {self.tolerance_pp:g} pp, "
            f"workers edge {self.edge_workers} / cloud {self.cloud_workers}, agent {self.agent}"
        )
        return f"{text}, {self.n_requests} requests, seed {self.seed}" if run else text


def default_settings(quick: bool = False) -> SensitivitySettings:
    """The preset's settings at full size, or at the quick size (:data:`QUICK_N_REQUESTS`) for tests."""
    return SensitivitySettings(n_requests=QUICK_N_REQUESTS if quick else DEFAULT_N_REQUESTS)


def scenario_from_settings(settings: SensitivitySettings) -> Scenario:
    """The ``paper`` preset with the settings applied.

    Access link: :data:`PAPER_NETWORK` keeps the preset's (S5); a level gives a steady link at its rates; a
    trace is replayed as measured (its Mbit/s on both directions, assumption 7). The RTT is
    ``settings.rtt_ms`` in every case. Every request gets the same requirement, ``tolerance_pp`` below the
    best variant (as in the sensitivity and trade-off sweeps, figures 4 and 6).

    Raises:
        TypeError: ``settings`` is not a :class:`SensitivitySettings`.
    """
    if not isinstance(settings, SensitivitySettings):
        raise TypeError(f"settings must be a SensitivitySettings, got {type(settings).__name__}")
    base = _paper()
    if settings.network == PAPER_NETWORK:
        access = dataclasses.replace(base.access, rtt_ms=settings.rtt_ms)
    elif settings.network in trace_names():
        # The level's rates are only documentation here: an un-rescaled trace sets the rate itself.
        access = LinkSpec.from_level(
            trace_level(settings.network), trace=settings.network, trace_rescale=False, rtt_ms=settings.rtt_ms
        )
    else:
        access = LinkSpec.from_level(settings.network, rtt_ms=settings.rtt_ms)
    return base.replace(
        name=SCENARIO_NAME,
        n_users=settings.n_users,
        edge=dataclasses.replace(base.edge, n_workers=settings.edge_workers),
        cloud=dataclasses.replace(base.cloud, n_workers=settings.cloud_workers),
        access=access,
        accuracy=AccuracyRequirement.from_tolerances((settings.tolerance_pp,), (1.0,), base.variants),
        n_requests=settings.n_requests,
    )


# ----------------------------------------------------------------------------------------------------------
# Simulation and what is drawn from it


def compared_agents(settings: SensitivitySettings) -> tuple[str, ...]:
    """The agents one Run simulates: the chosen one first, then the stand-in and the oracle (no duplicates)."""
    return tuple(dict.fromkeys((settings.agent, experiments.SOTA, "oracle")))


def _bandwidth_bands(edges_mbps: tuple[float, ...]) -> list[str]:
    bounds = [f"{e:g}" for e in edges_mbps]
    inner = [f"{low}-{high} Mbit/s" for low, high in itertools.pairwise(bounds)]
    return [f"< {bounds[0]} Mbit/s", *inner, f">= {bounds[-1]} Mbit/s"]


def simulate(settings: SensitivitySettings, out_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Run :func:`compared_agents` on :func:`scenario_from_settings`, one replicate each, on the same seed.

    Args:
        settings: the scenario, the chosen agent, the number of requests and the seed.
        out_dir: cache folder of :func:`orchlib.study.runner.run_sweep` (a repeated call reads the runs back);
            None: compute in a temporary folder that is removed afterwards.

    Returns:
        The runner's per-request table (``orchlib.study.runner.REQUEST_COLUMNS``; ``agent`` is categorical with the
        chosen agent first) plus ``bandwidth_level`` (the access-bandwidth level of the request's discrete
        state, -1 for agents on the Box observation, which record none) and ``bandwidth_band`` (that level as
        an ordered categorical label with the env's edges, NaN where the level is -1).

    Raises:
        TypeError: ``settings`` is not a :class:`SensitivitySettings`.
        ValueError, DataError: from building the scenario or the agents.
    """
    scenario = scenario_from_settings(settings)
    specs = grid([scenario], list(compared_agents(settings)), n_replicates=1, seed=settings.seed)
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="orchlib-widget-") as tmp:
            requests = run_sweep(specs, tmp, progress=False).requests
    else:
        requests = run_sweep(specs, out_dir, progress=False).requests
    env = OrchestrationEnv(system_for(scenario)[0])
    states = requests["state"].to_numpy()
    level_of = {int(s): env.decode(int(s))[0] for s in np.unique(states[states >= 0])}
    levels = np.array([level_of.get(int(s), -1) for s in states], dtype=np.int64)
    bands = _bandwidth_bands(env.bandwidth_edges_mbps)
    requests["bandwidth_level"] = levels
    requests["bandwidth_band"] = pd.Categorical.from_codes(levels, categories=bands, ordered=True)
    return requests


def distance_from_oracle(requests: pd.DataFrame, agent: str) -> float:
    """Mean response time of ``agent`` over its run divided by the oracle's on the same requests (1 = optimum).

    Raises:
        ValueError: no requests of ``agent`` with oracle latencies.
    """
    mine = requests[requests["agent"].astype(str) == agent]
    oracle = mine["oracle_latency_ms"].sum()
    if mine.empty or not oracle > 0:
        raise ValueError(f"no requests of agent {agent!r} with oracle latencies")
    return float(mine["latency_ms"].sum() / oracle)


def decision_map_table(requests: pd.DataFrame, from_fraction: float = 0.5) -> pd.DataFrame:
    """Per agent and access-bandwidth level, the most frequent (tier, variant) late in the run.

    The widget's form of :func:`orchlib.study.experiments.decision_table`: one requirement class, so cells are
    bandwidth levels only (read from :func:`simulate`'s ``bandwidth_level``), labelled with their bands.

    Args:
        requests: from :func:`simulate` (needs ``agent``, ``request``, ``bandwidth_level``,
            ``bandwidth_band``, ``tier``, ``variant``).
        from_fraction: keep requests with ``request >= from_fraction * (last request index)`` of each run.

    Returns:
        Columns ``agent``, ``bandwidth_level``, ``bandwidth_band``, ``tier``, ``variant``, ``n`` (requests of
        the most frequent choice), ``n_cell`` (requests in the cell), ``share`` (``n / n_cell``). Agents
        without discrete states are absent.

    Raises:
        ValueError: missing columns or ``from_fraction`` outside [0, 1).
    """
    needed = ["agent", "request", "bandwidth_level", "bandwidth_band", "tier", "variant"]
    missing = [c for c in needed if c not in requests.columns]
    if missing:
        raise ValueError(f"requests lacks column(s) {missing}; pass the table of orchlib.ui.widgets.simulate")
    if not (isinstance(from_fraction, int | float) and 0 <= from_fraction < 1):
        raise ValueError(f"from_fraction must be a number in [0, 1), got {from_fraction!r}")
    last = requests.groupby("agent", observed=True)["request"].transform("max")
    late = requests[(requests["request"] >= from_fraction * last) & (requests["bandwidth_level"] >= 0)]
    best = experiments.most_frequent_choice(late, ["agent", "bandwidth_level"])
    best = best.sort_values(["agent", "bandwidth_level"]).reset_index(drop=True)
    bands = requests["bandwidth_band"].cat.categories
    best.insert(2, "bandwidth_band", pd.Categorical.from_codes(best["bandwidth_level"], bands, ordered=True))
    return best[["agent", "bandwidth_level", "bandwidth_band", "tier", "variant", "n", "n_cell", "share"]]


def _short_variant(name: str) -> str:
    return name.replace("mobilenet_v1_", "").replace("_quant", " int8")


def summary_figure(requests: pd.DataFrame, settings: SensitivitySettings | None = None) -> Figure:
    """Response time and accuracy per agent, the chosen agent's learning curve and the decision maps.

    The chosen agent is the first category of ``requests["agent"]`` (as :func:`simulate` orders it).

    Args:
        requests: from :func:`simulate`.
        settings: named in the title when given.

    Raises:
        ValueError: an empty table or missing columns.
    """
    if requests.empty:
        raise ValueError("requests is empty; pass the table of orchlib.ui.widgets.simulate")
    runs = metrics.summarize_runs(requests)
    agents = [str(a) for a in requests["agent"].cat.categories if (requests["agent"] == a).any()]
    chosen = agents[0]
    runs = runs.assign(agent=runs["agent"].astype(str)).set_index("agent").loc[agents]
    n_requests = int(requests.groupby("agent", observed=True).size().min())
    window = max(1, n_requests // 20)  # 20 points per curve, whatever the run length
    curves = metrics.learning_curve(requests, window=window)
    decisions = decision_map_table(requests)
    colors = ["#C44E52" if a == chosen else "0.55" for a in agents]

    fig, axes = plt.subplots(
        2,
        2,
        figsize=(12, 5.9),
        constrained_layout=True,
        gridspec_kw={"width_ratios": (1, 1.25), "height_ratios": (1, 1)},
    )
    ax_time, ax_curve = axes[0]
    ax_accuracy, ax_map = axes[1]
    y = np.arange(len(agents))

    ax_time.barh(y, runs["mean_latency_ms"], color=colors)
    ax_time.plot(runs["p95_latency_ms"], y, "k|", markersize=12, label="p95")
    for i, value in enumerate(runs["mean_latency_ms"]):
        ax_time.annotate(f" {value:.1f}", (value, i), va="center", fontsize=8)
    ax_time.set_yticks(y, agents)
    ax_time.invert_yaxis()
    ax_time.set_xlabel("response time (ms): bar = mean, | = p95")
    ax_time.set_title("(a) response time per agent")

    ax_accuracy.barh(y, runs["mean_accuracy_pct"], color=colors)
    for i, (value, violations) in enumerate(
        zip(runs["mean_accuracy_pct"], runs["violation_rate"], strict=True)
    ):
        ax_accuracy.annotate(
            f" {value:.1f}% ({100 * violations:.0f}% below req.)", (value, i), va="center", fontsize=8
        )
    for requirement in np.unique(requests["requirement_pct"]):
        ax_accuracy.axvline(requirement, color="k", ls="--", lw=1)
    low = min(float(requests["requirement_pct"].min()), float(runs["mean_accuracy_pct"].min()))
    high = max(float(requests["requirement_pct"].max()), float(runs["mean_accuracy_pct"].max()))
    ax_accuracy.set_xlim(max(0.0, low - 3.0), high + 12.0)  # room on the right for the labels
    ax_accuracy.set_yticks(y, agents)
    ax_accuracy.invert_yaxis()
    ax_accuracy.set_xlabel("delivered top-1 accuracy (%), dashed = requirement")
    ax_accuracy.set_title("(b) accuracy per agent")

    for agent in agents:
        part = curves[curves["agent"].astype(str) == agent]
        ax_curve.plot(
            part["request_end"],
            part["mean_latency_ms"],
            marker="o" if agent == chosen else None,
            markersize=3,
            lw=2.2 if agent == chosen else 1.2,
            color="#C44E52" if agent == chosen else None,
            ls="--" if agent == "oracle" else "-",
            label=agent,
        )
    ax_curve.set_ylim(bottom=0)
    ax_curve.set_xlabel("requests served")
    ax_curve.set_ylabel(f"mean response time (ms),\nper {window} requests")
    ax_curve.set_title(f"(c) learning curve of {chosen} against the oracle")
    ax_curve.legend(fontsize=8)

    _draw_decision_map(ax_map, decisions, list(requests["bandwidth_band"].cat.categories), agents)

    title = settings.describe() if settings is not None else f"{requests['scenario'].iloc[0]}"
    fig.suptitle(f"Sensitivity ({title})", fontsize=10)
    fig.text(0.01, -0.01, RECONSTRUCTION_NOTE, fontsize=7, color="0.4", ha="left", va="top")
    return fig


def _draw_decision_map(ax: plt.Axes, decisions: pd.DataFrame, bands: list[str], agents: list[str]) -> None:
    """Rows = agents with discrete states, columns = bandwidth bands, colour = tier, text = variant and share."""
    shown = [a for a in agents if a in set(decisions["agent"].astype(str))]
    grid_codes = np.full((max(1, len(shown)), len(bands)), np.nan)
    for i, agent in enumerate(shown):
        for r in decisions[decisions["agent"].astype(str) == agent].itertuples():
            grid_codes[i, r.bandwidth_level] = TIERS.index(r.tier)
            ax.text(
                r.bandwidth_level,
                i,
                f"{r.tier} {_short_variant(r.variant)}\n{100 * r.share:.0f}% of {r.n_cell}",
                ha="center",
                va="center",
                fontsize=7,
            )
    cmap = ListedColormap([TIER_COLORS[t] for t in TIERS]).with_extremes(bad="0.92")
    ax.imshow(np.ma.masked_invalid(grid_codes), cmap=cmap, vmin=-0.5, vmax=2.5, alpha=0.55, aspect="auto")
    ax.set_xticks(range(len(bands)), bands, fontsize=8)
    ax.set_yticks(range(len(shown)), shown)
    ax.set_xlabel("access bandwidth level of the state (grey: not visited)")
    ax.legend(
        handles=[Patch(color=TIER_COLORS[t], alpha=0.55, label=t) for t in TIERS],
        title="tier",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    missing = [a for a in agents if a not in shown]
    note = f"; no discrete state: {', '.join(missing)}" if missing else ""
    ax.set_title(
        f"(d) most frequent (tier, variant) in the second half: share of the cell's requests{note}",
        fontsize=10,
    )


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes (what the panel shows)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def png_outputs(fig: Figure, text: str) -> tuple[dict[str, Any], ...]:
    """``fig`` as the outputs of an ``ipywidgets.Output``: one PNG display, ``text`` its plain-text form.

    The figure is closed (drawn into the output as PNG, an open pyplot figure would only leak). Setting
    ``Output.outputs`` directly rather than capturing ``display()`` works with or without a kernel (tests call
    the panels' ``run()`` without one), and the image is replaced in one message, not cleared then drawn.
    """
    try:
        png = figure_png(fig)
    finally:
        plt.close(fig)
    data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}
    return ({"output_type": "display_data", "data": data, "metadata": {}},)


# ----------------------------------------------------------------------------------------------------------
# The panel

_TOLERANCE_STEP_PP = 0.5  # the finest spacing of experiments.TOLERANCES_PP


def _slider_limits() -> dict[str, float]:
    """Upper ends of the sliders: UI choices, not model assumptions (a larger setting extends its slider).

    Twice the slowest access level's RTT; the largest user count of the sensitivity sweep (figure 4); the
    loosest tolerance of the trade-off sweep (figure 6); twice the preset's cloud workers.
    """
    levels = load_network_levels()
    return {
        "rtt_ms": 2 * max(levels[name].rtt_ms for name in access_levels()),
        "n_users": max(experiments.SENSITIVITY_USERS),
        "tolerance_pp": max(experiments.TOLERANCES_PP),
        "workers": 2 * _paper().cloud.n_workers,
    }


class RunPanel:
    """What every panel with a Run button shares: the button's callback and how the panel displays.

    A subclass sets ``widget`` (its laid-out box) and defines ``run()``, which reports its own errors in the
    panel's status line before raising them."""

    widget: widgets.Widget

    def run(self) -> Any:
        raise NotImplementedError

    def _on_run_clicked(self, _button: widgets.Button) -> None:
        # A callback's exception would only reach the kernel log; run() has put it in the status line.
        try:
            self.run()
        except Exception:  # shown in the status line by run(); there is nowhere else to report it
            return

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class SensitivityPanel(RunPanel):
    """ipywidgets 8 controls for :class:`SensitivitySettings`, a Run button, a status line and a fixed-height output.

    Changing a control only marks the shown result stale (status ``"stale: ..."``); :meth:`run` (the Run
    button) simulates with the controls' settings and redraws the output (status ``"fresh: ..."``). Choosing
    a network also moves the RTT slider to that network's RTT (:func:`default_rtt_ms`).

    Args:
        settings: the controls' initial values, and the fixed ``n_requests`` and ``seed`` of every run
            (default: :class:`SensitivitySettings` defaults).
        out_dir: cache folder passed to :func:`simulate` (None: no cache).
        output_height: CSS height of the output area (fixed, so the page does not jump when it redraws).

    Attributes:
        widget: the laid-out ``ipywidgets.VBox`` (displaying the panel displays it).
        results: the per-request table of the last run (None before the first).
        shown_settings: the settings of the figure in the output (None before the first run).
        n_runs: completed runs.
    """

    def __init__(
        self,
        settings: SensitivitySettings | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        output_height: str = "620px",
    ) -> None:
        base = SensitivitySettings() if settings is None else settings
        if not isinstance(base, SensitivitySettings):
            raise TypeError(f"settings must be a SensitivitySettings or None, got {type(base).__name__}")
        self.base_settings = base
        self.out_dir = None if out_dir is None else Path(out_dir)
        limits = _slider_limits()
        wide = {"description_width": "150px"}
        layout = widgets.Layout(width="440px")

        self.network = widgets.Dropdown(
            options=[(network_label(n), n) for n in network_names()],
            value=base.network,
            description="network",
            style=wide,
            layout=widgets.Layout(width="720px"),
        )
        self.rtt_ms = widgets.FloatSlider(
            value=base.rtt_ms,
            min=0.0,
            max=max(limits["rtt_ms"], base.rtt_ms),
            step=1.0,
            description="access RTT (ms)",
            continuous_update=False,
            readout_format=".0f",
            style=wide,
            layout=layout,
        )
        self.n_users = widgets.IntSlider(
            value=base.n_users,
            min=1,
            max=max(int(limits["n_users"]), base.n_users),
            description="users",
            continuous_update=False,
            style=wide,
            layout=layout,
        )
        self.tolerance_pp = widgets.FloatSlider(
            value=base.tolerance_pp,
            min=0.0,
            max=max(limits["tolerance_pp"], base.tolerance_pp),
            step=_TOLERANCE_STEP_PP,
            description=f"tolerance (pp below {best_top1_pct():g}% top-1)",
            continuous_update=False,
            readout_format=".1f",
            style={"description_width": "230px"},
            layout=widgets.Layout(width="520px"),
        )
        self.edge_workers = widgets.IntSlider(
            value=base.edge_workers,
            min=1,
            max=max(int(limits["workers"]), base.edge_workers),
            description="edge workers",
            continuous_update=False,
            style=wide,
            layout=layout,
        )
        self.cloud_workers = widgets.IntSlider(
            value=base.cloud_workers,
            min=1,
            max=max(int(limits["workers"]), base.cloud_workers),
            description="cloud workers",
            continuous_update=False,
            style=wide,
            layout=layout,
        )
        self.agent = widgets.Dropdown(
            options=list(agent_names()), value=base.agent, description="agent", style=wide, layout=layout
        )
        self.run_button = widgets.Button(
            description="Run", button_style="primary", icon="play", tooltip="simulate with these settings"
        )
        self.status = widgets.Label(value="no result yet: press Run")
        self.output = widgets.Output(
            layout=widgets.Layout(height=output_height, overflow="auto", border="1px solid #ddd")
        )
        # DOM classes: stable handles for the browser test and for custom CSS.
        for name in (
            "network",
            "rtt_ms",
            "n_users",
            "tolerance_pp",
            "edge_workers",
            "cloud_workers",
            "agent",
        ):
            getattr(self, name).add_class(f"orchlib-{name.replace('_', '-')}")
        self.run_button.add_class("orchlib-run")
        self.status.add_class("orchlib-status")
        self.output.add_class("orchlib-sensitivity-output")

        self.widget = widgets.VBox(
            [
                self.network,
                widgets.HBox(
                    [
                        widgets.VBox([self.rtt_ms, self.n_users, self.tolerance_pp]),
                        widgets.VBox([self.edge_workers, self.cloud_workers, self.agent]),
                    ]
                ),
                widgets.HBox([self.run_button, self.status]),
                self.output,
            ]
        )
        self.results: pd.DataFrame | None = None
        self.shown_settings: SensitivitySettings | None = None
        self.n_runs = 0

        self.network.observe(self._on_network, names="value")
        for control in self.controls:
            control.observe(self._on_control, names="value")
        self.run_button.on_click(self._on_run_clicked)

    @property
    def controls(self) -> tuple[widgets.ValueWidget, ...]:
        """Every control whose value is a setting."""
        return (
            self.network,
            self.rtt_ms,
            self.n_users,
            self.tolerance_pp,
            self.edge_workers,
            self.cloud_workers,
            self.agent,
        )

    def settings(self) -> SensitivitySettings:
        """The settings the controls show now (``n_requests`` and ``seed`` from the initial settings).

        Raises:
            ValueError: a control holds an invalid value (the message names the field).
        """
        return self.base_settings.replace(
            network=self.network.value,
            rtt_ms=float(self.rtt_ms.value),
            n_users=int(self.n_users.value),
            tolerance_pp=float(self.tolerance_pp.value),
            edge_workers=int(self.edge_workers.value),
            cloud_workers=int(self.cloud_workers.value),
            agent=self.agent.value,
        )

    @property
    def is_stale(self) -> bool:
        """True when the output does not show the controls' current settings (or shows nothing yet)."""
        return self.shown_settings is None or self.settings() != self.shown_settings

    def run(self) -> pd.DataFrame:
        """Simulate the controls' settings, redraw the output, mark the result fresh; return the requests table.

        Raises:
            ValueError, DataError: invalid settings or scenario (the status line shows the message too).
        """
        self.status.value = "running…"
        try:
            settings = self.settings()
            requests = simulate(settings, self.out_dir)
            fig = summary_figure(requests, settings)
        except Exception as exc:
            self.status.value = f"error: {exc}"
            raise
        self.output.outputs = png_outputs(fig, f"<sensitivity figure: {settings.describe()}>")
        self.results = requests
        self.shown_settings = settings
        self.n_runs += 1
        self.status.value = (
            f"fresh: {settings.describe(run=False)}; {self._distance(requests, settings.agent)}"
        )
        return requests

    @staticmethod
    def _distance(requests: pd.DataFrame, agent: str) -> str:
        """The status line's distance of ``agent`` from the oracle over the run."""
        return f"{agent} at {distance_from_oracle(requests, agent):.2f}x the oracle's mean response time"

    def output_png(self) -> bytes | None:
        """The PNG the output shows (None if empty)."""
        for output in reversed(self.output.outputs):
            data = output.get("data", {})
            if "image/png" in data:
                return base64.b64decode(data["image/png"])
        return None

    def _on_control(self, change: Mapping[str, Any]) -> None:
        if self.shown_settings is None:
            return
        try:
            stale = self.is_stale
        except ValueError as exc:
            self.status.value = f"error: {exc}"
            return
        self.status.value = (
            "stale: settings changed since the figure was drawn; press Run"
            if stale
            else f"fresh: {self.shown_settings.describe(run=False)}; "
            f"{self._distance(self.results, self.shown_settings.agent)}"
        )

    def _on_network(self, change: Mapping[str, Any]) -> None:
        self.rtt_ms.max = max(self.rtt_ms.max, default_rtt_ms(change["new"]))
        self.rtt_ms.value = default_rtt_ms(change["new"])
