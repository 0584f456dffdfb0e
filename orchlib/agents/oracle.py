"""Optimal references: the per-request clairvoyant oracle, and the discrete-state MDP solved exactly.

Two different optima, for two different questions:

* :class:`OracleAgent` is the **regret reference reported in results**. For every request it takes the valid
  action with the lowest response time, computed by :meth:`orchlib.system.simulator.Simulator.evaluate` from the
  simulator's true state (queues, link occupancy, this request's compute noise). It is the best response
  time achievable for each request given the requests before it, so ``latency_ms - oracle_latency_ms`` is
  what an orchestrator loses on that request (never negative: the env evaluates it in the state the
  orchestrator's own earlier choices left). The environment reports it as ``info["oracle_latency_ms"]``. As
  a *policy* it is greedy per request (it does not plan for the queues later requests will meet), so over a
  whole run a far-sighted policy could in principle have a lower mean response time than the OracleAgent.
* :func:`estimate_mdp` + :func:`value_iteration` give the **best stationary policy on the discrete
  observation** (the state a tabular learner sees). This is the policy tabular Q-learning and Dyna-Q should
  converge to, so it is the reference for their *convergence*, not for their regret: a policy that only
  sees the discrete state cannot match the clairvoyant oracle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from orchlib.agents.base import Agent, Observation, random_valid_action
from orchlib.envs.orchestration import OrchestrationEnv, public_info


def _orchestration_env(env: gym.Env) -> OrchestrationEnv:
    inner = getattr(env, "unwrapped", None)
    if not isinstance(inner, OrchestrationEnv):
        raise TypeError(
            f"env must be an orchlib OrchestrationEnv (possibly wrapped), got {type(env).__name__}"
        )
    return inner


class OracleAgent(Agent):
    """Clairvoyant per-request optimum (privileged): reads the true simulator state through the env.

    Each decision is :meth:`orchlib.envs.orchestration.OrchestrationEnv.oracle_action`: the valid action whose response time,
    evaluated on the simulator's current queues, link occupancy and this request's compute-time draw, is the
    lowest. No real orchestrator can know these, hence ``privileged = True``. The observation, mask and info
    it is given are ignored, so it must be driven with the same env it was built with.

    Args:
        env: the environment the agent acts in (a wrapped env is unwrapped).

    Raises:
        TypeError: ``env`` is not an :class:`~orchlib.envs.orchestration.OrchestrationEnv`.
    """

    privileged = True

    def __init__(self, env: gym.Env) -> None:
        self.env = _orchestration_env(env)
        super().__init__(self.env.observation_space, self.env.action_space)

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """Nothing to learn; keeps an ``rng_`` for the interface."""
        self.rng_ = np.random.default_rng(rng)

    def act(self, obs: Observation, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """The env's clairvoyant best valid action for its current request."""
        return self.env.oracle_action()

    @property
    def name(self) -> str:
        return "Oracle"


@dataclass(frozen=True, eq=False)
class MDP:
    """A finite MDP estimated from simulation (see :func:`estimate_mdp`). ``S`` states, ``A`` actions."""

    #: transition probabilities ``P[a, s, s']``, shape (A, S, S); each row ``P[a, s]`` sums to 1. Rows of
    #: unvisited pairs are a self-loop (``P[a, s, s] = 1``) and carry no information.
    P: np.ndarray
    #: mean reward of ``(s, a)`` (minus seconds of response time, times the env's ``reward_scale``), shape
    #: (S, A); 0 for unvisited pairs.
    R: np.ndarray
    #: number of sampled transitions from each ``(s, a)``, shape (S, A).
    counts: np.ndarray
    #: ``counts > 0``, shape (S, A).
    visited: np.ndarray
    #: the accuracy mask of each state (``env.state_mask``), shape (S, A).
    valid: np.ndarray

    @property
    def allowed(self) -> np.ndarray:
        """Pairs an optimal policy may use: valid and sampled at least once, shape (S, A)."""
        return self.valid & self.visited


def estimate_mdp(
    env: gym.Env,
    n_samples: int,
    rng: np.random.Generator | int | None = None,
    behavior: Literal["uniform"] | Agent = "uniform",
) -> MDP:
    """Estimate the discrete-state MDP of an environment by simulating it.

    What is estimated, and why by simulation: the discrete observation (bandwidth level, edge load level,
    uplink busy, requirement class) aggregates a continuous system state (exact backlogs, the next arrival
    times, the link rate over time), and the next state depends on exogenous arrivals and network changes,
    so ``P`` has no closed form. It is estimated as the empirical transition frequencies and mean rewards of
    one long run. Because the observation is an aggregate, the process on it is not exactly Markov, and the
    frequencies depend on how often each underlying situation occurs within a discrete state, which depends
    on the behavior policy. The result therefore approximates the MDP *as seen under the behavior policy*
    (by default uniformly random over the valid actions, which in a long run visits every valid pair of
    every reachable state). Tabular Q-learning on aggregated states approaches the optimum of the same kind
    of behavior-dependent model (Singh, Jaakkola & Jordan 1995), which is what this estimate is used for.

    The run is one continuing trajectory (the task is continuing; the env's truncation length is a time
    limit, not part of the MDP), so the env's truncation is ignored. After ``n_samples`` transitions it goes
    on until the current state has a sampled valid action, so that every state the estimated chain can
    reach can also be left (usually zero extra steps).

    Args:
        env: an :class:`~orchlib.envs.orchestration.OrchestrationEnv` with ``observation="discrete"`` (possibly wrapped). It
            is reset (with a seed drawn from ``rng``) and stepped; its own state is overwritten.
        n_samples: number of transitions to sample, an integer >= 1.
        rng: seed or generator for the env's seed and the behavior policy's choices.
        behavior: ``"uniform"`` (uniformly random valid action), or an :class:`~orchlib.agents.base.Agent` whose
            ``act`` chooses (it is reset from ``rng``; it is not taught; non-privileged agents get the public
            info only).

    Returns:
        The estimated :class:`MDP`.

    Raises:
        TypeError: ``env`` is not an OrchestrationEnv, or ``behavior`` is neither ``"uniform"`` nor an Agent.
        ValueError: ``env`` has a box observation, or ``n_samples`` is not a positive integer.
    """
    inner = _orchestration_env(env)
    if inner.observation_mode != "discrete":
        raise ValueError(
            f"estimate_mdp needs an env with observation='discrete', got observation={inner.observation_mode!r}"
        )
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if not (behavior == "uniform" or isinstance(behavior, Agent)):
        raise TypeError(f"behavior must be 'uniform' or an orchlib Agent, got {behavior!r}")
    rng = np.random.default_rng(rng)
    n_states, n_actions = inner.n_states, int(inner.action_space.n)
    valid = np.array([inner.state_mask(s) for s in range(n_states)], dtype=bool)
    agent = behavior if isinstance(behavior, Agent) else None
    if agent is not None:
        agent.reset(rng.spawn(1)[0])
    obs, info = inner.reset(seed=int(rng.integers(2**63)))
    # Transitions are collected in Python lists and counted with bincount at the end (one pass, no per-step
    # numpy indexing).
    sources: list[int] = []
    actions: list[int] = []
    targets: list[int] = []
    rewards: list[float] = []
    sampled = np.zeros((n_states, n_actions), dtype=bool)
    step = 0
    while step < n_samples or not (sampled[obs] & valid[obs]).any():
        mask = info["action_mask"]
        if agent is None:
            a = random_valid_action(mask, rng)
        else:
            a = int(agent.act(obs, mask, info if agent.privileged else public_info(info)))
        next_obs, reward, _, _, info = inner.step(a)
        sources.append(int(obs))
        actions.append(a)
        targets.append(int(next_obs))
        rewards.append(float(reward))
        sampled[obs, a] = True
        obs = next_obs
        step += 1
    s = np.asarray(sources)
    a = np.asarray(actions)
    pair = s * n_actions + a
    counts = np.bincount(pair, minlength=n_states * n_actions).reshape(n_states, n_actions)
    reward_sums = np.bincount(pair, weights=rewards, minlength=n_states * n_actions).reshape(
        n_states, n_actions
    )
    transitions = np.bincount(
        (a * n_states + s) * n_states + np.asarray(targets), minlength=n_actions * n_states * n_states
    ).reshape(n_actions, n_states, n_states)
    visited = counts > 0
    P = transitions / np.maximum(counts.T, 1)[:, :, None]
    unvisited_a, unvisited_s = np.nonzero(~visited.T)
    P[unvisited_a, unvisited_s, unvisited_s] = 1.0
    R = np.where(visited, reward_sums / np.maximum(counts, 1), 0.0)
    return MDP(P=P, R=R, counts=counts, visited=visited, valid=valid)


def value_iteration(
    P: np.ndarray,
    R: np.ndarray,
    gamma: float,
    valid: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve ``V(s) = max_{a allowed in s} [R(s, a) + gamma * sum_s' P[a, s, s'] V(s')]`` by value iteration.

    Starts from ``V = 0`` and iterates the Bellman optimality operator until successive value functions
    differ by less than ``tol`` in max norm. States with no allowed action (e.g. never visited in an
    estimated MDP) get ``V = 0``, ``Q = -inf`` and policy ``-1``; they must be unreachable from allowed
    pairs, otherwise that arbitrary 0 would leak into the other values, so this is checked.

    For an estimated MDP pass ``valid=mdp.allowed`` (valid *and* visited), so that a policy never relies on an
    unsampled pair's placeholder row.

    Args:
        P: transition probabilities, shape (A, S, S), rows summing to 1.
        R: expected rewards, shape (S, A), finite where allowed.
        gamma: discount factor in [0, 1).
        valid: bool (S, A), the actions the max may use in each state; None: all.
        tol: stopping tolerance on ``max |V_new - V|`` (reward units), > 0.
        max_iter: iteration cap; None: the contraction bound ``log(tol / max|R|) / log(gamma)`` plus one,
            which is always enough.

    Returns:
        ``(V, Q, policy)``: values, shape (S,); action values, shape (S, A), ``-inf`` where not allowed;
        greedy allowed action of every state, shape (S,), lowest index on ties, ``-1`` where none.

    Raises:
        ValueError: inconsistent shapes, rows of ``P`` not summing to 1, ``gamma`` outside [0, 1), ``tol`` not
            positive, non-finite allowed rewards, or a state without allowed actions reachable from an
            allowed pair.
        RuntimeError: not converged within an explicitly given ``max_iter``.
    """
    P = np.asarray(P, dtype=float)
    R = np.asarray(R, dtype=float)
    if P.ndim != 3 or P.shape[1] != P.shape[2]:
        raise ValueError(f"P must have shape (A, S, S), got {P.shape}")
    n_actions, n_states, _ = P.shape
    if R.shape != (n_states, n_actions):
        raise ValueError(f"R must have shape (S, A) = ({n_states}, {n_actions}), got {R.shape}")
    allowed = np.ones((n_states, n_actions), bool) if valid is None else np.asarray(valid)
    if allowed.dtype != bool or allowed.shape != (n_states, n_actions):
        raise ValueError(
            f"valid must be a bool array of shape ({n_states}, {n_actions}), got {allowed.dtype} {allowed.shape}"
        )
    if not (isinstance(gamma, int | float | np.floating) and 0 <= gamma < 1):
        raise ValueError(f"gamma must be a number in [0, 1), got {gamma!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if np.any(P < 0) or not np.allclose(P.sum(axis=2), 1.0, atol=1e-9):
        raise ValueError("P must be non-negative with every row P[a, s, :] summing to 1")
    if not np.isfinite(R[allowed]).all():
        raise ValueError("R must be finite on every allowed (s, a)")
    has_action = allowed.any(axis=1)
    leak = np.einsum("ast,sa->t", P, allowed.astype(float)) > 0
    if np.any(leak & ~has_action):
        raise ValueError(
            f"states {np.flatnonzero(leak & ~has_action).tolist()} have no allowed action but are reachable "
            "from allowed pairs"
        )
    r_max = float(np.abs(R[allowed]).max()) if allowed.any() else 0.0
    explicit_cap = max_iter is not None
    if max_iter is None:
        # ||V_{k+1} - V_k|| <= gamma^k ||V_1 - V_0|| <= gamma^k r_max, so this many iterations reach tol.
        bound = 0 if gamma == 0 or r_max <= tol else math.ceil(math.log(tol / r_max) / math.log(gamma))
        max_iter = bound + 2
    R_allowed = np.where(allowed, R, 0.0)
    V = np.zeros(n_states)
    for _ in range(max_iter):
        Q = np.where(allowed, R_allowed + gamma * np.einsum("ast,t->sa", P, V), -np.inf)
        V_new = np.where(has_action, Q.max(axis=1), 0.0)
        delta = float(np.abs(V_new - V).max())
        V = V_new
        if delta < tol:
            break
    else:
        if explicit_cap:
            raise RuntimeError(f"value iteration did not converge to tol={tol} within max_iter={max_iter}")
    Q = np.where(allowed, R_allowed + gamma * np.einsum("ast,t->sa", P, V), -np.inf)
    policy = np.where(has_action, Q.argmax(axis=1), -1)
    return V, Q, policy
