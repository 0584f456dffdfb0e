"""How much one orchestration decision changes the requests after it: the measurement behind Q-learning's gamma.

Q-learning's discount ``gamma`` says how much a decision's value depends on what happens to the requests after
it. In this system a request's choice reaches later requests only through shared queues (the access uplink,
the edge and cloud servers, the user's own device). If later requests are barely touched, bootstrapping from
the next request's state adds that state's exogenous noise to every target and little information, and a
small ``gamma`` learns faster; if the effect is large, a small ``gamma`` would ignore queueing the decision
causes. :func:`decision_influence` measures the effect by common random numbers; :func:`gamma_from_influence`
turns it into a discount.

Method. A reference policy (:class:`~orchlib.agents.baselines.GreedyProfiles`, which keeps the system in the
regime a trained orchestrator reaches) serves requests. Every ``spacing`` requests, the environment is
copied twice; in one copy the current request takes the reference action, in the other a uniformly random
other valid action (the choices an exploring learner compares). Both copies then serve the next ``horizon``
requests with the reference policy. Arrivals, requirements and compute noise are drawn from the same
generator state in both copies and do not depend on the actions, so every difference between the copies is
caused by the one changed decision.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from orchlib.agents.base import check_int
from orchlib.agents.baselines import GreedyProfiles
from orchlib.envs.orchestration import OrchestrationEnv, public_info
from orchlib.system.scenario import Scenario


def decision_influence(
    scenario: Scenario | str,
    n_decisions: int = 200,
    horizon: int = 20,
    spacing: int = 50,
    warmup: int = 500,
    rng: np.random.Generator | int | None = 0,
) -> pd.DataFrame:
    """Effect of changing one decision on that request and the ``horizon`` requests after it.

    Args:
        scenario: the system (a :class:`Scenario` or a preset name).
        n_decisions: decisions changed (independent samples), >= 1.
        horizon: later requests followed after each changed decision, >= 1.
        spacing: requests served between two sampled decisions, >= 1.
        warmup: requests served before the first sample (so queues reach their usual state), >= 0.
        rng: seed or generator (the environment's seed and the alternative actions come from it).

    Returns:
        Tidy table, one row per (sample, lag) with ``lag`` 0 (the changed request itself) to ``horizon``:
        ``latency_change_ms`` (alternative minus reference, ms) and ``state_changed`` (whether the discrete
        state the request was decided in differs; always False at lag 0).

    Raises:
        ValueError: a count outside its range (named).
    """
    check_int("n_decisions", n_decisions, 1)
    check_int("horizon", horizon, 1)
    check_int("spacing", spacing, 1)
    check_int("warmup", warmup, 0)
    gen = np.random.default_rng(rng)
    n_steps = warmup + n_decisions * (spacing + horizon + 1)
    env = OrchestrationEnv(scenario, oracle=False, max_steps=n_steps + 1)
    policy = GreedyProfiles(env.observation_space, env.action_space, env.system)
    policy.reset(gen.spawn(1)[0])
    obs, info = env.reset(seed=int(gen.integers(2**63)))

    def serve(branch: OrchestrationEnv, first: int) -> tuple[np.ndarray, np.ndarray]:
        latencies, states = np.empty(horizon + 1), np.empty(horizon + 1, dtype=np.int64)
        action, states[0] = first, -1
        for lag in range(horizon + 1):
            o, _, _, _, i = branch.step(action)
            latencies[lag] = i["latency_ms"]
            if lag < horizon:
                states[lag + 1] = o
                action = policy.act(o, i["action_mask"], public_info(i))
        return latencies, states

    rows = []
    for sample in range(n_decisions):
        for _ in range(warmup if sample == 0 else spacing):
            obs, _, _, _, info = env.step(policy.act(obs, info["action_mask"], public_info(info)))
        mask = info["action_mask"]
        reference = policy.act(obs, mask, public_info(info))
        others = np.flatnonzero(mask)
        others = others[others != reference]
        if others.size == 0:
            continue
        alternative = int(others[gen.integers(others.size)])
        # The system description is read-only and large: share it between the copies instead of copying it
        # (a fresh memo per copy, since deepcopy records every object it copied in the memo it is given).
        ref_latency, ref_states = serve(copy.deepcopy(env, {id(env.system): env.system}), reference)
        alt_latency, alt_states = serve(copy.deepcopy(env, {id(env.system): env.system}), alternative)
        for lag in range(horizon + 1):
            rows.append(
                {
                    "sample": sample,
                    "lag": lag,
                    "latency_change_ms": alt_latency[lag] - ref_latency[lag],
                    "state_changed": lag > 0 and bool(alt_states[lag] != ref_states[lag]),
                }
            )
    return pd.DataFrame(rows)


def influence_ratio(table: pd.DataFrame) -> float:
    """Share of a decision's effect that falls on later requests, relative to its effect on its own request.

    ``sum over lags k >= 1 of |mean latency change at k|`` divided by ``mean |latency change at lag 0|``
    (the mean over samples is taken first, so noise of either sign averages out and what remains is the
    expected knock-on effect).

    Raises:
        ValueError: the table lacks the columns of :func:`decision_influence`, or no decision changed its own
            request's latency.
    """
    missing = {"lag", "latency_change_ms"} - set(table.columns)
    if missing:
        raise ValueError(f"influence table lacks columns {sorted(missing)} (see decision_influence)")
    by_lag = table.groupby("lag")["latency_change_ms"]
    immediate = float(table.loc[table["lag"] == 0, "latency_change_ms"].abs().mean())
    if not immediate > 0:
        raise ValueError("no sampled decision changed its own request's latency; the ratio is undefined")
    later = by_lag.mean().drop(index=0, errors="ignore").abs().sum()
    return float(later) / immediate


def gamma_from_influence(ratio: float) -> float:
    """The discount whose weight on the future, ``gamma / (1 - gamma)``, equals the measured ``ratio``.

    A value ``Q(s, a)`` with discount ``gamma`` weighs the following requests ``gamma + gamma**2 + ... =
    gamma / (1 - gamma)`` relative to the request itself; matching it to the measured share of the decision's
    effect that lands on later requests gives ``gamma = ratio / (1 + ratio)``.

    Raises:
        ValueError: ``ratio`` negative or not finite.
    """
    if not (np.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"ratio must be a finite number >= 0, got {ratio!r}")
    return float(ratio / (1.0 + ratio))
