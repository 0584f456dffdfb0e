"""Experiments as data: each function runs a sweep of the simulator or the runner and returns a tidy table.

Plot functions in :mod:`orchlib.plots` only read these tables; ``orchlib reproduce`` calls both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from orchlib.scenario import TIERS, AccuracyRequirement, LinkSpec, Scenario
from orchlib.simulator import Simulator, System, build_system


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


def motivation(
    base: Scenario,
    variant: str = "mobilenet_v1_1.0_224",
    levels: Sequence[str] = ("wifi", "4g_good", "4g_weak", "3g"),
    users: Sequence[int] = (1, 2, 4, 8, 16, 32),
    users_level: str = "wifi",
    requirements_pct: Sequence[float] = (0.0, 50.0, 60.0, 65.0, 68.0, 70.0),
    requirement_level: str = "wifi",
    n_requests: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """The three motivation experiments: response time of end / edge / cloud execution

    (1) versus network level (one user, ``variant``), (2) versus number of users sharing the access link and
    edge (``users_level``, ``variant``), (3) versus accuracy requirement (one user, ``requirement_level``; on
    each tier the fastest variant meeting the requirement, as its profile says).

    Returns a tidy table: ``panel`` (network/users/accuracy), ``x`` (level name, user count or requirement),
    ``tier``, ``variant``, ``mean_latency_ms``, ``p95_latency_ms``, ``n_requests``.
    """
    seeds = iter(
        np.random.SeedSequence(np.random.default_rng(rng).integers(2**63)).spawn(
            len(levels) + len(users) + len(requirements_pct)
        )
    )
    one = base.replace(n_users=1, accuracy=AccuracyRequirement(), n_requests=n_requests, variant_subset=None)
    rows = []

    def measure(panel: str, x: object, scenario: Scenario, pick_variant) -> None:
        system = build_system(scenario)
        seed = next(seeds)
        for tier_index, tier in enumerate(TIERS):
            v = pick_variant(system, tier_index)
            latencies = fixed_action_latencies(
                system, system.encode_action(tier_index, v), n_requests, np.random.default_rng(seed)
            )
            rows.append(
                {
                    "panel": panel,
                    "x": x,
                    "tier": tier,
                    "variant": system.variant_names[v],
                    "mean_latency_ms": latencies.mean(),
                    "p95_latency_ms": np.percentile(latencies, 95),
                    "n_requests": n_requests,
                }
            )

    def fixed(system: System, _tier: int) -> int:
        return system.variant_names.index(variant)

    for level in levels:
        measure("network", level, _steady(one, level), fixed)
    for n in users:
        measure("users", n, _steady(one, users_level).replace(n_users=n), fixed)
    for requirement in requirements_pct:

        def fastest_meeting(system: System, tier: int, requirement: float = requirement) -> int:
            ok = system.top1_pct >= requirement
            return int(np.flatnonzero(ok)[np.argmin(system.median_ms[tier][ok])])

        measure("accuracy", requirement, _steady(one, requirement_level), fastest_meeting)
    return pd.DataFrame(rows)


def with_profiles(scenario: Scenario, **profiles: str) -> Scenario:
    """``scenario`` with other device profiles per tier, e.g. ``with_profiles(s, end="pixel3_cpu4")``."""
    return scenario.replace(
        **{tier: dataclasses.replace(getattr(scenario, tier), profile=p) for tier, p in profiles.items()}
    )
