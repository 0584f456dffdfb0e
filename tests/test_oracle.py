"""The optimal references: value iteration exactly on a hand-solved MDP, the estimated MDP of the env, and
tabular learners converging to the value-iteration policy on the ``tiny`` scenario."""

from __future__ import annotations

import numpy as np
import pytest

from orchlib.agents.base import Agent
from orchlib.agents.catalogue import PAPER_DEFAULTS, TEXTBOOK_DEFAULTS, make_agent
from orchlib.agents.oracle import MDP, OracleAgent, estimate_mdp, value_iteration
from orchlib.envs.orchestration import OrchestrationEnv

GAMMA = PAPER_DEFAULTS["gamma"]


# ---------------------------------------------------------------- value iteration, exact


def two_state_mdp() -> tuple[np.ndarray, np.ndarray]:
    """State 0: action 0 stays (reward -1); action 1 costs -2 and moves to state 1 with probability 1/2.
    State 1: action 0 stays for free (reward 0); action 1 costs -5 and goes back to state 0."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = 1.0
    P[1, 0] = [0.5, 0.5]
    P[0, 1, 1] = 1.0
    P[1, 1, 0] = 1.0
    R = np.array([[-1.0, -2.0], [0.0, -5.0]])
    return P, R


def test_value_iteration_on_a_hand_solved_two_state_mdp() -> None:
    """By hand, gamma = 0.9: in state 1 staying is free forever, so V(1) = 0. In state 0, staying gives
    V = -1 / (1 - 0.9) = -10, leaving gives V(0) = -2 + 0.9 (V(0)/2 + V(1)/2), i.e. V(0) = -2 / 0.55 = -40/11,
    which is better although its immediate reward is worse (the policy is not myopic)."""
    P, R = two_state_mdp()
    V, Q, policy = value_iteration(P, R, 0.9)
    v0 = -2 / (1 - 0.45)
    np.testing.assert_allclose(V, [v0, 0.0], atol=1e-9)
    np.testing.assert_allclose(Q, [[-1 + 0.9 * v0, v0], [0.0, -5 + 0.9 * v0]], atol=1e-9)
    np.testing.assert_array_equal(policy, [1, 0])


def test_value_iteration_respects_the_valid_actions() -> None:
    """Forbidding the move out of state 0 leaves staying: V(0) = -1 / (1 - 0.9) = -10."""
    P, R = two_state_mdp()
    valid = np.array([[True, False], [True, True]])
    V, Q, policy = value_iteration(P, R, 0.9, valid=valid)
    np.testing.assert_allclose(V, [-10.0, 0.0], atol=1e-9)
    assert Q[0, 1] == -np.inf
    np.testing.assert_array_equal(policy, [0, 0])


def test_value_iteration_with_gamma_zero_is_the_reward() -> None:
    P, R = two_state_mdp()
    V, Q, policy = value_iteration(P, R, 0.0)
    np.testing.assert_array_equal(Q, R)
    np.testing.assert_array_equal(V, R.max(axis=1))
    np.testing.assert_array_equal(policy, [0, 0])


def test_value_iteration_refuses_bad_input() -> None:
    P, R = two_state_mdp()
    with pytest.raises(ValueError, match="gamma"):
        value_iteration(P, R, 1.0)
    with pytest.raises(ValueError, match="R must have shape"):
        value_iteration(P, R.T[:1], 0.9)
    with pytest.raises(ValueError, match="P must have shape"):
        value_iteration(P[0], R, 0.9)
    bad = P.copy()
    bad[0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="summing to 1"):
        value_iteration(bad, R, 0.9)
    # state 1 has no allowed action but state 0's action 1 leads there: its placeholder value would leak
    with pytest.raises(ValueError, match="no allowed action"):
        value_iteration(P, R, 0.9, valid=np.array([[True, True], [False, False]]))
    with pytest.raises(ValueError, match="valid must be a bool array"):
        value_iteration(P, R, 0.9, valid=np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="max_iter"):
        value_iteration(P, R, 0.9, max_iter=3)


# ---------------------------------------------------------------- the estimated MDP of the env


@pytest.fixture(scope="module")
def tiny_env() -> OrchestrationEnv:
    # max_steps far beyond the runs below, so only the tests' own loop lengths matter.
    return OrchestrationEnv("tiny", oracle=False, max_steps=10**9)


@pytest.fixture(scope="module")
def tiny_mdp(tiny_env: OrchestrationEnv) -> MDP:
    return estimate_mdp(tiny_env, 100_000, rng=0)


def test_estimated_mdp_is_well_formed(tiny_env: OrchestrationEnv, tiny_mdp: MDP) -> None:
    mdp = tiny_mdp
    S, A = tiny_env.n_states, tiny_env.action_space.n
    assert mdp.P.shape == (A, S, S) and mdp.R.shape == (S, A) and mdp.counts.shape == (S, A)
    assert mdp.counts.sum() >= 100_000
    np.testing.assert_array_equal(mdp.visited, mdp.counts > 0)
    np.testing.assert_allclose(mdp.P.sum(axis=2), 1.0, atol=1e-12)
    # unvisited rows are the documented self-loop
    a_idx, s_idx = np.nonzero(~mdp.visited.T)
    assert np.all(mdp.P[a_idx, s_idx, s_idx] == 1.0)
    np.testing.assert_array_equal(mdp.valid, [tiny_env.state_mask(s) for s in range(S)])
    # the uniform behavior policy never takes an invalid action, and visits every valid pair of the states it meets
    assert not np.any(mdp.visited & ~mdp.valid)
    met = mdp.counts.sum(axis=1) > 0
    np.testing.assert_array_equal(mdp.visited[met], mdp.valid[met])
    # rewards are minus seconds: negative, and no faster than the fastest compute time of any action
    fastest_s = tiny_env.system.median_ms.min() / 1e3
    assert np.all(mdp.R[mdp.visited] <= -fastest_s + 1e-12)
    # closed: every state reachable from a sampled pair can be left through a sampled valid pair
    reachable = np.einsum("ast,sa->t", mdp.P, mdp.visited.astype(float)) > 0
    assert np.all(mdp.allowed[reachable].any(axis=1))


def test_estimate_mdp_is_seeded(tiny_env: OrchestrationEnv) -> None:
    first = estimate_mdp(tiny_env, 2_000, rng=5)
    again = estimate_mdp(tiny_env, 2_000, rng=5)
    other = estimate_mdp(tiny_env, 2_000, rng=6)
    np.testing.assert_array_equal(first.counts, again.counts)
    np.testing.assert_array_equal(first.R, again.R)
    assert not np.array_equal(first.counts, other.counts)


def test_estimate_mdp_refuses_bad_input(tiny_env: OrchestrationEnv) -> None:
    with pytest.raises(ValueError, match="observation='discrete'"):
        estimate_mdp(OrchestrationEnv("tiny", observation="box"), 10, rng=0)
    with pytest.raises(ValueError, match="n_samples"):
        estimate_mdp(tiny_env, 0, rng=0)
    with pytest.raises(TypeError, match="behavior"):
        estimate_mdp(tiny_env, 10, rng=0, behavior="greedy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OrchestrationEnv"):
        estimate_mdp(object(), 10, rng=0)  # type: ignore[arg-type]


def test_oracle_agent_is_the_envs_clairvoyant_choice() -> None:
    env = OrchestrationEnv("tiny", max_steps=10**9)
    agent = OracleAgent(env)
    agent.reset(0)
    assert agent.privileged and "Oracle" in agent.name
    obs, info = env.reset(seed=3)
    for _ in range(300):
        a = agent.act(obs, info["action_mask"], info)
        obs, _, _, _, info = env.step(a)
        assert info["regret_ms"] == 0.0


# ---------------------------------------------------------------- learners reach the value-iteration policy


def train(
    agent: Agent, env: OrchestrationEnv, mdp: MDP, pi: np.ndarray, n_steps: int, seed: int, every: int = 250
) -> tuple[np.ndarray, list[float]]:
    """Train online; return the visits per state and, every ``every`` requests, the visit-weighted agreement:
    the share of the requests so far met in states where the greedy action equals the VI policy's."""
    agent.reset(seed)
    obs, info = env.reset(seed=seed + 1000)
    visits = np.zeros(env.n_states)
    agreement = []
    for t in range(n_steps):
        a = agent.act(obs, info["action_mask"], info)
        next_obs, reward, _, _, info = env.step(a)
        agent.learn(obs, a, reward, next_obs, info["action_mask"], info)
        visits[obs] += 1
        obs = next_obs
        if (t + 1) % every == 0:
            greedy = agent.greedy_policy(mdp.valid)  # type: ignore[attr-defined]
            agreement.append(float(visits[greedy == pi].sum() / visits.sum()))
    return visits, agreement


def mean_latency_ms(env: OrchestrationEnv, policy: np.ndarray, n_steps: int, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(n_steps):
        obs, _, _, _, info = env.step(int(policy[obs]))
        total += info["latency_ms"]
    return total / n_steps


def test_value_iteration_policy_is_near_the_oracle_on_tiny(tiny_mdp: MDP) -> None:
    """Sanity of the reference itself: on ``tiny`` the device is fast, so the best stationary policy on the
    discrete state comes within 5% of the clairvoyant per-request optimum, and a random valid policy on the same
    request stream is several times slower."""
    _, _, pi = value_iteration(tiny_mdp.P, tiny_mdp.R, GAMMA, valid=tiny_mdp.allowed)
    env = OrchestrationEnv("tiny", max_steps=10**9)
    rng = np.random.default_rng(0)
    runs = {}
    for policy in ("vi", "random"):
        obs, info = env.reset(seed=11)
        latency, oracle = [], []
        for _ in range(2000):
            a = int(pi[obs]) if policy == "vi" else int(rng.choice(np.flatnonzero(info["action_mask"])))
            obs, _, _, _, info = env.step(a)
            latency.append(info["latency_ms"])
            oracle.append(info["oracle_latency_ms"])
        runs[policy] = (np.mean(latency), np.mean(oracle))
    assert runs["vi"][0] <= 1.05 * runs["vi"][1]
    assert runs["random"][0] > 5 * runs["vi"][0]


def test_qlearning_reaches_the_value_iteration_policy_on_tiny(
    tiny_env: OrchestrationEnv, tiny_mdp: MDP
) -> None:
    """Q-learning with the catalogue's (paper) hyperparameters, trained online for 6,000 requests, agrees with the
    value-iteration policy of the estimated MDP where it matters.

    Criterion, and why: (1) the states where the learner's greedy action equals the VI action carry at least 90% of
    the requests the learner met. Agreement is weighted by visits because rarely met states get few updates (with a
    constant learning rate their Q-values stay noisy), and because the discrete state aggregates a continuous
    system state, so the estimated MDP is itself only accurate where there are many samples. (2) Run greedily on
    the same request stream (common random numbers), the learned policy's mean response time is within 3% of the
    VI policy's: the disagreements that remain cost (almost) nothing. Both must hold in at least 4 of 5 seeded
    runs: with the paper's small per-state exploration (0.0072 per valid action) a run can lock into a worse
    action of a busy state after one lucky sample (1 of 26 seeds tried with the streams of issue 23, seed 0: 50%
    agreement, 1.25x slower; none of the same 26 with the streams before it).
    """
    _, _, pi = value_iteration(tiny_mdp.P, tiny_mdp.R, GAMMA, valid=tiny_mdp.allowed)
    reached = []
    for seed in range(5):
        agent = make_agent("q_learning", tiny_env)
        _, agreement = train(agent, tiny_env, tiny_mdp, pi, 6_000, seed)
        greedy = agent.greedy_policy(tiny_mdp.valid)
        learned = mean_latency_ms(tiny_env, greedy, 3_000, seed=99)
        reference = mean_latency_ms(tiny_env, pi, 3_000, seed=99)
        reached.append(agreement[-1] >= 0.9 and learned <= 1.03 * reference)
    assert sum(reached) >= 4, reached


def test_dynaq_reaches_the_value_iteration_policy_with_fewer_real_requests(
    tiny_env: OrchestrationEnv, tiny_mdp: MDP
) -> None:
    """Requests until a learner *settles* on the VI policy: the first checkpoint (every 250 requests) from which
    the visit-weighted agreement stays at least 95% to the end of an 8,000-request run (8,250 if it never does).
    Averaged over 5 seeds, Dyna-Q (10 planning updates per request) settles after fewer real requests than
    Q-learning with the same hyperparameters, the companion paper's claim for hybrid learning. Both use the
    textbook hyperparameters (``TEXTBOOK_DEFAULTS``): with the catalogue's problem-derived ones, Q-learning alone
    settles at the first checkpoint on ``tiny``, so this criterion could no longer tell the two apart."""
    _, _, pi = value_iteration(tiny_mdp.P, tiny_mdp.R, GAMMA, valid=tiny_mdp.allowed)
    every, n_steps = 250, 8_000

    def settled(name: str, seed: int) -> int:
        agent = make_agent(name, tiny_env, **TEXTBOOK_DEFAULTS)
        _, agreement = train(agent, tiny_env, tiny_mdp, pi, n_steps, seed, every)
        below = np.flatnonzero(np.asarray(agreement) < 0.95)
        return every * (int(below[-1]) + 2) if below.size else every

    q_learning = np.mean([settled("q_learning", seed) for seed in range(5)])
    dyna_q = np.mean([settled("dyna_q", seed) for seed in range(5)])
    assert dyna_q < q_learning, (dyna_q, q_learning)
