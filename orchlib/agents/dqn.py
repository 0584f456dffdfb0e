"""Deep Q-network orchestrator (Mnih et al. 2015) on a ``Box`` observation, restricted to valid actions."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from orchlib.agents.base import Agent, MaskTable, check_action_reward, check_int, check_real, penalised_argmax


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the caller's setting afterwards.

    The networks are tiny (a few thousand weights, batches of tens), so splitting each matrix product across
    threads costs more in synchronisation than it saves; experiments run one process per core, where extra
    threads would oversubscribe the CPU; and one thread keeps float reductions in a fixed order. Switching
    costs well under a microsecond.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class DQN(Agent):
    """DQN: an MLP Q-network, experience replay, a target network, Huber loss and Adam; masked throughout.

    Decision ``t`` (counting :meth:`act` calls since :meth:`reset`) takes a uniformly random valid action with
    probability ``epsilon_t = max(epsilon_min, epsilon * epsilon_decay ** t)`` (the same schedule as
    :class:`orchlib.agents.qlearning.QLearning`), else the valid action of largest ``Q(s, .)``.

    Every transition ``(s, a, r, s', M')`` goes into a replay ring buffer of ``buffer_size``. Once it holds
    ``learning_starts`` transitions, every ``train_every`` transitions one Adam step is taken on a minibatch of
    ``batch_size`` drawn uniformly with replacement, minimising the Huber loss (delta 1) between ``Q(s, a)``
    and the target::

        y = r + gamma * max_{a' in M'} Q_target(s', a')

    The target network is copied from the online one every ``target_update_interval`` transitions. Gradients
    are clipped to norm ``max_grad_norm``.

    Randomness: weights are initialised (as torch's defaults do: Kaiming-uniform weights, uniform biases) from
    a ``torch.Generator`` seeded from ``self.rng_``, so torch's global seed is never touched; exploration and
    minibatch indices come from ``self.rng_`` itself. Torch runs on one thread inside :meth:`act` and
    :meth:`learn` (see ``_one_torch_thread``): faster for networks this small, no oversubscription when runs
    go in parallel, and a fixed reduction order; the caller's thread setting is restored afterwards.

    Args:
        observation_space: a ``Box``; features should be of order 1 (e.g. normalised).
        action_space: ``Discrete(A)``.
        hidden_sizes: widths of the hidden ReLU layers, each an integer >= 1 (at least one layer).
        learning_rate: Adam step size, finite and > 0.
        gamma: discount factor, in [0, 1) (continuing task).
        epsilon: exploration probability at the first decision, in [0, 1].
        epsilon_min: floor of the exploration probability, in [0, epsilon].
        epsilon_decay: per-decision multiplicative decay, in (0, 1].
        buffer_size: replay capacity in transitions, an integer >= 1.
        batch_size: minibatch size, an integer in [1, buffer_size].
        learning_starts: transitions stored before the first training step, an integer >= 1.
        train_every: transitions between training steps, an integer >= 1.
        target_update_interval: transitions between target-network copies, an integer >= 1.
        max_grad_norm: gradient-norm clip, finite and > 0.

    Raises:
        TypeError: the observation space is not a ``Box``.
        ValueError: a hyperparameter outside its range (the message names it).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete,
        hidden_sizes: tuple[int, ...] = (64, 64),
        learning_rate: float = 1e-3,
        gamma: float = 0.9,
        epsilon: float = 1.0,
        epsilon_min: float = 0.05,
        epsilon_decay: float = 0.999,
        buffer_size: int = 10_000,
        batch_size: int = 32,
        learning_starts: int = 100,
        train_every: int = 1,
        target_update_interval: int = 250,
        max_grad_norm: float = 10.0,
    ) -> None:
        super().__init__(observation_space, action_space)
        if not isinstance(observation_space, gym.spaces.Box):
            raise TypeError(f"DQN needs a Box observation_space, got {type(observation_space).__name__}")
        if not isinstance(hidden_sizes, tuple | list) or len(hidden_sizes) == 0:
            raise ValueError(f"hidden_sizes must be a non-empty tuple of integers >= 1, got {hidden_sizes!r}")
        for i, width in enumerate(hidden_sizes):
            check_int(f"hidden_sizes[{i}]", width, 1)
        check_real("learning_rate", learning_rate, 0.0, low_open=True)
        check_real("gamma", gamma, 0.0, 1.0, high_open=True)
        check_real("epsilon", epsilon, 0.0, 1.0)
        check_real("epsilon_min", epsilon_min, 0.0, epsilon)
        check_real("epsilon_decay", epsilon_decay, 0.0, 1.0, low_open=True)
        check_int("buffer_size", buffer_size, 1)
        check_int("batch_size", batch_size, 1, buffer_size)
        check_int("learning_starts", learning_starts, 1)
        check_int("train_every", train_every, 1)
        check_int("target_update_interval", target_update_interval, 1)
        check_real("max_grad_norm", max_grad_norm, 0.0, low_open=True)
        self.hidden_sizes = hidden_sizes
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.epsilon = epsilon
        self.epsilon_min = epsilon_min
        self.epsilon_decay = epsilon_decay
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.learning_starts = learning_starts
        self.train_every = train_every
        self.target_update_interval = target_update_interval
        self.max_grad_norm = max_grad_norm
        self.n_features = int(np.prod(observation_space.shape))

    def _network(self, generator: torch.Generator) -> nn.Sequential:
        layers: list[nn.Module] = []
        width_in = self.n_features
        for width in (*self.hidden_sizes, self.n_actions):
            layers += [nn.Linear(width_in, int(width)), nn.ReLU()]
            width_in = int(width)
        network = nn.Sequential(*layers[:-1])  # no ReLU after the output layer
        with torch.no_grad():
            for layer in network:
                if isinstance(layer, nn.Linear):
                    # torch's default nn.Linear initialisation, drawn from our generator instead of the global one.
                    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                    bound = 1.0 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        return network

    def reset(self, rng: np.random.Generator | int | None = None) -> None:
        """New random networks, empty replay buffer, fresh optimiser; reseed."""
        self.rng_ = np.random.default_rng(rng)
        generator = torch.Generator().manual_seed(int(self.rng_.integers(2**63)))
        with _one_torch_thread():
            self.q_network_ = self._network(generator)
            self.target_network_ = self._network(generator)
            self.target_network_.load_state_dict(self.q_network_.state_dict())
            self.target_network_.requires_grad_(False)
            self.optimizer_ = torch.optim.Adam(self.q_network_.parameters(), lr=float(self.learning_rate))
        # Replay ring buffer: slot i % buffer_size holds transition i.
        capacity, d = self.buffer_size, self.n_features
        self.buffer_obs_ = np.zeros((capacity, d), dtype=np.float32)
        self.buffer_actions_ = np.zeros(capacity, dtype=np.int64)
        self.buffer_rewards_ = np.zeros(capacity, dtype=np.float32)  # seconds (negative)
        self.buffer_next_obs_ = np.zeros((capacity, d), dtype=np.float32)
        self.buffer_next_masks_ = np.zeros((capacity, self.n_actions), dtype=bool)
        self.n_transitions_ = 0
        self.n_decisions_ = 0
        self.n_updates_ = 0  # gradient steps taken
        self._masks = MaskTable(self.n_actions)
        self._buffer = np.empty(self.n_actions)

    def _features(self, obs: Any) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32).reshape(-1)
        if x.size != self.n_features:
            raise ValueError(f"obs must have {self.n_features} features, got shape {np.shape(obs)}")
        return x

    def q_values(self, obs: Any) -> np.ndarray:
        """Online network's ``Q(obs, .)`` for every action, shape (A,), seconds."""
        x = torch.from_numpy(self._features(obs)).unsqueeze(0)
        with _one_torch_thread(), torch.no_grad():
            return self.q_network_(x)[0].numpy().astype(float)

    def act(self, obs: Any, mask: np.ndarray, info: Mapping[str, Any]) -> int:
        """Epsilon-greedy valid action."""
        penalty, valid = self._masks.get(mask)
        epsilon = max(
            float(self.epsilon_min), float(self.epsilon) * float(self.epsilon_decay) ** self.n_decisions_
        )
        self.n_decisions_ += 1
        if self.rng_.random() < epsilon:
            self._features(obs)  # still reject a malformed observation
            return int(valid[int(self.rng_.random() * valid.size)])
        return penalised_argmax(self.q_values(obs), penalty, self._buffer, self.rng_)

    def learn(
        self,
        obs: Any,
        action: int,
        reward: float,
        next_obs: Any,
        next_mask: np.ndarray,
        info: Mapping[str, Any],
    ) -> None:
        """Store the transition; train and sync the target network on their schedules."""
        a, r = check_action_reward(action, reward, self.n_actions)
        self._masks.get(next_mask)  # validates the mask
        slot = self.n_transitions_ % self.buffer_size
        self.buffer_obs_[slot] = self._features(obs)
        self.buffer_actions_[slot] = a
        self.buffer_rewards_[slot] = r
        self.buffer_next_obs_[slot] = self._features(next_obs)
        self.buffer_next_masks_[slot] = next_mask
        self.n_transitions_ += 1
        if self.n_transitions_ >= self.learning_starts and self.n_transitions_ % self.train_every == 0:
            self._train_step()
        if self.n_transitions_ % self.target_update_interval == 0:
            self.target_network_.load_state_dict(self.q_network_.state_dict())

    def _train_step(self) -> None:
        size = min(self.n_transitions_, self.buffer_size)
        idx = self.rng_.integers(size, size=self.batch_size)
        obs = torch.from_numpy(self.buffer_obs_[idx])
        actions = torch.from_numpy(self.buffer_actions_[idx])
        rewards = torch.from_numpy(self.buffer_rewards_[idx])
        next_obs = torch.from_numpy(self.buffer_next_obs_[idx])
        next_masks = torch.from_numpy(self.buffer_next_masks_[idx])
        with _one_torch_thread():
            with torch.no_grad():
                next_q = self.target_network_(next_obs).masked_fill(~next_masks, -torch.inf)
                target = rewards + float(self.gamma) * next_q.max(dim=1).values
            q = self.q_network_(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
            loss = nn.functional.smooth_l1_loss(q, target)
            self.optimizer_.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.q_network_.parameters(), float(self.max_grad_norm))
            self.optimizer_.step()
        self.n_updates_ += 1
