"""Learning agents: exact small cases, learning sanity on problems with a known optimum, masks, seeds, errors.

The problems are synthetic and written here (a 2-arm Gaussian bandit, a 2-context contextual bandit, a
3-state MDP), so each test knows the right answer independently of the environment module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

from orchlib.agents.bandits import (
    UCB1,
    EpsilonGreedy,
    Exp3,
    GaussianThompson,
    LinUCB,
    PerState,
    PerUser,
    SlidingWindowUCB,
)
from orchlib.agents.base import Agent, MaskTable
from orchlib.agents.dqn import DQN
from orchlib.agents.qlearning import DynaQ, QLearning

NO_INFO: dict = {}


def discrete(n: int) -> gym.spaces.Discrete:
    return gym.spaces.Discrete(n)


def box(d: int) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, shape=(d,), dtype=np.float32)


def all_valid(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


# ---------------------------------------------------------------- synthetic problems


def run_gaussian_bandit(
    agent: Agent, means: np.ndarray, noise_std: float, n_steps: int, seed: int
) -> np.ndarray:
    """Play ``n_steps`` rounds; return the actions. The environment's noise has its own stream."""
    env_rng = np.random.default_rng([seed, 1])
    agent.reset(seed)
    mask = all_valid(means.size)
    actions = np.empty(n_steps, dtype=np.int64)
    for t in range(n_steps):
        a = agent.act(0, mask, NO_INFO)
        agent.learn(0, a, means[a] + noise_std * env_rng.standard_normal(), 0, mask, NO_INFO)
        actions[t] = a
    return actions


# Contextual bandit: mean reward (seconds, negative) of action a in context x; the best action differs by context.
CONTEXT_MEANS = np.array([[-1.0, -0.2, -2.0], [-0.3, -1.5, -1.0]])
CONTEXT_BEST = CONTEXT_MEANS.argmax(axis=1)


def run_contextual_bandit(
    agent: Agent, n_steps: int, seed: int, one_hot: bool, noise_std: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Contexts drawn uniformly; return (contexts, actions)."""
    env_rng = np.random.default_rng([seed, 2])
    agent.reset(seed)
    n_contexts, n_arms = CONTEXT_MEANS.shape
    mask = all_valid(n_arms)
    contexts = env_rng.integers(n_contexts, size=n_steps + 1)
    observations = np.eye(n_contexts, dtype=np.float32) if one_hot else np.arange(n_contexts)
    actions = np.empty(n_steps, dtype=np.int64)
    for t in range(n_steps):
        obs, next_obs = observations[contexts[t]], observations[contexts[t + 1]]
        a = agent.act(obs, mask, NO_INFO)
        reward = CONTEXT_MEANS[contexts[t], a] + noise_std * env_rng.standard_normal()
        agent.learn(obs, a, reward, next_obs, mask, NO_INFO)
        actions[t] = a
    return contexts[:n_steps], actions


# A 3-state MDP: TRANSITIONS[s][a] = [(probability, next state, reward in seconds), ...].
# Staying in state 0 is the cheapest single step, but paying to reach state 2 (cheap to stay in) is optimal
# for gamma = 0.9, so a myopic learner gets it wrong. Action 2 exists but is always masked out: an
# untried action keeps its optimistic Q = 0, so a target that ignored the mask would also get it wrong.
TRANSITIONS = [
    [[(1.0, 0, -1.0)], [(1.0, 1, -2.0)]],
    [[(0.8, 2, -2.0), (0.2, 0, -2.0)], [(1.0, 0, -1.0)]],
    [[(1.0, 2, -0.1)], [(1.0, 0, -1.0)]],
]
MDP_GAMMA = 0.9
MDP_MASK = np.array([True, True, False])


def optimal_q(gamma: float) -> np.ndarray:
    """Q* of the MDP over its two usable actions, by value iteration."""
    q = np.zeros((3, 2))
    for _ in range(2000):
        v = q.max(axis=1)
        q = np.array(
            [
                [sum(p * (r + gamma * v[s2]) for p, s2, r in TRANSITIONS[s][a]) for a in range(2)]
                for s in range(3)
            ]
        )
    return q


def mdp_step(s: int, a: int, rng: np.random.Generator) -> tuple[float, int]:
    outcomes = TRANSITIONS[s][a]
    i = rng.choice(len(outcomes), p=[p for p, _, _ in outcomes])
    return outcomes[i][2], outcomes[i][1]


def run_mdp(agent: QLearning, n_steps: int, seed: int) -> np.ndarray:
    """Run the MDP from state 0; return, after each step, whether the greedy policy is optimal."""
    best = optimal_q(MDP_GAMMA).argmax(axis=1)
    env_rng = np.random.default_rng([seed, 3])
    agent.reset(seed)
    s = 0
    optimal_after = np.empty(n_steps, dtype=bool)
    for t in range(n_steps):
        a = agent.act(s, MDP_MASK, NO_INFO)
        r, s_next = mdp_step(s, a, env_rng)
        agent.learn(s, a, r, s_next, MDP_MASK, NO_INFO)
        s = s_next
        optimal_after[t] = np.array_equal(agent.greedy_policy(MDP_MASK), best)
    return optimal_after


def steps_to_learn(optimal_after: np.ndarray) -> int:
    """Real steps until the greedy policy is optimal and stays so for the rest of the run."""
    wrong = np.flatnonzero(~optimal_after)
    return 0 if wrong.size == 0 else int(wrong[-1]) + 1


MDP_AGENT = dict(
    alpha=0.5, alpha_exponent=0.6, gamma=MDP_GAMMA, epsilon=0.3, epsilon_min=0.3, epsilon_decay=1.0
)


# ---------------------------------------------------------------- exact small cases


def test_value_iteration_gives_the_non_myopic_policy() -> None:
    # Hand check of V* under the policy (s0 -> a1, s1 -> a0, s2 -> a0):
    # V2 = -0.1 / (1 - 0.9) = -1;  V1 = -2 + 0.9 (0.8 V2 + 0.2 V0);  V0 = -2 + 0.9 V1  =>  V0 = -4.448 / 0.838.
    q = optimal_q(MDP_GAMMA)
    v0 = -4.448 / 0.838
    np.testing.assert_allclose(q.max(axis=1), [v0, -2.72 + 0.18 * v0, -1.0], rtol=1e-9)
    assert q.argmax(axis=1).tolist() == [1, 0, 0]
    assert optimal_q(0.0).argmax(axis=1).tolist() == [0, 1, 0]  # the myopic policy differs


def test_ucb1_indices_and_choice_by_hand() -> None:
    agent = UCB1(discrete(1), discrete(3), c=1.0)
    agent.reset(0)
    for a, r in [(0, -1.0), (1, -2.0)]:
        agent.learn(0, a, r, 0, all_valid(3), NO_INFO)
    # t = 2, n = 1 each: bonus sqrt(2 ln 2 / 1) = sqrt(1.3862944) = 1.1774100.
    only_pulled = np.array([True, True, False])
    np.testing.assert_allclose(agent.indices(only_pulled), [0.1774100, -0.8225900, -np.inf], atol=1e-7)
    assert agent.act(0, only_pulled, NO_INFO) == 0
    assert agent.act(0, all_valid(3), NO_INFO) == 2  # the unpulled valid arm comes first
    assert agent.act(0, np.array([False, True, False]), NO_INFO) == 1

    # Exploration beats a better mean: pulls [0, 0, 0, 1] with rewards [-1, -1, -1, -1.5], t = 4:
    # arm 0: -1 + sqrt(2 ln 4 / 3) = -1 + 0.9613513 = -0.0386487; arm 1: -1.5 + sqrt(2 ln 4) = 0.1651092.
    agent.reset(0)
    for a, r in [(0, -1.0), (0, -1.0), (0, -1.0), (1, -1.5)]:
        agent.learn(0, a, r, 0, all_valid(3), NO_INFO)
    np.testing.assert_allclose(agent.indices(only_pulled)[:2], [-0.0386487, 0.1651092], atol=1e-7)
    assert agent.act(0, only_pulled, NO_INFO) == 1


def test_sliding_window_ucb_forgets_by_hand() -> None:
    agent = SlidingWindowUCB(discrete(1), discrete(2), tau=2, c=1.0)
    agent.reset(0)
    for a, r in [(0, -1.0), (1, -2.0), (0, -3.0)]:
        agent.learn(0, a, r, 0, all_valid(2), NO_INFO)
    # The window holds pulls 1 and 2 only: arm 0 mean -3 (not -2), arm 1 mean -2; ln(min(3, 2)) = ln 2.
    assert agent.counts_.tolist() == [1, 1]
    np.testing.assert_allclose(agent.indices(all_valid(2)), [-3 + 1.1774100, -2 + 1.1774100], atol=1e-7)
    assert agent.act(0, all_valid(2), NO_INFO) == 1
    for _ in range(2):  # two pulls of arm 1 push arm 0 out of the window entirely
        agent.learn(0, 1, -2.0, 0, all_valid(2), NO_INFO)
    assert agent.counts_.tolist() == [0, 2]
    assert agent.sums_[0] == 0.0
    assert agent.act(0, all_valid(2), NO_INFO) == 0  # an arm absent from the window comes first


def test_sliding_window_ucb_with_long_window_is_ucb1() -> None:
    means = np.array([-1.0, -1.2, -1.5])
    ucb = run_gaussian_bandit(UCB1(discrete(1), discrete(3), c=0.5), means, 0.5, 400, seed=4)
    sliding = run_gaussian_bandit(
        SlidingWindowUCB(discrete(1), discrete(3), tau=400, c=0.5), means, 0.5, 400, 4
    )
    short = run_gaussian_bandit(SlidingWindowUCB(discrete(1), discrete(3), tau=20, c=0.5), means, 0.5, 400, 4)
    np.testing.assert_array_equal(ucb, sliding)
    assert not np.array_equal(ucb, short)


def test_gaussian_thompson_posterior_by_hand() -> None:
    agent = GaussianThompson(discrete(1), discrete(2), prior_mean=0.0, prior_std=1.0, noise_std=0.5)
    agent.reset(0)
    for r in (-1.0, -1.2):
        agent.learn(0, 0, r, 0, all_valid(2), NO_INFO)
    # precision = 1/1 + 2/0.25 = 9; mean = (0 + 2 * (-1.1) / 0.25) / 9 = -8.8 / 9; std = 1/3.
    mean, std = agent.posterior()
    np.testing.assert_allclose(mean, [-8.8 / 9, 0.0])
    np.testing.assert_allclose(std, [1 / 3, 1.0])

    estimated = GaussianThompson(discrete(1), discrete(2), prior_std=1.0, noise_std=None)
    estimated.reset(0)
    for r in (-1.0, -1.2):
        estimated.learn(0, 0, r, 0, all_valid(2), NO_INFO)
    # M2 = 0.02, so s2 = (0.02 + 1) / 2 = 0.51; precision = 1 + 2 / 0.51; mean = (2 * (-1.1) / 0.51) / precision.
    precision = 1 + 2 / 0.51
    mean, std = estimated.posterior()
    np.testing.assert_allclose(mean[0], (2 * -1.1 / 0.51) / precision)
    np.testing.assert_allclose(std[0], 1 / math.sqrt(precision))


def test_exp3_probabilities_and_update_by_hand() -> None:
    agent = Exp3(discrete(1), discrete(4), reward_range=(-2.0, 0.0), gamma=0.3)
    agent.reset(0)
    mask = np.array([True, True, True, False])
    np.testing.assert_allclose(agent.probabilities(mask), [1 / 3, 1 / 3, 1 / 3, 0.0])
    a = agent.act(0, mask, NO_INFO)
    assert agent.last_probability_ == pytest.approx(1 / 3)
    # Reward -0.5 maps to x = 0.75; ln w(a) += 0.3 * 0.75 / ((1/3) * 3) = 0.225.
    agent.learn(0, a, -0.5, 0, mask, NO_INFO)
    assert agent.log_weights_[a] == pytest.approx(0.225)
    w = np.where(np.arange(4) == a, math.exp(0.225), 1.0)[:3]
    expected = 0.7 * w / w.sum() + 0.1
    np.testing.assert_allclose(agent.probabilities(mask)[:3], expected)
    # A reward below the range is clipped to x = 0 and leaves the weight unchanged.
    b = agent.act(0, mask, NO_INFO)
    before = agent.log_weights_[b]
    agent.learn(0, b, -7.0, 0, mask, NO_INFO)
    assert agent.log_weights_[b] == before
    with pytest.raises(ValueError, match="last act"):
        agent.learn(0, b, -1.0, 0, mask, NO_INFO)  # no act() since the last learn()


def test_linucb_sherman_morrison_matches_direct_ridge() -> None:
    agent = LinUCB(box(2), discrete(2), alpha=0.7, regularization=2.0)
    agent.reset(0)
    rng = np.random.default_rng(5)
    xs, rs = rng.normal(size=(30, 2)), rng.normal(size=30)
    for x, r in zip(xs, rs, strict=True):
        agent.learn(x, 1, r, x, all_valid(2), NO_INFO)
    design = np.column_stack([xs, np.ones(30)])
    a_matrix = 2.0 * np.eye(3) + design.T @ design
    theta = np.linalg.solve(a_matrix, design.T @ rs)
    np.testing.assert_allclose(agent.a_inverse_[1], np.linalg.inv(a_matrix), atol=1e-10)
    np.testing.assert_allclose(agent.theta_[1], theta, atol=1e-10)
    np.testing.assert_allclose(agent.a_inverse_[0], np.eye(3) / 2.0)
    x = np.array([0.3, -1.0])
    z = np.append(x, 1.0)
    index = theta @ z + 0.7 * math.sqrt(z @ np.linalg.solve(a_matrix, z))
    np.testing.assert_allclose(agent.indices(x), [0.7 * math.sqrt(z @ z / 2.0), index])


def test_epsilon_schedule() -> None:
    agent = QLearning(discrete(2), discrete(2), epsilon=1.0, epsilon_min=0.1, epsilon_decay=0.5)
    agent.reset(0)
    assert [agent.epsilon_at(t) for t in range(6)] == [1.0, 0.5, 0.25, 0.125, 0.1, 0.1]


def test_qlearning_single_update_by_hand() -> None:
    agent = QLearning(discrete(2), discrete(3), alpha=0.5, alpha_exponent=1.0, gamma=0.9, initial_q=0.0)
    agent.reset(0)
    agent.q_table_[1] = [-1.0, -3.0, 5.0]
    mask = np.array([True, True, False])  # the 5.0 must not enter the target
    agent.learn(0, 2, -2.0, 1, mask, NO_INFO)
    # n = 1: alpha_1 = 0.5; target = -2 + 0.9 * max(-1, -3) = -2.9; Q = 0 + 0.5 * (-2.9 - 0) = -1.45.
    assert agent.q_table_[0, 2] == pytest.approx(-1.45)
    agent.learn(0, 2, -2.0, 1, mask, NO_INFO)
    # n = 2: alpha_2 = 0.5 / 2 = 0.25; Q = -1.45 + 0.25 * (-2.9 + 1.45) = -1.8125.
    assert agent.q_table_[0, 2] == pytest.approx(-1.8125)


def test_dynaq_model_is_the_empirical_one() -> None:
    agent = DynaQ(discrete(3), discrete(3), n_planning=0)
    agent.reset(0)
    other_mask = np.array([True, False, True])
    for r, s_next, mask in [(-1.0, 1, MDP_MASK), (-3.0, 1, MDP_MASK), (-2.0, 2, other_mask)]:
        agent.learn(0, 1, r, s_next, mask, NO_INFO)
    assert agent.reward_sums_[0, 1] / agent.visits_[0][1] == pytest.approx(-2.0)
    assert agent.outcome_counts_ == {1: {(1, 0): 2, (2, 1): 1}}
    assert agent.seen_pairs_ == [1]


# ---------------------------------------------------------------- learning sanity


@pytest.mark.parametrize(
    "make",
    [
        functools.partial(UCB1, c=1.0),
        functools.partial(GaussianThompson, prior_std=1.0, noise_std=1.0),
        functools.partial(GaussianThompson, prior_std=1.0, noise_std=None),
    ],
    ids=["UCB1", "Thompson-known-noise", "Thompson-estimated-noise"],
)
def test_bandit_finds_best_arm_with_sublinear_regret(make: Callable[..., Agent]) -> None:
    # Arm 1 is best by 0.3 s under noise of std 1 s. Averaged over 10 seeds, constant-epsilon greedy
    # (epsilon = 0.1, linear regret) gives a second-half/first-half regret ratio of 0.55 and a late best-arm
    # fraction of 0.95; pure greedy (UCB1 with c = 0) locks onto the wrong arm in some runs, ratio 1.0.
    means = np.array([-1.3, -1.0])
    n_steps, n_seeds = 3000, 10
    actions = np.array(
        [
            run_gaussian_bandit(make(discrete(1), discrete(2)), means, 1.0, n_steps, seed)
            for seed in range(n_seeds)
        ]
    )
    regret = (means.max() - means[actions]).mean(axis=0)  # expected regret per step, averaged over seeds
    first, second = regret[: n_steps // 2].sum(), regret[n_steps // 2 :].sum()
    assert second < 0.4 * first, (first, second)
    assert np.mean(actions[:, -n_steps // 5 :] == 1) > 0.95


@pytest.mark.parametrize("contextual", ["LinUCB", "PerState(UCB1)", "PerState(GaussianThompson)"])
def test_contextual_bandit_finds_best_arm_per_context(contextual: str) -> None:
    n_contexts, n_arms = CONTEXT_MEANS.shape
    if contextual == "LinUCB":
        agent: Agent = LinUCB(box(n_contexts), discrete(n_arms), alpha=0.5)
    elif contextual == "PerState(UCB1)":
        agent = PerState(discrete(n_contexts), discrete(n_arms), functools.partial(UCB1, c=0.5))
    else:
        agent = PerState(discrete(n_contexts), discrete(n_arms), GaussianThompson)
    assert agent.name == contextual
    contexts, actions = run_contextual_bandit(agent, 2000, seed=3, one_hot=contextual == "LinUCB")
    late = slice(-500, None)
    assert np.mean(actions[late] == CONTEXT_BEST[contexts[late]]) > 0.9


def test_qlearning_reaches_the_optimal_policy() -> None:
    agent = QLearning(discrete(3), discrete(3), **MDP_AGENT)
    for seed in range(3):
        optimal_after = run_mdp(agent, 4000, seed)
        assert optimal_after[-1000:].all()
        # Q of the two usable actions near Q* (the random transition keeps some noise in it).
        np.testing.assert_allclose(agent.q_table_[:, :2], optimal_q(MDP_GAMMA), atol=0.4)
        assert (agent.q_table_[:, 2] == 0.0).all()  # the masked action was never taken


def test_myopic_qlearning_misses_the_optimal_policy() -> None:
    # The problem is hard enough that the test above could fail: with gamma = 0 the greedy policy is wrong.
    agent = QLearning(discrete(3), discrete(3), **{**MDP_AGENT, "gamma": 0.0})
    assert not run_mdp(agent, 2000, seed=0)[-1]


def test_dynaq_needs_fewer_real_steps_than_qlearning() -> None:
    seeds = range(5)
    horizon = 4000
    q_steps = [
        steps_to_learn(run_mdp(QLearning(discrete(3), discrete(3), **MDP_AGENT), horizon, s)) for s in seeds
    ]
    dyna = DynaQ(discrete(3), discrete(3), **MDP_AGENT, n_planning=20)
    dyna_steps = [steps_to_learn(run_mdp(dyna, horizon, s)) for s in seeds]
    assert max(q_steps) < horizon - 500  # Q-learning did learn within the horizon, so the comparison is fair
    assert np.mean(dyna_steps) < 0.5 * np.mean(q_steps), (dyna_steps, q_steps)


def test_dynaq_without_planning_is_exactly_qlearning() -> None:
    rng = np.random.default_rng(9)
    masks = rng.random((600, 5)) < 0.5
    masks[np.arange(600), rng.integers(5, size=600)] = True
    states, rewards = rng.integers(4, size=601), -rng.exponential(size=600)
    agents = [
        QLearning(discrete(4), discrete(5), alpha=0.3, alpha_exponent=0.6),
        DynaQ(discrete(4), discrete(5), alpha=0.3, alpha_exponent=0.6, n_planning=0),
    ]
    histories = []
    for agent in agents:
        agent.reset(21)
        actions = []
        for t in range(600):
            a = agent.act(states[t], masks[t], NO_INFO)
            agent.learn(states[t], a, rewards[t], states[t + 1], masks[(t + 1) % 600], NO_INFO)
            actions.append(a)
        histories.append(actions)
    assert histories[0] == histories[1]
    np.testing.assert_array_equal(agents[0].q_table_, agents[1].q_table_)


def test_dqn_learns_a_contextual_problem_better_than_random() -> None:
    agent = DQN(
        box(2),
        discrete(3),
        hidden_sizes=(32, 32),
        gamma=0.0,
        epsilon=1.0,
        epsilon_min=0.05,
        epsilon_decay=0.995,
        learning_starts=64,
        target_update_interval=100,
    )
    contexts, actions = run_contextual_bandit(agent, 1500, seed=0, one_hot=True)
    late = slice(-500, None)
    mean_reward = CONTEXT_MEANS[contexts[late], actions[late]].mean()
    random_reward = CONTEXT_MEANS.mean()  # contexts are uniform, a random policy averages every cell
    best_reward = CONTEXT_MEANS.max(axis=1).mean()
    assert mean_reward > random_reward + 0.6 * (best_reward - random_reward), (mean_reward, random_reward)
    greedy = [int(np.argmax(agent.q_values(np.eye(2, dtype=np.float32)[c]))) for c in range(2)]
    assert greedy == CONTEXT_BEST.tolist()


# ---------------------------------------------------------------- every agent: masks, seeds, errors

N_STATES, N_FEATURES, N_ACTIONS = 5, 3, 12


def make_all() -> dict[str, Agent]:
    d, b, a = discrete(N_STATES), box(N_FEATURES), discrete(N_ACTIONS)
    return {
        "QLearning": QLearning(d, a, epsilon_decay=0.99),
        "DynaQ": DynaQ(d, a, epsilon_decay=0.99, n_planning=3),
        "EpsilonGreedy": EpsilonGreedy(d, a),
        "UCB1": UCB1(d, a),
        "GaussianThompson": GaussianThompson(d, a),
        "LinUCB": LinUCB(b, a),
        "Exp3": Exp3(d, a, reward_range=(-5.0, 0.0)),
        "SlidingWindowUCB": SlidingWindowUCB(d, a, tau=50),
        "PerState(UCB1)": PerState(d, a, UCB1),
        "PerUser(Exp3)": PerUser(d, a, functools.partial(Exp3, reward_range=(-5.0, 0.0))),
        "PerUser(QLearning)": PerUser(d, a, QLearning),
        "DQN": DQN(b, a, hidden_sizes=(16,), learning_starts=32, train_every=4, batch_size=16),
    }


def rollout(agent: Agent, seed: int, n_steps: int, data_seed: int = 0) -> list[int]:
    """Random masks, observations, users and rewards; asserts every action is allowed; returns the actions."""
    rng = np.random.default_rng(data_seed)
    masks = rng.random((n_steps + 1, N_ACTIONS)) < 0.3
    masks[np.arange(n_steps + 1), rng.integers(N_ACTIONS, size=n_steps + 1)] = True  # at least one valid
    states = rng.integers(N_STATES, size=n_steps + 1)
    features = rng.normal(size=(n_steps + 1, N_FEATURES)).astype(np.float32)
    users = rng.integers(3, size=n_steps + 1)
    uses_box = isinstance(agent.observation_space, gym.spaces.Box)
    observations = features if uses_box else states
    agent.reset(seed)
    actions = []
    for t in range(n_steps):
        info = {"user": int(users[t])}
        a = agent.act(observations[t], masks[t], info)
        assert isinstance(a, int)
        assert masks[t, a], f"{agent.name} took masked action {a} at step {t}"
        reward = -rng.exponential(1.0) * (1 + a % 3)
        agent.learn(observations[t], a, reward, observations[t + 1], masks[t + 1], info)
        actions.append(a)
    return actions


@pytest.mark.parametrize("name", list(make_all()))
def test_never_takes_a_masked_action(name: str) -> None:
    agent = make_all()[name]
    assert agent.name == name
    actions = rollout(agent, seed=1, n_steps=2000)
    assert len(set(actions)) > 1  # it did explore, so the mask was what kept it valid


@pytest.mark.parametrize("name", list(make_all()))
def test_same_seed_same_actions(name: str) -> None:
    agent = make_all()[name]
    first = rollout(agent, seed=5, n_steps=300)
    again = rollout(agent, seed=5, n_steps=300)  # the same object, reset with the same seed
    fresh = rollout(make_all()[name], seed=5, n_steps=300)
    assert first == again == fresh


def test_different_seeds_differ() -> None:
    # Guards the test above against agents that ignore their seed entirely.
    for name in ["QLearning", "GaussianThompson", "Exp3", "PerState(UCB1)", "DQN"]:
        assert rollout(make_all()[name], seed=5, n_steps=300) != rollout(
            make_all()[name], seed=6, n_steps=300
        )


def test_wrapper_streams_do_not_depend_on_key_order() -> None:
    a, b = PerUser(discrete(1), discrete(2), UCB1), PerUser(discrete(1), discrete(2), UCB1)
    a.reset(3)
    b.reset(3)
    a.learner(5), a.learner(2)
    b.learner(2), b.learner(5)
    for key in (2, 5):
        assert a.learner(key).rng_.random() == b.learner(key).rng_.random()
    assert a.learner(2).rng_.random() != a.learner(5).rng_.random()


def test_per_user_learns_in_the_learner_that_acted() -> None:
    agent = PerUser(discrete(1), discrete(2), functools.partial(EpsilonGreedy, epsilon=0.0))
    agent.reset(0)
    mask = all_valid(2)
    a = agent.act(0, mask, {"user": 4})
    agent.learn(0, a, -1.0, 0, mask, {"user": 7})  # info of the next request must not redirect the update
    assert agent.learner(4).counts_.sum() == 1
    assert 7 not in agent.learners_
    with pytest.raises(ValueError, match=r"info\['user'\]"):
        agent.act(0, mask, {})
    with pytest.raises(RuntimeError, match="act"):
        fresh = PerUser(discrete(1), discrete(2), UCB1)
        fresh.reset(0)
        fresh.learn(0, 0, -1.0, 0, mask, {"user": 0})


D, A = discrete(4), discrete(3)
BAD_HYPERPARAMETERS = [
    (QLearning, {"alpha": 0.0}, "alpha"),
    (QLearning, {"alpha": 1.5}, "alpha"),
    (QLearning, {"alpha_exponent": -0.1}, "alpha_exponent"),
    (QLearning, {"gamma": 1.0}, "gamma"),
    (QLearning, {"epsilon": 1.1}, "epsilon"),
    (QLearning, {"epsilon": 0.1, "epsilon_min": 0.2}, "epsilon_min"),
    (QLearning, {"epsilon_decay": 0.0}, "epsilon_decay"),
    (QLearning, {"initial_q": float("nan")}, "initial_q"),
    (DynaQ, {"n_planning": -1}, "n_planning"),
    (EpsilonGreedy, {"epsilon": -0.5}, "epsilon"),
    (UCB1, {"c": -1.0}, "c"),
    (UCB1, {"c": float("inf")}, "c"),
    (GaussianThompson, {"prior_std": 0.0}, "prior_std"),
    (GaussianThompson, {"noise_std": -1.0}, "noise_std"),
    (Exp3, {"reward_range": (0.0, -5.0)}, r"reward_range\[1\]"),
    (Exp3, {"reward_range": (-5.0, 0.0), "gamma": 0.0}, "gamma"),
    (Exp3, {"reward_range": (-5.0,)}, "reward_range"),
    (SlidingWindowUCB, {"tau": 0}, "tau"),
    (SlidingWindowUCB, {"xi": 0.0}, "xi"),
]
BAD_BOX_HYPERPARAMETERS = [
    (LinUCB, {"regularization": 0.0}, "regularization"),
    (LinUCB, {"alpha": -1.0}, "alpha"),
    (DQN, {"learning_rate": 0.0}, "learning_rate"),
    (DQN, {"hidden_sizes": (64, 0)}, r"hidden_sizes\[1\]"),
    (DQN, {"buffer_size": 10, "batch_size": 32}, "batch_size"),
    (DQN, {"target_update_interval": 0}, "target_update_interval"),
    (DQN, {"gamma": -0.1}, "gamma"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "name", "uses_box"),
    [(*case, False) for case in BAD_HYPERPARAMETERS] + [(*case, True) for case in BAD_BOX_HYPERPARAMETERS],
)
def test_bad_hyperparameter_names_itself(cls: type[Agent], kwargs: dict, name: str, uses_box: bool) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must .*(\[|\().*(\]|\))"):
        cls(box(2) if uses_box else D, A, **kwargs)


def test_wrong_types_are_refused() -> None:
    with pytest.raises(TypeError, match="Discrete observation_space"):
        QLearning(box(2), A)
    with pytest.raises(TypeError, match="Box observation_space"):
        LinUCB(D, A)
    with pytest.raises(TypeError, match="Box observation_space"):
        DQN(D, A)
    with pytest.raises(TypeError, match="n_planning must be an integer"):
        DynaQ(D, A, n_planning=2.0)
    with pytest.raises(TypeError, match="factory"):
        PerState(D, A, factory=lambda o, a: None)


def test_bad_inputs_at_run_time() -> None:
    agent = QLearning(D, A)
    agent.reset(0)
    with pytest.raises(ValueError, match="all False"):
        agent.act(0, np.zeros(3, dtype=bool), NO_INFO)
    with pytest.raises(ValueError, match="shape"):
        agent.act(0, np.ones(4, dtype=bool), NO_INFO)
    with pytest.raises(ValueError, match="obs"):
        agent.act(4, all_valid(3), NO_INFO)
    with pytest.raises(ValueError, match="action"):
        agent.learn(0, 3, -1.0, 1, all_valid(3), NO_INFO)
    with pytest.raises(ValueError, match="reward"):
        agent.learn(0, 1, float("nan"), 1, all_valid(3), NO_INFO)
    linucb = LinUCB(box(2), A)
    linucb.reset(0)
    with pytest.raises(ValueError, match="2 features"):
        linucb.act(np.zeros(3), all_valid(3), NO_INFO)


def test_mask_table_caches_and_validates() -> None:
    table = MaskTable(3, max_entries=1)
    penalty, valid = table.get(np.array([True, False, True]))
    np.testing.assert_array_equal(penalty, [0.0, -np.inf, 0.0])
    np.testing.assert_array_equal(valid, [0, 2])
    assert table.get(np.array([True, False, True]))[0] is penalty  # cached
    np.testing.assert_array_equal(table.get([False, True, False])[1], [1])  # a list works; not cached (full)
    with pytest.raises(ValueError, match="bool array"):
        table.get(np.array([1, 0, 1]))


def test_per_state_exploration_is_sized_to_the_valid_actions() -> None:
    agent = QLearning(
        discrete(2), discrete(4), epsilon=1.0, epsilon_decay=1.0, epsilon_min=0.0, explore_per_action=0.5
    )
    agent.reset(0)
    # c * |V| / k: 0.5 * 4 / k, capped by the global epsilon 1
    assert [agent.epsilon_at(0, 4, k) for k in (1, 2, 4, 8)] == [1.0, 1.0, 0.5, 0.25]
    assert agent.epsilon_at(0, 2, 4) == 0.25  # fewer valid actions, less exploration
    assert agent.epsilon_at(0) == 1.0  # without a state, the global schedule alone
    # act() counts decisions per state: 8 decisions in state 0 with 2 valid actions, none in state 1
    mask = np.array([True, True, False, False])
    for _ in range(8):
        agent.act(0, mask, NO_INFO)
    assert agent.state_decisions_ == [8, 0]
    with pytest.raises(ValueError, match="explore_per_action"):
        QLearning(discrete(2), discrete(4), explore_per_action=0.0)


def test_per_state_exploration_stops_exploring_a_learned_bandit() -> None:
    agent = QLearning(
        discrete(1),
        discrete(3),
        alpha=1.0,
        alpha_exponent=1.0,
        gamma=0.0,
        epsilon_decay=1.0,
        epsilon_min=0.0,
        explore_per_action=0.1,
    )
    actions = run_gaussian_bandit(agent, np.array([-1.0, -0.5, -2.0]), 0.1, 2000, seed=3)
    # exploration falls as 0.3 / k: about 0.3 * ln(2000) = 2.3 random choices after the first ones
    assert (actions[-1000:] == 1).mean() > 0.99


def test_the_exploration_schedule_by_hand() -> None:
    from orchlib.agents.qlearning import exploration_probability

    # global 1.0 * 0.5**3 = 0.125 caps the per-state terms 0.5 * n / k = 2.0, 0.5, 0.25, 9.5; the floor is 0.01
    terms = [
        exploration_probability(3.0, 1.0, 0.5, 0.01, 0.5, n, k) for n, k in ((4, 1), (4, 4), (2, 4), (57, 3))
    ]
    assert terms == [0.125, 0.125, 0.125, 0.125]
    terms = [
        exploration_probability(0.0, 1.0, 0.5, 0.01, 0.5, n, k) for n, k in ((4, 1), (4, 8), (2, 4), (57, 3))
    ]
    assert terms == [1.0, 0.25, 0.25, 1.0]
    assert exploration_probability(20.0, 1.0, 0.5, 0.01, np.nan, 1, 1) == 0.01  # NaN: no per-state term


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"explore_per_action": 0.3, "alpha_exponent": 0.9, "gamma": 0.3},
        {"epsilon_decay": 0.999, "epsilon_min": 0.05},
    ],
)
def test_q_learning_per_request_is_the_one_replicate_view_of_the_batched_rules(hyperparameters) -> None:
    """QLearning and replicate 1 of a BatchQLearning of 3, given the same generator and the same states, rewards
    and state-function masks, choose the same actions and hold the same Q of every valid pair, bit for bit."""
    from orchlib.agents.qlearning import BatchQLearning
    from orchlib.system.engine import replicate_generators

    rng = np.random.default_rng(4)
    n_states, n_actions = 6, 5
    masks = rng.random((n_states, n_actions)) < 0.6
    masks[np.arange(n_states), rng.integers(n_actions, size=n_states)] = True
    single = QLearning(discrete(n_states), discrete(n_actions), **hyperparameters)
    single.reset(replicate_generators(11, 3)[1])
    batch = BatchQLearning(masks, **hyperparameters)
    batch.reset(3, replicate_generators(11, 3))
    states = rng.integers(n_states, size=(3001, 3))
    rewards = -rng.exponential(size=(3000, 3))
    # a few exact ties in the rewards, so that the tie-break draws matter
    rewards[rng.random((3000, 3)) < 0.2] = -1.0
    explored = set()
    for t in range(3000):
        s, s_next = states[t], states[t + 1]
        actions = batch.act(s)
        a = single.act(int(s[1]), masks[s[1]], NO_INFO)
        assert a == actions[1], t
        explored.add(a)
        batch.learn(s, actions, rewards[t], s_next)
        single.learn(int(s[1]), a, float(rewards[t, 1]), int(s_next[1]), masks[s_next[1]], NO_INFO)
    np.testing.assert_array_equal(batch.q_table_[1][masks], single.q_table_[masks])
    assert len(explored) == n_actions


def test_ucb1_per_request_is_the_one_replicate_view_of_the_batched_rule() -> None:
    """UCB1 and replicate 2 of a BatchUCB1 of 3, given the same generator, states, rewards and state-function masks,
    pull the same arms bit for bit (ties included: rewards repeat exactly)."""
    from orchlib.agents.batched import BatchUCB1
    from orchlib.system.engine import replicate_generators

    rng = np.random.default_rng(6)
    n_states, n_actions = 4, 6
    masks = rng.random((n_states, n_actions)) < 0.7
    masks[np.arange(n_states), rng.integers(n_actions, size=n_states)] = True
    single = UCB1(discrete(n_states), discrete(n_actions), c=0.3)
    single.reset(replicate_generators(5, 3)[2])
    batch = BatchUCB1(masks, c=0.3)
    batch.reset(3, replicate_generators(5, 3))
    states = rng.integers(n_states, size=(2001, 3))
    rewards = -rng.choice([0.1, 0.2, 0.5], size=(2000, 3))
    pulled = set()
    for t in range(2000):
        actions = batch.act(states[t])
        a = single.act(int(states[t, 2]), masks[states[t, 2]], NO_INFO)
        assert a == actions[2], t
        pulled.add(a)
        batch.learn(states[t], actions, rewards[t], states[t + 1])
        single.learn(
            int(states[t, 2]), a, float(rewards[t, 2]), int(states[t + 1, 2]), masks[states[t + 1, 2]], {}
        )
    assert len(pulled) == n_actions


def test_q_learning_hyperparameters_and_their_defaults_are_stated_once() -> None:
    """Every form of tabular Q-learning takes the fields of ``QHyperparameters`` with its defaults and its
    checks (the per-request learner, Dyna-Q, the batched learner, the location-only stand-in and its batched
    form, the catalogue's textbook entry), and refuses an unknown one by name."""
    import dataclasses

    from orchlib.agents.batched import BatchLocationOnly, BatchQLearning, BatchUCB1
    from orchlib.agents.catalogue import TEXTBOOK_DEFAULTS
    from orchlib.agents.qlearning import QHyperparameters

    masks = np.ones((3, 4), dtype=bool)
    defaults = QHyperparameters()
    given = QHyperparameters(alpha=0.5, explore_per_action=0.2)
    for build in (
        lambda **h: QLearning(discrete(3), discrete(4), **h),
        lambda **h: DynaQ(discrete(3), discrete(4), n_planning=2, **h),
        lambda **h: BatchQLearning(masks, **h),
        lambda **h: BatchLocationOnly(np.array([0, 1, 2]), masks, **h).q_learning,
    ):
        assert build().hyperparameters == defaults
        agent = build(alpha=0.5, explore_per_action=0.2)
        assert agent.hyperparameters == given
        assert (agent.alpha, agent.explore_per_action, agent.gamma) == (0.5, 0.2, defaults.gamma)
        with pytest.raises(TypeError, match="alpah"):
            build(alpah=0.5)
        with pytest.raises(ValueError, match="epsilon_min"):
            build(epsilon=0.1, epsilon_min=0.2)
    assert dataclasses.asdict(defaults) == TEXTBOOK_DEFAULTS
    with pytest.raises(TypeError, match="c"):
        BatchUCB1(masks)  # no default of its own: UCB1's is stated once, in UCB1
