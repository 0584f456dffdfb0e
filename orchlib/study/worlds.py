"""Where learning pays: the methods on many randomly drawn grounded worlds (issue 24, part 3).

One preset cannot say whether learning pays: on ``paper`` the adaptive agents beat the static greedy rule, on
held-out grounded worlds they do not. This study draws many worlds from stated ranges and measures every
method on each, then asks which world features go with the learners beating the best fixed rule.

* :class:`WorldRanges` -- the ranges worlds are drawn from (frozen, validated; each range and its reason is in
  ``docs/assumptions.md``, W1-W10);
* :func:`draw_world` / :func:`draw_worlds` -- seeded worlds: each a grounded :class:`Scenario` built from
  :func:`orchlib.system.scenario.paper` with :func:`dataclasses.replace`, and its features as numbers;
* :class:`WorldStudy` and :func:`run_world_study` -- the methods x worlds x replicates sweep on the runner's
  batched path (every run of one world plays in one batch), cached like every sweep;
* :func:`world_table` -- the tidy table: per world and method, the mean ratio to the oracle and the rank;
* :func:`learner_comparison`, :func:`feature_effects`, :func:`decision_stumps` -- the analysis of where the
  learners beat the best fixed rule; :func:`summary_lines` -- the section of ``summary.md``.

Ratios. A run's ``latency_ratio_to_oracle`` is the project's ratio (:mod:`orchlib.study.metrics`): its mean
latency over the mean, over the same requests, of the per-request clairvoyant best response time in the state
that run was in. Every request's latency is at least that best, so this ratio is >= 1 for every method, and
exactly 1 for the oracle. ``latency_ratio_to_oracle_run`` divides instead by the oracle *policy's* own run on
the same requests (same world and replicate, common random numbers): the oracle is greedy per request (it
ignores what its choice does to the queues later requests meet), so another policy can beat it on that
measure and the ratio can fall below 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from orchlib.study import metrics
from orchlib.system.profiles import data_dir, load_variants, resolve
from orchlib.system.scenario import (
    AccuracyRequirement,
    BackgroundLoad,
    CoTenant,
    Fleet,
    Scenario,
    Thermal,
    paper,
)

#: the oracle, the fixed rules and the learners of the study (all have a batched form; see :func:`method_kind`).
ORACLE = "oracle"
#: rules that never learn from an outcome: greedy on the profiles and the fixed placements (the runner's
#: fixed-table policies).
FIXED_RULES: tuple[str, ...] = (
    "greedy_profiles",
    "local_most_accurate",
    "edge_most_accurate",
    "cloud_most_accurate",
    "local_fastest",
    "edge_fastest",
    "cloud_fastest",
)
#: methods that learn online from what they measure (the stand-in ``sota_location_only`` among them).
LEARNERS: tuple[str, ...] = ("q_learning", "adaptive_greedy", "hybrid", "sota_location_only")
#: every method of the study.
METHODS: tuple[str, ...] = (ORACLE, *LEARNERS, *FIXED_RULES)


def method_kind(method: str) -> str:
    """``"oracle"``, ``"learner"`` or ``"fixed rule"`` (ValueError for a method not in :data:`METHODS`)."""
    if method == ORACLE:
        return "oracle"
    if method in LEARNERS:
        return "learner"
    if method in FIXED_RULES:
        return "fixed rule"
    raise ValueError(f"unknown method {method!r}; valid methods: {list(METHODS)}")


def shipped_traces() -> tuple[str, ...]:
    """File names of the measured throughput traces in ``data/traces`` (its ``index.csv``)."""
    return tuple(pd.read_csv(data_dir() / "traces" / "index.csv", comment="#")["file"])


def _paper_fleet_classes() -> tuple[str, ...]:
    fleet = paper().fleet
    assert fleet is not None  # the grounded preset has one (F1)
    return fleet.classes


# ----------------------------------------------------------------------------------------------------------
# The ranges


def _fail(name: str, valid: str, value: Any) -> None:
    raise ValueError(f"WorldRanges.{name} must be {valid}, got {value!r}")


def _check_range(name: str, value: Any, low: float, high: float, integer: bool = False, open_high=False):
    """``value`` is a pair ``(lo, hi)`` with ``low <= lo <= hi <= high`` (``< high`` with ``open_high``)."""
    kind = "integers" if integer else "numbers"
    bound = f"< {high:g}" if open_high else f"<= {high:g}"
    valid = f"a pair (low, high) of {kind} with {low:g} <= low <= high {bound}"
    if not isinstance(value, tuple) or len(value) != 2:
        _fail(name, valid, value)
    for x in value:
        ok = not isinstance(x, bool) and (
            isinstance(x, int) if integer else isinstance(x, int | float) and math.isfinite(x)
        )
        if not ok:
            _fail(name, valid, value)
    lo, hi = value
    if not (low <= lo <= hi and (hi < high if open_high else hi <= high)):
        _fail(name, valid, value)


@dataclass(frozen=True)
class WorldRanges:
    """The ranges random grounded worlds are drawn from (reasons: ``docs/assumptions.md`` W1-W10).

    Every pair ``(low, high)`` is inclusive and drawn uniformly, except ``uplink_mbps`` (log-uniform). A
    range of one value (``low == high``) fixes that factor. Everything not named here is the ``paper``
    preset's (the edge's one worker, the accelerated cloud, JPEG payloads, 2 requests/s per user, the time
    scales of H1-H3, the bandwidth estimate of H4).

    Raises:
        ValueError: a range that is not a pair, is reversed, or leaves its valid domain (the message names the
            field and what is valid); an unknown device class or trace.
    """

    #: users sharing the access link and the edge (W1).
    n_users: tuple[int, int] = (2, 16)
    #: end-device classes a fleet is drawn from (profile names; W2).
    device_classes: tuple[str, ...] = field(default_factory=_paper_fleet_classes)
    #: how many of them a world's fleet holds (W2); the classes are drawn without replacement and their shares
    #: from a flat Dirichlet.
    n_device_classes: tuple[int, int] = (1, 5)
    #: measured throughput traces an access link replays, file names in ``data/traces`` (W3).
    traces: tuple[str, ...] = field(default_factory=shipped_traces)
    #: median access uplink the trace is rescaled to, Mbit/s, log-uniform (W3); downlink keeps the ``paper``
    #: link's downlink/uplink ratio.
    uplink_mbps: tuple[float, float] = (0.5, 50.0)
    #: access round-trip time, ms (W4).
    rtt_ms: tuple[float, float] = (20.0, 80.0)
    #: thermal throttling's slowdown at full heat (H1's ``max_slowdown``; 1 = none; W5).
    thermal_max_slowdown: tuple[float, float] = (1.0, 2.5)
    #: background load's slowdown on phones while busy (H2's ``slowdown``; W6).
    background_slowdown: tuple[float, float] = (1.0, 3.0)
    #: share of time a phone's background app is busy (H2 keeps its 10-s busy periods; W6).
    background_busy_share: tuple[float, float] = (0.0, 0.5)
    #: share of time co-tenant jobs occupy the edge's worker (H3 keeps its 0.1-s jobs; 0 = none; W7).
    cotenant_busy_share: tuple[float, float] = (0.0, 0.6)
    #: accuracy tolerances (pp below the best variant's top-1) a requirement class can take (W8).
    tolerances_pp: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 6.0, 10.0)
    #: how many requirement classes a world has (W8); classes drawn without replacement, shares flat Dirichlet.
    n_requirement_classes: tuple[int, int] = (1, 4)

    def __post_init__(self) -> None:
        for name in ("device_classes", "traces", "tolerances_pp"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
                _fail(name, "a non-empty tuple", value)
            object.__setattr__(self, name, tuple(value))
            if len(set(self.__dict__[name])) != len(value):
                _fail(name, "a tuple without repeats", value)
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, list):  # hand-written settings: lists for pairs
                object.__setattr__(self, name, tuple(value))
        _check_range("n_users", self.n_users, 1, math.inf, integer=True)
        _check_range("n_device_classes", self.n_device_classes, 1, len(self.device_classes), integer=True)
        _check_range("uplink_mbps", self.uplink_mbps, 1e-3, math.inf)
        _check_range("rtt_ms", self.rtt_ms, 0, math.inf)
        _check_range("thermal_max_slowdown", self.thermal_max_slowdown, 1, math.inf)
        _check_range("background_slowdown", self.background_slowdown, 1, math.inf)
        _check_range("background_busy_share", self.background_busy_share, 0, 1, open_high=True)
        _check_range("cotenant_busy_share", self.cotenant_busy_share, 0, 1, open_high=True)
        _check_range(
            "n_requirement_classes", self.n_requirement_classes, 1, len(self.tolerances_pp), integer=True
        )
        if not all(isinstance(t, int | float) and 0 <= t <= 100 for t in self.tolerances_pp):
            _fail("tolerances_pp", "numbers in [0, 100] (pp below the best variant)", self.tolerances_pp)
        for name, subdir, suffix in (("device_classes", "profiles", ".csv"), ("traces", "traces", "")):
            for item in getattr(self, name):
                try:
                    resolve(item, subdir, suffix=suffix)
                except (FileNotFoundError, ValueError) as error:
                    raise ValueError(
                        f"WorldRanges.{name}: {item!r} is not in data/{subdir} ({error})"
                    ) from None

    def replace(self, **changes: Any) -> WorldRanges:
        """``dataclasses.replace`` (for chaining)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (saved next to the study's tables)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
# Drawing worlds

#: H2's busy period and H3's job length are kept; the busy share sets the quiet periods.
_BACKGROUND_ON_S = BackgroundLoad().mean_on_s
_COTENANT_ON_S = CoTenant().mean_on_s

#: columns of :func:`draw_worlds`' feature table, after ``world``; the numeric ones are the analysis' features.
FEATURES: tuple[str, ...] = (
    "n_users",
    "n_device_classes",
    "phone_share",
    "slow_device_share",
    "uplink_mbps",
    "rtt_ms",
    "trace_p90_p10_ratio",
    "thermal_max_slowdown",
    "background_slowdown",
    "background_busy_share",
    "cotenant_busy_share",
    "mean_tolerance_pp",
    "min_tolerance_pp",
)


def _uniform(rng: np.random.Generator, pair: tuple[float, float]) -> float:
    return float(rng.uniform(pair[0], pair[1])) if pair[0] < pair[1] else float(pair[0])


def _integer(rng: np.random.Generator, pair: tuple[int, int]) -> int:
    return int(rng.integers(pair[0], pair[1], endpoint=True))


def _mix(rng: np.random.Generator, options: Sequence, n: int) -> tuple[tuple, tuple[float, ...]]:
    """``n`` of ``options`` without replacement (in the options' order) and flat-Dirichlet shares of them."""
    chosen = np.sort(rng.choice(len(options), size=n, replace=False))
    shares = rng.dirichlet(np.ones(n)) if n > 1 else np.ones(1)
    shares = shares / shares.sum()
    return tuple(options[i] for i in chosen), tuple(float(s) for s in shares)


def _off_s(on_s: float, busy_share: float) -> float:
    """Mean quiet period that makes an on/off process with mean busy period ``on_s`` busy ``busy_share``."""
    return on_s * (1 - busy_share) / busy_share


def draw_world(
    ranges: WorldRanges, rng: np.random.Generator | int | None, name: str = "world", n_requests: int = 2000
) -> tuple[Scenario, dict[str, Any]]:
    """One random grounded world: ``paper()`` with the factors of ``ranges`` drawn, and its features.

    Returns:
        ``(scenario, features)``: the scenario (named ``name``, ``n_requests`` per run) and a dict of the drawn
        values (the :data:`FEATURES`, plus ``trace`` and ``fleet``/``tolerances`` as text).
    """
    if not isinstance(ranges, WorldRanges):
        raise TypeError(f"ranges must be a WorldRanges, got {type(ranges).__name__}")
    rng = np.random.default_rng(rng)
    base = paper()
    n_users = _integer(rng, ranges.n_users)
    classes, class_shares = _mix(rng, ranges.device_classes, _integer(rng, ranges.n_device_classes))
    trace = ranges.traces[int(rng.integers(len(ranges.traces)))]
    low, high = ranges.uplink_mbps
    uplink = float(math.exp(rng.uniform(math.log(low), math.log(high)))) if low < high else float(low)
    rtt = _uniform(rng, ranges.rtt_ms)
    thermal = _uniform(rng, ranges.thermal_max_slowdown)
    background = _uniform(rng, ranges.background_slowdown)
    background_busy = _uniform(rng, ranges.background_busy_share)
    cotenant_busy = _uniform(rng, ranges.cotenant_busy_share)
    tolerances, tolerance_shares = _mix(
        rng, sorted(ranges.tolerances_pp), _integer(rng, ranges.n_requirement_classes)
    )
    ratio = base.access.downlink_mbps / base.access.uplink_mbps
    access = dataclasses.replace(
        base.access,
        uplink_mbps=uplink,
        downlink_mbps=uplink * ratio,
        rtt_ms=rtt,
        trace=trace,
        trace_rescale=True,
        level=None,
    )
    scenario = dataclasses.replace(
        base,
        name=name,
        n_users=n_users,
        n_requests=n_requests,
        fleet=Fleet(classes, class_shares),
        access=access,
        thermal=Thermal(max_slowdown=thermal),
        background=BackgroundLoad(
            slowdown=background,
            mean_on_s=_BACKGROUND_ON_S,
            mean_off_s=_off_s(_BACKGROUND_ON_S, background_busy),
        )
        if background_busy > 0
        else None,
        cotenant=CoTenant(mean_on_s=_COTENANT_ON_S, mean_off_s=_off_s(_COTENANT_ON_S, cotenant_busy))
        if cotenant_busy > 0
        else None,
        accuracy=AccuracyRequirement.from_tolerances(tolerances, tolerance_shares, variants=base.variants),
    )
    return scenario, world_features(scenario)


def _trace_index() -> pd.DataFrame:
    return pd.read_csv(data_dir() / "traces" / "index.csv", comment="#").set_index("file")


def _busy_share(on_s: float, off_s: float) -> float:
    return on_s / (on_s + off_s)


def world_features(scenario: Scenario) -> dict[str, Any]:
    """The study's features of any scenario (:data:`FEATURES`, plus ``trace``, ``trace_kind``, ``fleet`` and
    ``tolerances_pp`` as text): a condition that is off counts as slowdown 1 and busy share 0; a steady link
    has trace variability 1; tolerances are measured below the best variant of the scenario's table."""
    fleet = scenario.fleet or Fleet((scenario.end.profile,), (1.0,))
    pairs = list(zip(fleet.classes, fleet.probabilities, strict=True))
    background, cotenant = scenario.background, scenario.cotenant
    phones = set((background or BackgroundLoad()).applies_to)
    best = float(load_variants(scenario.variants).column("top1_pct").max())
    tolerances = np.round(best - np.array(scenario.accuracy.levels_pct), 6)
    shares = np.array(scenario.accuracy.probabilities)
    trace = scenario.access.trace
    if trace is not None and trace in _trace_index().index:
        row = _trace_index().loc[trace]
        variability, kind = float(row["p90_mbps"] / row["p10_mbps"]), str(row["kind"])
    else:
        variability, kind = 1.0, "steady" if trace is None else "custom"
    return {
        "n_users": scenario.n_users,
        "n_device_classes": len(fleet.classes),
        "phone_share": float(sum(share for c, share in pairs if c in phones)),
        "slow_device_share": float(sum(share for c, share in pairs if c == "rpi4_tflite115")),
        "uplink_mbps": scenario.access.uplink_mbps,
        "rtt_ms": scenario.access.rtt_ms,
        "trace_p90_p10_ratio": variability,
        "thermal_max_slowdown": scenario.thermal.max_slowdown if scenario.thermal else 1.0,
        "background_slowdown": background.slowdown if background else 1.0,
        "background_busy_share": _busy_share(background.mean_on_s, background.mean_off_s)
        if background
        else 0.0,
        "cotenant_busy_share": _busy_share(cotenant.mean_on_s, cotenant.mean_off_s) if cotenant else 0.0,
        "mean_tolerance_pp": float(np.dot(tolerances, shares)),
        "min_tolerance_pp": float(tolerances.min()),
        "trace": trace or "steady",
        "trace_kind": kind,
        "fleet": " ".join(f"{c}:{share:.2f}" for c, share in pairs),
        "tolerances_pp": " ".join(
            f"{t:g}:{share:.2f}" for t, share in sorted(zip(tolerances, shares, strict=True))
        ),
    }


def draw_worlds(
    ranges: WorldRanges, n_worlds: int, rng: np.random.Generator | int | None = 0, n_requests: int = 2000
) -> tuple[list[Scenario], pd.DataFrame]:
    """``n_worlds`` independent worlds (:func:`draw_world`), named ``world_000``, ``world_001``, ...

    World ``i`` draws from the ``i``-th child of one ``SeedSequence`` (seeded from ``rng``), so the first
    ``k`` worlds do not depend on ``n_worlds``: a larger study extends a smaller one.

    Returns:
        ``(scenarios, features)``: the scenarios and one row per world (``world`` and the drawn features).

    Raises:
        ValueError: ``n_worlds`` or ``n_requests`` not an integer >= 1.
    """
    for name, value in (("n_worlds", n_worlds), ("n_requests", n_requests)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    root = np.random.SeedSequence(int(np.random.default_rng(rng).integers(2**63)))
    width = max(3, len(str(n_worlds - 1)))
    scenarios, rows = [], []
    for i, child in enumerate(root.spawn(n_worlds)):
        name = f"world_{i:0{width}d}"
        scenario, features = draw_world(ranges, np.random.default_rng(child), name, n_requests)
        scenarios.append(scenario)
        rows.append({"world": name, **features})
    return scenarios, pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# The study


@dataclass(frozen=True)
class WorldStudy:
    """How big the random-worlds study is, and what it draws from."""

    #: the ranges worlds are drawn from.
    ranges: WorldRanges = field(default_factory=WorldRanges)
    #: worlds drawn.
    n_worlds: int = 100
    #: independent runs per (world, method) (common random numbers across methods).
    n_replicates: int = 3
    #: requests per run (chosen so the study fits ``make reproduce``'s budget; W9).
    n_requests: int = 1000
    #: methods run in every world (each needs a batched form).
    methods: tuple[str, ...] = METHODS
    #: seed of the worlds' draw and of the runs.
    seed: int = 2022

    def __post_init__(self) -> None:
        if not isinstance(self.ranges, WorldRanges):
            raise ValueError(f"WorldStudy.ranges must be a WorldRanges, got {type(self.ranges).__name__}")
        for name in ("n_worlds", "n_replicates", "n_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"WorldStudy.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"WorldStudy.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"WorldStudy.methods: unknown {unknown}; valid methods: {list(METHODS)}")
        if ORACLE not in self.methods:
            raise ValueError("WorldStudy.methods must include 'oracle' (every ratio is to it)")
        if not any(m in FIXED_RULES for m in self.methods) or not any(m in LEARNERS for m in self.methods):
            raise ValueError(
                f"WorldStudy.methods needs at least one fixed rule {list(FIXED_RULES)} and one learner "
                f"{list(LEARNERS)}, got {list(self.methods)}"
            )

    def replace(self, **changes: Any) -> WorldStudy:
        """``dataclasses.replace`` (for chaining)."""
        return dataclasses.replace(self, **changes)


#: the study of ``make reproduce``: 100 worlds x 3 replicates x 12 methods x 1,000 requests (W9).
FULL_STUDY = WorldStudy()
#: the quick variant (``reproduce --quick``, tests, the notebook in quick mode).
QUICK_STUDY = WorldStudy(n_worlds=8, n_replicates=2, n_requests=300)


@dataclass(frozen=True)
class WorldStudyResult:
    """What :func:`run_world_study` returns: tidy tables."""

    #: one row per world: ``world`` and its drawn features (:data:`FEATURES`, ``trace``, ``fleet``, ...).
    worlds: pd.DataFrame
    #: one row per run: ``world``, ``method``, ``replicate``, ``mean_latency_ms``, ``mean_oracle_latency_ms``,
    #: ``mean_accuracy_pct``, ``latency_ratio_to_oracle`` (whole run), ``latency_ratio_to_oracle_second_half``,
    #: ``latency_ratio_to_oracle_run``.
    runs: pd.DataFrame
    #: the ``paper`` preset's features (one row, world ``paper``), run beside the drawn worlds for reference.
    reference_world: pd.DataFrame
    #: the ``paper`` preset's runs (columns as ``runs``); not part of the analysis over drawn worlds.
    reference_runs: pd.DataFrame


#: the name of the reference world, the ``paper`` preset run with the study's methods and size.
REFERENCE = "paper"

#: worlds per call of the runner: bounds the memory of one sweep's per-request tables (about 30 MB per world
#: at 2,000 requests), while leaving several worlds (tasks) for the workers to share.
WORLDS_PER_SWEEP = 10


def run_world_study(
    study: WorldStudy,
    out_dir: str | Path,
    n_jobs: int | None = None,
    progress: bool = True,
) -> WorldStudyResult:
    """Draw ``study.n_worlds`` worlds and run every method on each, ``n_replicates`` times.

    Runs go through :func:`orchlib.study.runner.run_sweep` (cached in ``out_dir``); every method of the study
    has a batched form, so each world's runs play together on the batched engine.

    Raises:
        ValueError: a method without a batched form in some world (the per-request path would be too slow).
    """
    from orchlib.envs.orchestration import OrchestrationEnv
    from orchlib.study.runner import batch_agent, grid, run_sweep, system_for

    if not isinstance(study, WorldStudy):
        raise TypeError(f"study must be a WorldStudy, got {type(study).__name__}")
    scenarios, worlds = draw_worlds(study.ranges, study.n_worlds, study.seed, study.n_requests)
    reference = paper().replace(name=REFERENCE, n_requests=study.n_requests)
    scenarios = [*scenarios, reference]
    parts = []
    for start in range(0, len(scenarios), WORLDS_PER_SWEEP):
        chunk = scenarios[start : start + WORLDS_PER_SWEEP]
        specs = grid(chunk, list(study.methods), n_replicates=study.n_replicates, seed=study.seed)
        for spec in specs[:: study.n_replicates]:
            env = OrchestrationEnv(system_for(spec.scenario)[0], **dict(spec.env_kwargs))
            if batch_agent(spec, env) is None:
                raise ValueError(
                    f"method {spec.agent!r} has no batched form in world {spec.scenario.name!r}; leave it out "
                    "of WorldStudy.methods"
                )
        result = run_sweep(specs, out_dir, n_jobs=n_jobs, progress=progress)
        whole = result.runs
        second = metrics.summarize_runs(result.requests, from_fraction=0.5)
        keys = list(metrics.RUN_KEYS)
        measured = [
            "mean_latency_ms",
            "mean_oracle_latency_ms",
            "mean_accuracy_pct",
            "latency_ratio_to_oracle",
        ]
        part = whole[[*keys, *measured]].merge(
            second[[*keys, "latency_ratio_to_oracle"]].rename(
                columns={"latency_ratio_to_oracle": "latency_ratio_to_oracle_second_half"}
            ),
            on=keys,
        )
        parts.append(part)
        del result
    runs = pd.concat(parts, ignore_index=True)
    runs = runs.assign(agent=runs["agent"].astype(str), scenario=runs["scenario"].astype(str))
    runs = runs.rename(columns={"agent": "method", "scenario": "world"})
    oracle = runs.loc[runs["method"] == ORACLE, ["world", "replicate", "mean_latency_ms"]]
    runs = runs.merge(oracle.rename(columns={"mean_latency_ms": "_oracle_run_ms"}), on=["world", "replicate"])
    runs["latency_ratio_to_oracle_run"] = runs["mean_latency_ms"] / runs.pop("_oracle_run_ms")
    columns = [
        "world",
        "method",
        "replicate",
        "mean_latency_ms",
        "mean_oracle_latency_ms",
        "mean_accuracy_pct",
        "latency_ratio_to_oracle",
        "latency_ratio_to_oracle_second_half",
        "latency_ratio_to_oracle_run",
    ]
    runs = runs[columns].sort_values(["world", "method", "replicate"]).reset_index(drop=True)
    drawn = runs["world"] != REFERENCE
    return WorldStudyResult(
        worlds=worlds,
        runs=runs[drawn].reset_index(drop=True),
        reference_world=pd.DataFrame([{"world": REFERENCE, **world_features(reference)}]),
        reference_runs=runs[~drawn].reset_index(drop=True),
    )


# ----------------------------------------------------------------------------------------------------------
# Analysis: pure functions of the tidy tables


def world_table(runs: pd.DataFrame, worlds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per world and method: the mean over replicates of each ratio, and the method's rank in its world.

    ``rank`` orders the methods of a world by mean ``latency_ratio_to_oracle`` (1 = the lowest; ties share the
    lowest rank; the oracle, at exactly 1, is rank 1). ``rank_among_non_oracle`` leaves the oracle out.
    With ``worlds``, its feature columns are added (world-level values repeated per method).

    Returns:
        ``world``, ``method``, ``method_kind``, ``n_replicates``, ``mean_latency_ms``, ``mean_accuracy_pct``,
        ``latency_ratio_to_oracle``, ``latency_ratio_to_oracle_second_half``, ``latency_ratio_to_oracle_run``,
        ``rank``, ``rank_among_non_oracle`` [, the features].
    """
    needed = ["world", "method", "replicate", "latency_ratio_to_oracle", "mean_latency_ms"]
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lacks column(s) {missing}; it has {list(runs.columns)}")
    values = [
        c
        for c in (
            "mean_latency_ms",
            "mean_accuracy_pct",
            "latency_ratio_to_oracle",
            "latency_ratio_to_oracle_second_half",
            "latency_ratio_to_oracle_run",
        )
        if c in runs.columns
    ]
    table = runs.groupby(["world", "method"], as_index=False).agg(
        n_replicates=("replicate", "nunique"), **{c: (c, "mean") for c in values}
    )
    table.insert(2, "method_kind", table["method"].map(method_kind))
    by_world = table.groupby("world")["latency_ratio_to_oracle"]
    table["rank"] = by_world.rank(method="min").astype(int)
    others = table["method"] != ORACLE
    table["rank_among_non_oracle"] = (
        table[others].groupby("world")["latency_ratio_to_oracle"].rank(method="min").astype("Int64")
    )
    if worlds is not None:
        table = table.merge(worlds, on="world", how="left")
    return table.sort_values(["world", "rank", "method"]).reset_index(drop=True)


#: a difference in mean ratio smaller than this share is called a tie in the summary (W10).
MARGIN = 0.01


def learner_comparison(
    table: pd.DataFrame, ratio: str = "latency_ratio_to_oracle", margin: float = MARGIN
) -> pd.DataFrame:
    """Per world and learner: the learner against the best fixed rule of that world (chosen in hindsight) and
    against ``greedy_profiles`` (the one fixed rule that needs no hindsight), on the mean ``ratio``.

    ``best learner`` is added as a learner: the lowest ratio of any learner in the world (hindsight too).

    Returns:
        ``world``, ``learner``, ``learner_ratio``, ``best_fixed_rule``, ``best_fixed_ratio``,
        ``advantage_over_best_fixed`` (best fixed ratio / learner ratio; > 1: the learner is faster),
        ``beats_best_fixed`` (advantage > 1), ``outcome`` (``"win"`` if the advantage exceeds ``1 + margin``,
        ``"loss"`` if it is below ``1 / (1 + margin)``, else ``"tie"``), and with greedy in the table
        ``advantage_over_greedy``, ``beats_greedy``.

    Raises:
        ValueError: no fixed rule or no learner in the table; ``margin`` not in [0, 1).
    """
    if isinstance(margin, bool) or not (isinstance(margin, int | float) and 0 <= margin < 1):
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    fixed = table[table["method"].isin(FIXED_RULES)]
    learners = table[table["method"].isin(LEARNERS)]
    if fixed.empty or learners.empty:
        raise ValueError("table needs at least one fixed rule and one learner")
    best_fixed = fixed.loc[fixed.groupby("world")[ratio].idxmin(), ["world", "method", ratio]].rename(
        columns={"method": "best_fixed_rule", ratio: "best_fixed_ratio"}
    )
    best_learner = learners.loc[learners.groupby("world")[ratio].idxmin(), ["world", ratio]].assign(
        method="best learner"
    )
    rows = pd.concat([learners[["world", "method", ratio]], best_learner], ignore_index=True).rename(
        columns={"method": "learner", ratio: "learner_ratio"}
    )
    out = rows.merge(best_fixed, on="world")
    out["advantage_over_best_fixed"] = out["best_fixed_ratio"] / out["learner_ratio"]
    out["beats_best_fixed"] = out["advantage_over_best_fixed"] > 1
    out["outcome"] = np.select(
        [out["advantage_over_best_fixed"] > 1 + margin, out["advantage_over_best_fixed"] < 1 / (1 + margin)],
        ["win", "loss"],
        "tie",
    )
    greedy = table.loc[table["method"] == "greedy_profiles", ["world", ratio]]
    if not greedy.empty:
        out = out.merge(greedy.rename(columns={ratio: "_greedy"}), on="world", how="left")
        out["advantage_over_greedy"] = out.pop("_greedy") / out["learner_ratio"]
        out["beats_greedy"] = out["advantage_over_greedy"] > 1
    return out.sort_values(["learner", "world"]).reset_index(drop=True)


def _holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, (len(order) - k) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def feature_effects(
    comparison: pd.DataFrame, worlds: pd.DataFrame, features: Sequence[str] = FEATURES
) -> pd.DataFrame:
    """Per learner and world feature: how the feature goes with the learner's advantage over the best fixed rule.

    Spearman's rank correlation between the feature and ``log(advantage_over_best_fixed)`` over worlds
    (a monotone association, robust to the features' skew), its p-value and the Holm-adjusted p-value over the
    features of one learner (the family a reader scans), and the feature's median in the worlds where the
    learner beats the best fixed rule and in those where it does not.

    Returns:
        ``learner``, ``feature``, ``n_worlds``, ``n_wins``, ``spearman_rho``, ``p_value``, ``p_holm``,
        ``median_where_wins``, ``median_where_loses``; sorted by learner and decreasing ``|spearman_rho|``.
    """
    data = comparison.merge(worlds[["world", *features]], on="world")
    rows = []
    for learner, part in data.groupby("learner", sort=False):
        advantage = np.log(part["advantage_over_best_fixed"].to_numpy(float))
        wins = part["beats_best_fixed"].to_numpy(bool)
        block = []
        for feature in features:
            x = part[feature].to_numpy(float)
            varies = np.ptp(x) > 0 and np.ptp(advantage) > 0 and len(x) >= 3
            rho, p = stats.spearmanr(x, advantage) if varies else (np.nan, np.nan)
            block.append(
                {
                    "learner": learner,
                    "feature": feature,
                    "n_worlds": len(x),
                    "n_wins": int(wins.sum()),
                    "spearman_rho": float(rho),
                    "p_value": float(p),
                    "median_where_wins": float(np.median(x[wins])) if wins.any() else np.nan,
                    "median_where_loses": float(np.median(x[~wins])) if (~wins).any() else np.nan,
                }
            )
        adjusted = _holm(np.array([r["p_value"] for r in block]))
        for r, q in zip(block, adjusted, strict=True):
            r["p_holm"] = float(q)
        rows += block
    out = pd.DataFrame(rows)
    columns = ["learner", "feature", "n_worlds", "n_wins", "spearman_rho", "p_value", "p_holm"]
    out = out[[*columns, "median_where_wins", "median_where_loses"]]
    out["_order"] = -out["spearman_rho"].abs().fillna(-1)
    return out.sort_values(["learner", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _best_stump(x: np.ndarray, y: np.ndarray) -> tuple[int, float, bool, float]:
    """The split ``x > threshold`` (or ``<=``) that predicts ``y`` with the highest accuracy, over the
    features (columns of ``x``): ``(feature index, threshold, wins above, accuracy)``; thresholds are midpoints
    between adjacent distinct values. Without a split better than the majority class, feature -1."""
    n = len(y)
    majority = max(y.mean(), 1 - y.mean())
    best = (-1, math.nan, bool(y.mean() >= 0.5), majority)
    if n < 2:
        return best
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        xs, ys = x[order, j], y[order].astype(float)
        wins_below = np.cumsum(ys)[:-1]  # wins among the first k + 1 (x <= threshold)
        k = np.arange(1, n)
        valid = xs[1:] > xs[:-1]
        total_wins = ys.sum()
        # predict "win" above: correct = losses below + wins above
        above = (k - wins_below) + (total_wins - wins_below)
        below = wins_below + ((n - k) - (total_wins - wins_below))
        for correct, wins_above in ((above, True), (below, False)):
            score = np.where(valid, correct / n, -1.0)
            i = int(np.argmax(score))
            if score[i] > best[3] + 1e-12:
                best = (j, float((xs[i] + xs[i + 1]) / 2), wins_above, float(score[i]))
    return best


def decision_stumps(
    comparison: pd.DataFrame,
    worlds: pd.DataFrame,
    features: Sequence[str] = FEATURES,
    n_folds: int = 5,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """Per learner, the one-feature rule that best tells the worlds where it beats the best fixed rule.

    A decision stump (one threshold on one feature, the most accurate of all features and thresholds): the
    simplest model that names a feature and a level. Its in-sample accuracy is optimistic (it picks the best
    of many splits), so it is given beside the ``n_folds``-fold cross-validated accuracy (the stump chosen on
    the other folds, scored on the held-out one) and the base rate (always predicting the majority outcome).
    A cross-validated accuracy no better than the base rate means no single feature explains where it wins.

    Returns:
        ``learner``, ``n_worlds``, ``win_share``, ``feature`` (None without a useful split), ``threshold``,
        ``wins_when`` (``"above"``/``"below"``), ``accuracy_in_sample``, ``accuracy_cv``, ``base_rate``.
    """
    data = comparison.merge(worlds[["world", *features]], on="world")
    generator = np.random.default_rng(rng)
    rows = []
    for learner, part in data.groupby("learner", sort=False):
        x = part[list(features)].to_numpy(float)
        y = part["beats_best_fixed"].to_numpy(bool)
        j, threshold, wins_above, accuracy = _best_stump(x, y)
        folds = np.array_split(generator.permutation(len(y)), min(n_folds, len(y)))
        correct = 0
        for test in folds:
            train = np.setdiff1d(np.arange(len(y)), test)
            if train.size == 0:
                continue
            jj, t, above, _ = _best_stump(x[train], y[train])
            prediction = np.full(test.size, y[train].mean() >= 0.5) if jj < 0 else (x[test, jj] > t) == above
            correct += int((prediction == y[test]).sum())
        rows.append(
            {
                "learner": learner,
                "n_worlds": len(y),
                "win_share": float(y.mean()),
                "feature": features[j] if j >= 0 else None,
                "threshold": threshold,
                "wins_when": ("above" if wins_above else "below") if j >= 0 else None,
                "accuracy_in_sample": accuracy,
                "accuracy_cv": correct / len(y),
                "base_rate": float(max(y.mean(), 1 - y.mean())),
            }
        )
    return pd.DataFrame(rows)


def summary_lines(analysis: WorldAnalysis, study: WorldStudy) -> list[str]:
    """The ``summary.md`` section of the study (markdown lines), every number read from the analysis."""
    table, comparison, effects, stumps = (
        analysis.table,
        analysis.comparison,
        analysis.effects,
        analysis.stumps,
    )
    n_worlds = table["world"].nunique()
    lines = [
        "## Where learning pays: random grounded worlds",
        "",
        f"{n_worlds} worlds drawn from `WorldRanges` (docs/assumptions.md W1-W10; seed {study.seed}), "
        f"{study.n_replicates} runs x {study.n_requests} requests per method and world. Ratio = mean "
        "response time / mean per-request clairvoyant best over the same requests (>= 1; whole runs, "
        "learning included). Best fixed rule = the fastest of the fixed placements and `greedy_profiles` "
        "in each world, chosen in hindsight. The `paper` preset, run with the same methods and size, is a reference "
        "beside the drawn worlds (not part of their counts or correlations).",
        "",
        "| method | kind | median ratio over worlds | worlds ranked first among non-oracle | median rank "
        "| ratio on the `paper` preset (reference) |",
        "|---|---|---|---|---|---|",
    ]
    reference = analysis.reference.set_index("method")["latency_ratio_to_oracle"]
    order = table.groupby("method")["latency_ratio_to_oracle"].median().sort_values()
    for method, median in order.items():
        part = table[table["method"] == method]
        first = (part["rank_among_non_oracle"] == 1).sum() if method != ORACLE else np.nan
        first_text = f"{int(first)} of {n_worlds}" if np.isfinite(first) else "(oracle)"
        lines.append(
            f"| {method} | {method_kind(method)} | {median:.3f} | {first_text} | {part['rank'].median():g} "
            f"| {reference.get(method, np.nan):.3f} |"
        )
    lines += [
        "",
        f"Against the best fixed rule: a win or a loss is a difference of more than {MARGIN:.0%} in mean ratio, "
        "anything closer a tie; `best learner` is the fastest learner of each world (in hindsight too).",
        "",
        "| learner | beats the best fixed rule in | wins / ties / losses | beats greedy_profiles in "
        "| median advantage over best fixed |",
        "|---|---|---|---|---|",
    ]
    for learner, part in comparison.groupby("learner", sort=False):
        greedy = f"{int(part['beats_greedy'].sum())} of {len(part)} worlds" if "beats_greedy" in part else ""
        outcomes = part["outcome"].value_counts()
        lines.append(
            f"| {learner} | {int(part['beats_best_fixed'].sum())} of {len(part)} worlds | "
            f"{outcomes.get('win', 0)} / {outcomes.get('tie', 0)} / {outcomes.get('loss', 0)} | {greedy} | "
            f"{part['advantage_over_best_fixed'].median():.3f}x |"
        )
    lines += [
        "",
        "What goes with a learner beating the best fixed rule (Spearman over worlds, Holm-adjusted):",
        "",
    ]
    for learner, part in effects.groupby("learner", sort=False):
        top = part.dropna(subset=["spearman_rho"]).head(2)
        described = "; ".join(
            f"`{r.feature}` rho {r.spearman_rho:+.2f} (p_holm {r.p_holm:.2g})" for r in top.itertuples()
        )
        stump = stumps[stumps["learner"] == learner]
        if not stump.empty and pd.notna(stump["feature"].iloc[0]):
            s = stump.iloc[0]
            described += (
                f"; stump: wins when `{s['feature']}` {'>' if s['wins_when'] == 'above' else '<='} "
                f"{s['threshold']:.3g} (accuracy {s['accuracy_cv']:.2f} cross-validated, "
                f"{s['accuracy_in_sample']:.2f} in sample, base rate {s['base_rate']:.2f})"
            )
        elif not stump.empty:
            described += f"; no one-feature rule beats the base rate {stump['base_rate'].iloc[0]:.2f}"
        lines.append(f"- {learner}: {described.removeprefix('; ') or 'no feature varies'}")
    outcomes = comparison.groupby("learner")["outcome"].value_counts().unstack(fill_value=0)
    wins = outcomes.get("win", pd.Series(0, index=outcomes.index)).drop(index="best learner", errors="ignore")
    top = str(wins.idxmax())
    ties = int(outcomes.loc[top].get("tie", 0))
    share = "most" if wins.max() > n_worlds / 2 else "a minority"
    lines += [
        "",
        f"In short: the learner that most often beats the best fixed rule by more than {MARGIN:.0%} is `{top}`, "
        f"in {int(wins.max())} of {n_worlds} worlds (within {MARGIN:.0%} in {ties}); by this measure learning "
        f"pays in {share} of the worlds drawn here, within {study.n_requests} requests per run.",
    ]
    return lines


@dataclass(frozen=True)
class WorldAnalysis:
    """The analysis of a :class:`WorldStudyResult` (:func:`analyse`): tidy tables, and the feature figure 11
    plots against."""

    #: :func:`world_table` with the world features.
    table: pd.DataFrame
    #: :func:`learner_comparison`.
    comparison: pd.DataFrame
    #: :func:`feature_effects`.
    effects: pd.DataFrame
    #: :func:`decision_stumps`.
    stumps: pd.DataFrame
    #: the feature most associated (largest ``|spearman_rho|``) with the best learner's advantage.
    feature: str
    #: :func:`world_table` of the reference world (the ``paper`` preset), with its features.
    reference: pd.DataFrame


def analyse(result: WorldStudyResult) -> WorldAnalysis:
    """Every table of the study's analysis from its result (pure)."""
    table = world_table(result.runs, result.worlds)
    comparison = learner_comparison(table)
    effects = feature_effects(comparison, result.worlds)
    stumps = decision_stumps(comparison, result.worlds)
    best = effects[effects["learner"] == "best learner"].dropna(subset=["spearman_rho"])
    feature = str(best["feature"].iloc[0]) if len(best) else FEATURES[0]
    reference = world_table(result.reference_runs, result.reference_world)
    return WorldAnalysis(table, comparison, effects, stumps, feature, reference)
