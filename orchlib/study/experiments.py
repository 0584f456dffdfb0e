"""Experiments as data: each function runs a sweep of the simulator or the runner and returns a tidy table.

Plot functions in :mod:`orchlib.study.plots` only read these tables; ``orchlib reproduce`` calls both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from orchlib.system.scenario import TIERS, AccuracyRequirement, LinkSpec, Scenario
from orchlib.system.simulator import Simulator, System, build_system


def fixed_action_latencies(
    system: System, action: int, n_requests: int, rng: np.random.Generator | int | None
) -> np.ndarray:
    """Response times (ms) of ``n_requests`` requests when every user always takes ``action``.

    The accuracy requirement is ignored (this measures the system, not a policy).
    """
    sim = Simulator(system, rng)
    out = np.empty(n_requests)
    for i in range(n_requests):
        out[i] = sim.serve(sim.next_request(), action).total_ms
    return out


def _steady(scenario: Scenario, level: str) -> Scenario:
    return scenario.replace(access=LinkSpec.from_level(level))


def sanity_table(
    base: Scenario,
    levels: Sequence[str] = ("wifi", "4g_good", "4g_weak", "3g"),
    users: Sequence[int] = (1, 4, 8, 16),
    n_requests: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """Mean response time of every (tier, variant) used by all users, per steady network level and user count.

    Tidy: one row per (level, n_users, variant, tier) with ``mean_latency_ms`` and ``p95_latency_ms``.
    The scenario's trace is replaced by the steady level; the accuracy requirement is ignored.
    """
    seeds = np.random.SeedSequence(np.random.default_rng(rng).integers(2**63)).spawn(len(levels) * len(users))
    rows = []
    for i, (level, n_users) in enumerate((lv, n) for lv in levels for n in users):
        scenario = _steady(base, level).replace(
            n_users=n_users, accuracy=AccuracyRequirement(), n_requests=n_requests
        )
        system = build_system(scenario)
        for action in range(system.n_actions):
            tier, variant = system.decode_action(action)
            latencies = fixed_action_latencies(system, action, n_requests, np.random.default_rng(seeds[i]))
            rows.append(
                {
                    "level": level,
                    "n_users": n_users,
                    "variant": system.variant_names[variant],
                    "tier": TIERS[tier],
                    "mean_latency_ms": latencies.mean(),
                    "p95_latency_ms": np.percentile(latencies, 95),
                }
            )
    return pd.DataFrame(rows)


def fastest_tier(table: pd.DataFrame) -> pd.DataFrame:
    """From :func:`sanity_table`: the fastest tier per (level, n_users, variant), wide (variants as rows)."""
    best = table.loc[
        table.groupby(["level", "n_users", "variant"], observed=True)["mean_latency_ms"].idxmin()
    ]
    wide = best.pivot(index="variant", columns=["level", "n_users"], values="tier")
    return wide.reindex(index=sorted(wide.index, key=lambda n: (n.endswith("_quant"), n)))


def offered_load(system: System, action: int) -> float:
    """Utilisation of the busiest resource when every user always takes ``action`` (steady links only).

    Per resource, arrivals per ms times service time per request, divided by the servers available:
    the user's device (profile median; with thermal throttling, times the throttled steady-state slowdown,
    since a device that never idles heats up), the shared access uplink (mean payload at the level's
    uplink rate), the edge (its workers, less the mean share co-tenant jobs occupy), the WAN and the cloud.
    ``>= 1`` means no steady state exists: queues grow without bound (an overload, not a latency).
    """
    s = system.scenario
    per_user = s.arrivals.rate_per_s / 1e3  # requests per ms per user
    total = per_user * s.n_users
    tier, v = system.decode_action(action)
    if tier == 0:
        slowdown = s.thermal.max_slowdown if s.thermal is not None else 1.0
        return float(per_user * system.device_median_ms[0, v] * slowdown)
    bits = system.input_bytes[v] * 8
    loads = [total * bits / (s.access.uplink_mbps * 1e3)]
    if tier == 1:
        workers = float(s.edge.n_workers)
        if s.cotenant is not None:
            duty = s.cotenant.mean_on_s / (s.cotenant.mean_on_s + s.cotenant.mean_off_s)
            workers -= s.cotenant.n_workers_occupied * duty
        loads.append(total * system.median_ms[1, v] / workers)
    else:
        cloud = s.cloud_accelerator or s.cloud
        loads += [total * bits / (s.wan.uplink_mbps * 1e3), total * system.median_ms[2, v] / cloud.n_workers]
    return float(max(loads))


def motivation(
    base: Scenario,
    variant: str = "mobilenet_v1_1.0_224_quant",
    levels: Sequence[str] = ("wifi", "4g_good", "4g_weak", "3g"),
    users: Sequence[int] = (1, 2, 4, 8, 16, 32),
    users_level: str = "wifi",
    requirements_pct: Sequence[float] = (0.0, 50.0, 60.0, 65.0, 68.0, 69.5),
    requirement_level: str = "4g_good",
    n_requests: int = 2000,
    rng: np.random.Generator | int | None = 0,
    devices: Sequence[str] | None = None,
    edges: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """The three motivation experiments: steady-state response time of end / edge / cloud execution

    (1) versus network level (one user, ``variant``), (2) versus number of users sharing the access link and
    edge (``users_level``, ``variant``), (3) versus accuracy requirement (one user, ``requirement_level``; on
    each tier the fastest variant meeting the requirement that the tier can run, as its profile says).
    Every user has the same device (no fleet draw, so the settings differ only in the swept factor): each of
    ``devices`` (profile names) in turn, default ``base.end``'s; the other features of ``base`` (payloads,
    accelerator, hidden conditions) stay as they are.

    The first half of each setting's requests is a warm-up and is dropped, so the numbers are steady-state
    ones; a setting whose :func:`offered_load` is ``>= 1`` has no steady state and is flagged ``overloaded``
    (its latencies are still reported, but they grow with the run length and mean nothing on their own).
    A tier that can run no variant meeting the requirement has ``variant`` None and no latency.

    ``edges`` maps edge names to worker counts (e.g. :data:`MOTIVATION_EDGES`, AWS instance sizes): the edge
    tier is measured once per entry, with ``base.edge``'s profile and that many workers (default: ``base.edge``
    as it is, named ``"edge"``).

    Returns a tidy table: ``device``, ``panel`` (network/users/accuracy), ``x`` (level name, user count or requirement),
    ``tier``, ``option`` (the tier, or for the edge its name from ``edges``), ``edge_workers``, ``variant``,
    ``mean_latency_ms``, ``p95_latency_ms``, ``offered_load``, ``overloaded``, ``n_requests`` (requests measured,
    after the warm-up).
    """
    devices = tuple(devices) if devices is not None else (base.end.profile,)
    edges = dict(edges) if edges is not None else {"edge": base.edge.n_workers}
    for name, workers in edges.items():
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"edges[{name!r}] must be a worker count (an integer >= 1), got {workers!r}")
    root = np.random.SeedSequence(np.random.default_rng(rng).integers(2**63))
    return pd.concat(
        [
            _motivation_one_device(
                base.replace(end=dataclasses.replace(base.end, profile=device)),
                variant,
                levels,
                users,
                users_level,
                requirements_pct,
                requirement_level,
                n_requests,
                edges,
                # the same seeds for every device, so devices differ only in the device
                iter(root.spawn(len(levels) + len(users) + len(requirements_pct))),
            ).assign(device=device)
            for device in devices
        ],
        ignore_index=True,
    )[["device", *MOTIVATION_COLUMNS]]


#: edge sizes of figure 1 (assumption S3a): AWS Wavelength's general-purpose instances (t3.medium, t3.xlarge,
#: r5.2xlarge: 2, 4 and 8 vCPUs), each as vCPUs / 2 workers of the measured 2-thread x86 profile (S3).
MOTIVATION_EDGES: dict[str, int] = {"t3.medium": 1, "t3.xlarge": 2, "r5.2xlarge": 4}

#: end devices of figure 1: the ``paper`` preset's default class (S2) and the slow measured class (F1),
#: between which the fastest tier changes.
MOTIVATION_DEVICES: tuple[str, ...] = ("rpi4_cpu4", "rpi4_tflite115")

#: columns of :func:`motivation` after ``device``.
MOTIVATION_COLUMNS = (
    "panel",
    "x",
    "tier",
    "option",
    "edge_workers",
    "variant",
    "mean_latency_ms",
    "p95_latency_ms",
    "offered_load",
    "overloaded",
    "n_requests",
)


def _motivation_one_device(
    base: Scenario,
    variant: str,
    levels: Sequence[str],
    users: Sequence[int],
    users_level: str,
    requirements_pct: Sequence[float],
    requirement_level: str,
    n_requests: int,
    edges: Mapping[str, int],
    seeds,
) -> pd.DataFrame:
    one = base.replace(
        n_users=1, accuracy=AccuracyRequirement(), n_requests=n_requests, variant_subset=None, fleet=None
    )
    rows = []

    def measure(panel: str, x: object, scenario: Scenario, pick_variant) -> None:
        seed = next(seeds)
        options = [("end", 0, None)]
        options += [
            (name if name == "edge" else f"edge {name}", 1, workers) for name, workers in edges.items()
        ]
        options.append(("cloud", 2, None))
        base_system = build_system(scenario)
        for option, tier_index, workers in options:
            sized = (
                scenario
                if workers is None
                else scenario.replace(edge=dataclasses.replace(scenario.edge, n_workers=workers))
            )
            # the edge's worker count is read from the scenario when a simulator starts; nothing else changes
            system = base_system if sized == scenario else dataclasses.replace(base_system, scenario=sized)
            v = pick_variant(system, tier_index)
            row = {"panel": panel, "x": x, "tier": TIERS[tier_index], "option": option}
            row.update(edge_workers=sized.edge.n_workers, variant=None, mean_latency_ms=np.nan)
            row.update(p95_latency_ms=np.nan, offered_load=np.nan, overloaded=False, n_requests=0)
            if v is not None:
                action = system.encode_action(tier_index, v)
                latencies = fixed_action_latencies(system, action, n_requests, np.random.default_rng(seed))
                steady = latencies[n_requests // 2 :]
                load = offered_load(system, action)
                row.update(
                    variant=system.variant_names[v],
                    mean_latency_ms=steady.mean(),
                    p95_latency_ms=np.percentile(steady, 95),
                    offered_load=load,
                    overloaded=load >= 1.0,
                    n_requests=steady.size,
                )
            rows.append(row)

    def fixed(system: System, tier: int) -> int | None:
        v = system.variant_names.index(variant)
        median = system.device_median_ms[0] if tier == 0 else system.median_ms[tier]
        return v if np.isfinite(median[v]) else None

    for level in levels:
        measure("network", level, _steady(one, level), fixed)
    for n in users:
        measure("users", n, _steady(one, users_level).replace(n_users=n), fixed)
    for requirement in requirements_pct:

        def fastest_meeting(system: System, tier: int, requirement: float = requirement) -> int | None:
            median = system.device_median_ms[0] if tier == 0 else system.median_ms[tier]
            ok = (system.top1_pct >= requirement) & np.isfinite(median)
            return int(np.flatnonzero(ok)[np.argmin(median[ok])]) if ok.any() else None

        measure("accuracy", requirement, _steady(one, requirement_level), fastest_meeting)
    return pd.DataFrame(rows)


#: options whose steady-state mean is within this fraction of the fastest one's count as tied in figure 1
#: (2,000 requests per setting: smaller differences are within the settings' run-to-run noise).
TIE_TOLERANCE = 0.05


def fastest_steady_tier(table: pd.DataFrame, tie_tolerance: float = TIE_TOLERANCE) -> pd.DataFrame:
    """From :func:`motivation`: per (device, panel, x) the fastest tier not overloaded ("none" if all are).

    Tiers whose best option is within ``tie_tolerance`` of the fastest option's mean are tied: ``fastest``
    joins them with "≈" in tier order (e.g. ``"end≈edge"``). ``fastest_option`` is the single fastest option
    (the tier, or the edge's size).
    """
    cells = ["device", "panel", "x"]
    if "option" not in table.columns:
        table = table.assign(option=table["tier"])
    usable = table[~table["overloaded"].astype(bool) & table["mean_latency_ms"].notna()]
    rows = []
    for key, cell in table.groupby(cells, sort=False):
        steady = usable.loc[cell.index.intersection(usable.index)]
        if steady.empty:
            rows.append((*key, "none", "none"))
            continue
        best = steady["mean_latency_ms"].min()
        near = set(steady.loc[steady["mean_latency_ms"] <= (1 + tie_tolerance) * best, "tier"])
        fastest = "≈".join(t for t in TIERS if t in near)
        rows.append((*key, fastest, steady.loc[steady["mean_latency_ms"].idxmin(), "option"]))
    return pd.DataFrame(rows, columns=[*cells, "fastest", "fastest_option"])


def with_profiles(scenario: Scenario, **profiles: str) -> Scenario:
    """``scenario`` with other device profiles per tier, e.g. ``with_profiles(s, end="pixel3_cpu4")``.

    ``end`` gives every user that device (a fleet is dropped); ``cloud`` replaces the cloud tier (an
    accelerated cloud is dropped), so the profile named is the one that serves.
    """
    changes: dict = {
        tier: dataclasses.replace(getattr(scenario, tier), profile=p) for tier, p in profiles.items()
    }
    if "end" in profiles:
        changes["fleet"] = None
    if "cloud" in profiles:
        changes["cloud_accelerator"] = None
    return scenario.replace(**changes)


# ----------------------------------------------------------------------------------------------------------
# The learning experiments (figures 2-8). Each runs a sweep through orchlib.study.runner (cached in ``out_dir``)
# and returns tidy tables. Budgets are data: FULL for `orchlib reproduce`, QUICK for tests and --quick.


@dataclasses.dataclass(frozen=True)
class Budget:
    """How big each experiment is."""

    #: requests per run of the headline, learning-curve, hybrid and non-stationary experiments.
    n_requests: int = 20_000
    #: independent runs per (scenario, agent).
    n_replicates: int = 5
    #: requests per run of the sensitivity and trade-off sweeps.
    sweep_requests: int = 8_000
    #: independent runs per point of the sensitivity and trade-off sweeps.
    sweep_replicates: int = 3
    #: window of the learning curves and convergence measure, in requests.
    window: int = 500
    #: independent runs of the learning-speed experiments (figure 7 and the learning targets, whose aggregates
    #: need >= 10 runs).
    learning_replicates: int = 10
    #: the sweeps' base seed (runs get independent streams from it via SeedSequence).
    seed: int = 2022


FULL = Budget()
QUICK = Budget(
    n_requests=2_000,
    n_replicates=2,
    sweep_requests=1_000,
    sweep_replicates=2,
    window=200,
    learning_replicates=2,
)

#: The "state of the art" stand-in (see shared/PAPER.md): RL offloading of the location only, most accurate model.
SOTA = "sota_location_only"
#: Agents of the headline comparison (figure 2) and learning curves (figure 3).
HEADLINE_AGENTS: tuple[str, ...] = (
    "q_learning",
    "dyna_q",
    SOTA,
    "hybrid",
    "adaptive_greedy",
    "greedy_profiles",
    "per_state_ucb1",
    "per_state_thompson",
    "sw_ucb",
    "exp3",
    "linucb",
    "dqn",
    "local_most_accurate",
    "edge_most_accurate",
    "cloud_most_accurate",
    "local_fastest",
    "edge_fastest",
    "random",
    "oracle",
)
QUICK_HEADLINE_AGENTS: tuple[str, ...] = (
    "q_learning",
    "dyna_q",
    SOTA,
    "hybrid",
    "adaptive_greedy",
    "greedy_profiles",
    "per_state_ucb1",
    "local_most_accurate",
    "oracle",
)
#: Agents of the sweeps (figures 4, 6, 8): the paper's method, the stand-in, a model-based heuristic, the oracle.
SWEEP_AGENTS: tuple[str, ...] = ("q_learning", SOTA, "greedy_profiles", "oracle")
#: Learning curves show these (the rest of the headline agents are fixed policies or near-duplicates); the
#: hybrid and the adaptive greedy rule are the methods closest to the oracle on the grounded ``paper``.
CURVE_AGENTS: tuple[str, ...] = (
    "q_learning",
    "dyna_q",
    SOTA,
    "hybrid",
    "adaptive_greedy",
    "per_state_ucb1",
    "per_state_thompson",
    "sw_ucb",
    "exp3",
    "linucb",
    "dqn",
    "greedy_profiles",
)
DECISION_MAP_AGENTS: tuple[str, ...] = (
    "q_learning",
    "dyna_q",
    SOTA,
    "greedy_profiles",
    "per_state_ucb1",
    "oracle",
)


def headline(
    budget: Budget, out_dir: str, n_jobs: int | None = None, progress: bool = True, quick: bool = False
):
    """Figures 2, 3 and 5: every headline agent on the ``paper`` scenario; returns the SweepResult."""
    from orchlib.study.runner import grid, run_sweep
    from orchlib.system.scenario import paper

    agents: list[object] = list(QUICK_HEADLINE_AGENTS if quick else HEADLINE_AGENTS)
    agents.append({"agent": "q_learning", "label": "q_learning_per_user", "deciders": "per_user"})
    specs = grid(
        [paper().replace(n_requests=budget.n_requests)],
        agents,
        n_replicates=budget.n_replicates,
        seed=budget.seed,
    )
    return run_sweep(specs, out_dir, n_jobs=n_jobs, progress=progress)


def most_frequent_choice(requests: pd.DataFrame, cells: Sequence[str]) -> pd.DataFrame:
    """Per cell (the columns ``cells``, e.g. agent and bandwidth level), the most frequent (tier, variant).

    Returns:
        ``cells`` plus ``tier``, ``variant``, ``n`` (requests of that choice), ``n_cell`` (requests in the
        cell) and ``share`` (``n / n_cell``); ties go to the first choice in (tier, variant) order.
    """
    cells = list(cells)
    choice = requests["tier"].astype(str) + "|" + requests["variant"].astype(str)
    counts = (
        requests.assign(choice=choice)
        .groupby([*cells, "choice"], observed=True)
        .size()
        .rename("n")
        .reset_index()
    )
    counts = counts[counts["n"] > 0]
    counts["n_cell"] = counts.groupby(cells, observed=True)["n"].transform("sum")
    counts["share"] = counts["n"] / counts["n_cell"]
    best = counts.loc[counts.groupby(cells, observed=True)["n"].idxmax()].reset_index(drop=True)
    best[["tier", "variant"]] = best.pop("choice").str.split("|", expand=True)
    return best[[*cells, "tier", "variant", "n", "n_cell", "share"]]


def decision_table(
    requests: pd.DataFrame,
    agents: Sequence[str] = DECISION_MAP_AGENTS,
    from_fraction: float = 0.5,
    scenario: Scenario | None = None,
) -> pd.DataFrame:
    """Figure 5's data: per agent and (bandwidth level, requirement), the most frequent (tier, variant) late in the runs.

    Uses the discrete ``state`` the runner records, decoded with the encoding of ``scenario``'s environment
    (default ``paper``; it must be the scenario the runs used). Runs on the Box observation (state -1) are left out.
    Columns as :func:`most_frequent_choice`, in the order of ``agents``.
    """
    from orchlib.envs.orchestration import OrchestrationEnv
    from orchlib.system.scenario import paper

    env = OrchestrationEnv(paper() if scenario is None else scenario)
    part = requests[requests["agent"].isin(agents) & (requests["state"] >= 0)]
    part = part[
        part["request"]
        >= from_fraction * part.groupby(["agent", "replicate"], observed=True)["request"].transform("max")
    ]
    frame = pd.DataFrame(
        {
            "agent": part["agent"].astype(str).to_numpy(),
            "bandwidth_level": np.unravel_index(part["state"].to_numpy(dtype=np.int64), env.state_shape)[0],
            "requirement_pct": part["requirement_pct"].to_numpy(),
            "tier": part["tier"].astype(str).to_numpy(),
            "variant": part["variant"].astype(str).to_numpy(),
        }
    )
    best = most_frequent_choice(frame, ["agent", "bandwidth_level", "requirement_pct"])
    order = {a: i for i, a in enumerate(agents)}
    return best.sort_values(["agent"], key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def _sweep_runs(
    scenarios: Sequence[Scenario],
    agents: Sequence[str],
    budget: Budget,
    out_dir: str,
    n_jobs,
    progress,
    n_replicates: int | None = None,
) -> pd.DataFrame:
    from orchlib.study.metrics import summarize_runs
    from orchlib.study.runner import grid, run_sweep

    replicates = budget.sweep_replicates if n_replicates is None else n_replicates
    specs = grid(scenarios, list(agents), n_replicates=replicates, seed=budget.seed)
    result = run_sweep(specs, out_dir, n_jobs=n_jobs, progress=progress)
    return summarize_runs(result.requests)


#: access uplink medians of the bandwidth sweep, Mbit/s; the ``paper`` preset's own level is added to them.
SENSITIVITY_UPLINK_MBPS: tuple[float, ...] = (5.0, 10.0, 20.0, 100.0)
SENSITIVITY_USERS: tuple[int, ...] = (1, 4, 8, 16, 32)
#: the paper's accuracy budget: "less than 0.9% accuracy reduction", read as a mean loss < 0.9 pp (X7).
PAPER_ACCURACY_BUDGET_PP = 0.9
#: tolerances of the trade-off sweep (figure 6), pp below the best variant; the budget itself is one of them.
TOLERANCES_PP: tuple[float, ...] = (0.0, 0.5, PAPER_ACCURACY_BUDGET_PP, 1.0, 2.0, 3.0, 6.0, 10.0)


def _tolerance_scenario(base: Scenario, tolerance_pp: float) -> Scenario:
    return base.replace(
        name=f"tolerance_{tolerance_pp:g}pp",
        accuracy=AccuracyRequirement.from_tolerances((tolerance_pp,), (1.0,)),
    )


def sensitivity(
    budget: Budget, out_dir: str, n_jobs: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """Figure 4's data: the sweep agents versus access bandwidth, users and accuracy tolerance (``paper`` base).

    Bandwidth: the access trace rescaled to each median uplink rate (downlink keeps the level's ratio).
    Returns: factor, value, agent, replicate, mean_latency_ms, mean_accuracy_pct, ...
    """
    from orchlib.system.scenario import paper

    base = paper().replace(n_requests=budget.sweep_requests)
    ratio = base.access.downlink_mbps / base.access.uplink_mbps
    cases: list[tuple[str, float, Scenario]] = []
    for mbps in sorted({*SENSITIVITY_UPLINK_MBPS, base.access.uplink_mbps}):
        link = dataclasses.replace(base.access, uplink_mbps=mbps, downlink_mbps=mbps * ratio)
        cases.append(("bandwidth", mbps, base.replace(name=f"uplink_{mbps:g}mbps", access=link)))
    for n in SENSITIVITY_USERS:
        cases.append(("users", n, base.replace(name=f"users_{n}", n_users=n)))
    for t in (1.0, 3.0, 6.0, 10.0):
        cases.append(("accuracy", t, _tolerance_scenario(base, t)))
    runs = _sweep_runs([c[2] for c in cases], SWEEP_AGENTS, budget, out_dir, n_jobs, progress)
    lookup = {c[2].name: (c[0], c[1]) for c in cases}
    runs["factor"] = runs["scenario"].astype(str).map(lambda s: lookup[s][0])
    runs["value"] = runs["scenario"].astype(str).map(lambda s: lookup[s][1])
    return runs


def tradeoff_runs(
    budget: Budget, out_dir: str, n_jobs: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """The trade-off sweep's runs: Q-learning, the stand-in and the oracle at every tolerance of
    :data:`TOLERANCES_PP` (every request of a run tolerates the same loss below the best variant), at the
    headline budget (``budget.n_requests`` x ``budget.n_replicates``, X7).

    Returns: :func:`orchlib.study.metrics.summarize_runs` rows plus ``tolerance_pp``.
    """
    from orchlib.system.scenario import paper

    base = paper().replace(n_requests=budget.n_requests)
    scenarios = [_tolerance_scenario(base, t) for t in TOLERANCES_PP]
    runs = _sweep_runs(
        scenarios,
        ("q_learning", SOTA, "oracle"),
        budget,
        out_dir,
        n_jobs,
        progress,
        n_replicates=budget.n_replicates,
    )
    runs["tolerance_pp"] = (
        runs["scenario"].astype(str).map({s.name: t for s, t in zip(scenarios, TOLERANCES_PP, strict=True)})
    )
    return runs


def paired_tradeoff(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 6's data from :func:`tradeoff_runs`: each run's time reduction and accuracy loss over the
    stand-in's run of the same tolerance and replicate.

    Returns: agent, tolerance_pp, replicate, time_reduction, speedup_ratio, accuracy_loss_pp.
    """
    base_runs = runs[runs["agent"] == SOTA].set_index(["tolerance_pp", "replicate"])
    rows = []
    for r in runs[runs["agent"] != SOTA].itertuples():
        b = base_runs.loc[(r.tolerance_pp, r.replicate)]
        rows.append(
            {
                "agent": r.agent,
                "tolerance_pp": r.tolerance_pp,
                "replicate": r.replicate,
                "time_reduction": 1 - r.mean_latency_ms / b["mean_latency_ms"],
                "speedup_ratio": b["mean_latency_ms"] / r.mean_latency_ms - 1,
                "accuracy_loss_pp": b["mean_accuracy_pct"] - r.mean_accuracy_pct,
            }
        )
    return pd.DataFrame(rows)


def tradeoff(budget: Budget, out_dir: str, n_jobs: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Figure 6's data: time reduction and accuracy loss over the stand-in as the accuracy tolerance varies
    (:func:`paired_tradeoff` of :func:`tradeoff_runs`)."""
    return paired_tradeoff(tradeoff_runs(budget, out_dir, n_jobs=n_jobs, progress=progress))


def operating_point(
    runs: pd.DataFrame,
    budget_pp: float = PAPER_ACCURACY_BUDGET_PP,
    agent: str = "q_learning",
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """The paper's operating point (X7): ``agent`` against the stand-in at every tolerance of the trade-off
    sweep, and which tolerance the rule picks: the largest whose mean accuracy loss is below ``budget_pp``.

    Args:
        runs: :func:`tradeoff_runs`.
        budget_pp: the accuracy budget, percentage points (the paper's 0.9).
        agent: the method compared with the stand-in.

    Returns:
        :func:`orchlib.study.metrics.compare_to_baseline` rows of ``agent`` (one per tolerance, increasing),
        with ``tolerance_pp``, ``budget_pp`` and ``chosen`` (True on at most one row; none if no tolerance
        keeps the mean loss below the budget).

    Raises:
        ValueError: ``runs`` lacks ``tolerance_pp`` or has no runs of ``agent``, or a bad ``budget_pp``.
    """
    from orchlib.study.metrics import compare_to_baseline

    if "tolerance_pp" not in runs.columns:
        raise ValueError(
            f"runs: lacks column 'tolerance_pp' (use tradeoff_runs); it has {list(runs.columns)}"
        )
    if not (isinstance(budget_pp, int | float) and np.isfinite(budget_pp) and budget_pp > 0):
        raise ValueError(f"budget_pp must be a finite number > 0 (percentage points), got {budget_pp!r}")
    if not (runs["agent"].astype(str) == agent).any():
        raise ValueError(
            f"runs have no runs of agent {agent!r}; agents: {sorted(runs['agent'].astype(str).unique())}"
        )
    part = runs[runs["agent"].astype(str).isin([agent, SOTA])]
    table = compare_to_baseline(part, SOTA, rng=rng)
    tolerance = dict(zip(runs["scenario"].astype(str), runs["tolerance_pp"], strict=True))
    table["tolerance_pp"] = table["scenario"].astype(str).map(tolerance)
    table = table.sort_values("tolerance_pp").reset_index(drop=True)
    table["budget_pp"] = float(budget_pp)
    within = table.index[table["accuracy_loss_pp"] < budget_pp]
    table["chosen"] = False
    if len(within):
        table.loc[within.max(), "chosen"] = True
    return table


#: methods of figure 7 (hybrid learning): the model-free learner (the paper's orchestrator), the companion paper's
#: plain RL baseline (Q-learning with textbook defaults, A1), the textbook hybrid (Dyna-Q, A2) and the profile
#: hybrid (A7).
HYBRID_AGENTS: tuple[str, ...] = ("q_learning", "q_learning_textbook", "dyna_q", "hybrid")
#: the settling rule of figure 7 (X3): windows starting at every request, of max(SETTLE_WINDOW, SETTLE_GROWTH x
#: the request index) requests, within SETTLE_TOLERANCE of the method's own final level.
SETTLE_WINDOW, SETTLE_GROWTH, SETTLE_TOLERANCE = 20, 0.1, 0.05
#: the settling rule as keyword arguments of :func:`orchlib.study.aggregates.settling` and ``acceleration``.
SETTLE_RULE = {"window": SETTLE_WINDOW, "growth": SETTLE_GROWTH, "tolerance": SETTLE_TOLERANCE}


def steady_scenario(world: Scenario, n_requests: int) -> Scenario:
    """``world`` with a steady Wi-Fi access link (no trace), named ``<world>_steady_wifi``, for measuring
    learning speed: with the replayed trace, windowed latency follows the trace; the steady link keeps
    everything else of the world (users, devices, requirements, hidden conditions)."""
    return world.replace(
        name=f"{world.name}_steady_wifi", access=LinkSpec.from_level("wifi"), n_requests=n_requests
    )


def hybrid_scenario(n_requests: int) -> Scenario:
    """The ``paper`` world with a steady Wi-Fi link (:func:`steady_scenario`)."""
    from orchlib.system.scenario import paper

    return steady_scenario(paper(), n_requests)


def hybrid(
    budget: Budget, out_dir: str, n_jobs: int | None = None, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Figure 7's data: how many real requests each method of :data:`HYBRID_AGENTS` needs to reach its own
    final level and stay there, on ``paper`` and ``ideal`` with a steady link (:func:`steady_scenario`),
    ``budget.learning_replicates`` runs each; and the hybrid's acceleration over Q-learning.

    The measure is :func:`orchlib.study.aggregates.settling` (latency relative to the oracle's, pooled over
    runs, windows starting at every request and growing with it (:data:`SETTLE_RULE`), within
    :data:`SETTLE_TOLERANCE` of the final level; bootstrap CIs over runs) and the acceleration
    :func:`orchlib.study.aggregates.acceleration` (ratio of settling requests).

    Returns:
        ``(settle, curves, accel)``: the settling table and the curves of :func:`~orchlib.study.aggregates.settling`,
        and one acceleration row per (world, reference) (references ``q_learning`` and
        ``q_learning_textbook``); each with a ``world`` column (``paper``/``ideal``).
    """
    from orchlib.study import aggregates
    from orchlib.study.runner import grid, run_sweep
    from orchlib.system.scenario import ideal, paper

    worlds = {w.name: steady_scenario(w, budget.n_requests) for w in (paper(), ideal())}
    specs = grid(
        list(worlds.values()), list(HYBRID_AGENTS), n_replicates=budget.learning_replicates, seed=budget.seed
    )
    requests = run_sweep(specs, out_dir, n_jobs=n_jobs, progress=progress).requests
    rule = SETTLE_RULE
    settle, curves = aggregates.settling(requests, HYBRID_AGENTS, rng=budget.seed, **rule)
    # one world at a time with the same seed, as the learning targets compute it (the same numbers)
    accel = pd.concat(
        [
            aggregates.acceleration(
                requests[requests["scenario"].astype(str) == scenario.name],
                "hybrid",
                reference=r,
                rng=budget.seed,
                **rule,
            ).assign(reference=r)
            for scenario in worlds.values()
            for r in ("q_learning", "q_learning_textbook")
        ],
        ignore_index=True,
    )
    world_of = {scenario.name: name for name, scenario in worlds.items()}
    return tuple(t.assign(world=t["scenario"].map(world_of)) for t in (settle, curves, accel))


def nonstationary(
    budget: Budget, out_dir: str, n_jobs: int | None = None, progress: bool = True, drop_factor: float = 0.2
):
    """Figure 8's data: the ``paper`` scenario with the access bandwidth dropping to ``drop_factor`` halfway.

    Returns: (windowed curves: agent, replicate, time_s, mean_latency_ms; recovery per run; change time in s).
    """
    from orchlib.study.metrics import recovery_time
    from orchlib.study.runner import grid, run_sweep
    from orchlib.system.scenario import paper

    base = paper().replace(n_requests=budget.n_requests)
    rate_per_s = base.n_users * base.arrivals.rate_per_s
    change_s = round(0.5 * budget.n_requests / rate_per_s)
    scenario = base.replace(
        name="bandwidth_drop",
        access=dataclasses.replace(base.access, changes=((float(change_s), drop_factor),)),
    )
    agents = ("q_learning", "dyna_q", SOTA, "sw_ucb", "greedy_profiles", "oracle")
    result = run_sweep(
        grid([scenario], list(agents), n_replicates=budget.sweep_replicates, seed=budget.seed),
        out_dir,
        n_jobs=n_jobs,
        progress=progress,
    )
    req = result.requests
    window_s = max(5.0, round(budget.window / rate_per_s))
    curves = (
        req.assign(time_s=(req["time_s"] // window_s) * window_s)
        .groupby(["agent", "replicate", "time_s"], observed=True, as_index=False)["latency_ms"]
        .mean()
        .rename(columns={"latency_ms": "mean_latency_ms"})
    )
    # Windows of `budget.window` requests and a 10% band: per-window means of the replayed trace move by several
    # percent on their own, so a 5% band over short windows would call almost every run "not recovered".
    recovery = recovery_time(req, change_time_s=float(change_s), window=budget.window, tolerance=0.10)
    return curves, recovery, float(change_s)


def sanity_markdown(n_requests: int = 1000, rng: int = 0) -> str:
    """The sanity table of ``docs/sanity.md``: fastest tier per variant, steady level and user count (``paper``)."""
    from orchlib.system.scenario import paper

    table = sanity_table(paper(), n_requests=n_requests, rng=rng)
    wide = fastest_tier(table)
    header = "| variant | " + " | ".join(f"{lv} x{n}" for lv, n in wide.columns) + " |"
    lines = [
        "# Sanity table: the fastest tier per variant, network level and number of users",
        "",
        "Generated by `python -m orchlib sanity --out docs/sanity.md` (do not edit by hand). Scenario: `paper`",
        "(a reconstruction, `docs/assumptions.md`) with its trace replaced by each steady level; every user",
        f"sends every request with the same (tier, variant); {n_requests} requests per cell; the fastest tier",
        "by mean response time. Columns: level x number of users.",
        "",
        header,
        "|" + "---|" * (len(wide.columns) + 1),
    ]
    lines += ["| " + name + " | " + " | ".join(wide.loc[name]) + " |" for name in wide.index]
    winners = table.loc[table.groupby(["level", "n_users", "variant"])["mean_latency_ms"].idxmin()]
    counts = winners["tier"].value_counts()
    per_level = (
        winners.groupby(["level", "tier"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(TIERS), fill_value=0)
    )
    lines += ["", "Cells won per tier: " + ", ".join(f"{t} {int(counts.get(t, 0))}" for t in TIERS) + ".", ""]
    lines += ["| level | " + " | ".join(TIERS) + " |", "|---|---|---|---|"]
    lines += [
        f"| {level} | " + " | ".join(str(int(v)) for v in row) + " |" for level, row in per_level.iterrows()
    ]
    lines.append("")
    if counts.get("cloud", 0) == 0:
        lines.append(
            "The cloud wins no cell: its profile is the same measured x86 CPU as the edge (no faster cloud CPU is "
            "assumed, S4), so it adds the WAN RTT to the edge's path and wins only when the edge queue is long. "
            "The paper's finding that the cloud is sometimes the best place is not reproduced by this reconstruction."
        )
    if len(set(winners["tier"])) == 1:
        lines.append(
            f"Only one tier ({winners['tier'].iloc[0]}) ever wins: this scenario cannot show the paper's motivation findings."
        )
    return "\n".join(lines) + "\n"
